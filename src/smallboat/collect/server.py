"""Running the collector: in this process (`serve`), or as a child process (`CollectorProcess`).

`serve` opens the store before uvicorn starts, so a log held by another collector is a one-line
error, not a traceback from the startup hook. uvicorn stops gracefully on SIGTERM or Ctrl-C: the
requests in flight finish, then the log is closed. A child process is how the demo, the tests
and the benchmark run a real collector: `python -m smallboat.cli collect serve` on a free port.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import uvicorn

from smallboat.collect.app import create_app
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.errors import SmallboatError

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int, log_level: str = "info") -> None:
    """Run the collector until SIGTERM or Ctrl-C (the app's shutdown closes the store)."""
    store = EventStore.open(settings)
    try:
        uvicorn.run(
            create_app(settings, store=store),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        store.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class CollectorProcess:
    """`smallboat collect serve` in a child process on 127.0.0.1, for the demo, tests and bench.

    Its state home is `home`; `env` adds settings (SMALLBOAT_*). Output goes to `log_path` (or is
    discarded). Use as a context manager, or `start()` / `stop()` / `kill()`.
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.home = home
        self.port = port or free_port()
        self.env = dict(env or {})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> CollectorProcess:
        """Start the child and wait until it answers /health."""
        env = {**os.environ, **self.env, "SMALLBOAT_HOME": str(self.home)}
        out = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        command = [sys.executable, "-m", "smallboat.cli", "collect", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        try:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        finally:
            if self.log_path is not None and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SmallboatError(
                    f"the collector exited with status {self.process.returncode} while starting"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise SmallboatError(f"the collector did not answer on {self.url} within {timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: in-flight requests finish, the log closes); returns the exit code,
        0 for a clean stop (uvicorn re-raises SIGTERM once it has shut down: -15 is clean)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
            return 0 if code == -signal.SIGTERM else code
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise SmallboatError(
                f"the collector did not stop within {timeout:.0f} s; killed it"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the crash the write-ahead log is built for."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()

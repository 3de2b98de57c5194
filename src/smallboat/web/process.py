"""Running a smallboat server in a child process: how the demo, tests and benchmarks start a
real collector or prediction service (`python -m smallboat.cli ...` on a free port)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx

from smallboat.errors import SmallboatError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """A `smallboat` server command in a child process on 127.0.0.1 (demo, tests, benchmarks).

    Subclasses name the command and the path that answers 200 once it is ready. Its state home
    is `home`; `env` adds settings (SMALLBOAT_*); `args` adds command options. Output goes to
    `log_path` (or is discarded). Use as a context manager, or `start()` / `stop()` / `kill()`.
    """

    name = "the server"
    command: tuple[str, ...] = ()
    ready_path = "/"

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        log_path: Path | None = None,
    ) -> None:
        self.home = home
        self.args = list(args)
        self.port = port or free_port()
        self.env = dict(env or {})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Self:
        """Start the child and wait until it answers 200 on its ready path (a child that exits
        fails at once; `timeout` only bounds a slow start, e.g. a model loading on busy cores)."""
        env = {**os.environ, **self.env, "SMALLBOAT_HOME": str(self.home)}
        out = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        command = [sys.executable, "-m", "smallboat.cli", *self.command, *self.args]
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
                    f"{self.name} exited with status {self.process.returncode} while starting"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise SmallboatError(f"{self.name} did not answer on {self.url} within {timeout:.0f} s")

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
                f"{self.name} did not stop within {timeout:.0f} s; killed it"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the crash the write-ahead log is built for."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()

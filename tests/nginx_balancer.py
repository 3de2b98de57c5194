"""A real nginx (Debian's) on 127.0.0.1 balancing replicas, for tests and benchmarks.

Open-source nginx checks upstreams passively only: a replica that refuses a connection, times
out, or answers 502/503/504 counts as a failure; after `max_fails` of them within `fail_timeout`
nginx skips it for `fail_timeout`, and the request that failed goes to the next replica
(`proxy_next_upstream`, also for a POST: the collector deduplicates by message id and a session
append of the same event collapses to one, so a replay is harmless). A replica whose `/readyz`
says not ready answers its writes 503 too, so it is skipped the same way; nginx itself never calls
`/readyz` (active checks are nginx Plus's or HAProxy's `option httpchk GET /readyz`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        raise RuntimeError(
            "nginx is not installed: the replicas test balances over a real nginx; install it "
            "with `make system-deps` (Debian's nginx package)"
        )
    return found


def nginx_config(
    prefix: Path, balanced: Mapping[str, tuple[int, Sequence[str]]], *, fail_timeout_s: int = 10
) -> str:
    """nginx.conf: for each name, a listener on 127.0.0.1:<port> balancing its upstream URLs
    (`127.0.0.1:<port>`) round robin, with passive health checks."""
    blocks = []
    for name, (port, upstreams) in balanced.items():
        servers = "\n".join(
            f"        server {u} max_fails=1 fail_timeout={fail_timeout_s}s;" for u in upstreams
        )
        blocks.append(
            f"""    upstream {name} {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
    }}"""
        )
    temp = prefix / "temp"
    return f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_max_body_size 4m;
    # Bodies up to 1 MB stay in memory (a collector's batches are ~10-500 KB): no temp file.
    client_body_buffer_size 1m;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{chr(10).join(blocks)}
}}
"""


class Balancer:
    """nginx in a child process: `url(name)` is the balanced address of upstream group `name`.

    `groups` maps a name to the upstream addresses (`127.0.0.1:<port>`); each group gets a free
    port. Use as a context manager.
    """

    def __init__(self, groups: Mapping[str, Sequence[str]]) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="smallboat-nginx-")
        self.prefix = Path(self._dir.name)
        # Started as root, nginx's workers run as `nobody`: they must reach the temp folders.
        self.prefix.chmod(0o755)
        (self.prefix / "temp").mkdir(mode=0o777)
        (self.prefix / "temp").chmod(0o777)
        self.ports = {name: _free_port() for name in groups}
        self.config = nginx_config(
            self.prefix, {name: (self.ports[name], list(ups)) for name, ups in groups.items()}
        )
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config)
        log = (self.prefix / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-e", "stderr", "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log(self) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            path = self.prefix / name
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.log()}")
            try:
                for port in self.ports.values():
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen in time:\n{self.log()}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nginx: SIGTERM is a fast shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()

    def __enter__(self) -> Balancer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""Worker processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's `--workers` share one listening socket: whichever worker's loop wakes first accepts,
so the idler worker takes more than its share (32 keep-alive connections split 22/10 between two
workers, and the busier worker set the pace). Here each worker owns one socket of a SO_REUSEPORT
group, and Linux spreads new connections across the group's listening sockets by a hash of
their addresses. The sockets are bound in the supervisor and live as long as it does: a worker
that dies is replaced on the same socket, so connections that arrive meanwhile wait in its
backlog for the replacement instead of being reset.
"""

from __future__ import annotations

import errno
import logging
import socket

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from smallboat.errors import SmallboatError

log = logging.getLogger(__name__)


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets bound to `host`:`port` in one SO_REUSEPORT group (port 0: a free port,
    the same for all). A port some other process listens on is an error, as without
    SO_REUSEPORT: the group never joins another service's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        with socket.socket(family) as probe:  # a plain bind fails on a port already served
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _bind(probe, host, port)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _bind(sock, host, port)
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind(sock: socket.socket, host: str, port: int) -> None:
    try:
        sock.bind((host, port))
    except OSError as exc:
        hint = " (another process listens there)" if exc.errno == errno.EADDRINUSE else ""
        raise SmallboatError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None


class ReusePortMultiprocess(Multiprocess):
    """uvicorn's supervisor with worker i serving only socket i (`reuse_port_sockets`).

    It keeps uvicorn's supervision: a dead or hung worker is replaced (on its socket), SIGHUP
    replaces the workers one by one, SIGINT/SIGTERM stop them. SIGTTIN and SIGTTOU (one worker
    more or less) are refused: a socket without a worker would hold its share of connections."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        if len(sockets) != config.workers:
            raise ValueError(f"{config.workers} workers need as many sockets, got {len(sockets)}")
        super().__init__(config, sockets)
        self.owned = list(sockets)

    def _spawn(self, slot: int) -> Process:
        process = Process(self.config, [self.owned[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._spawn(slot) for slot in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: make sure
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # The app cannot start: every replacement would fail the same way.
                log.error("worker %s failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("worker %s (socket %d) died; replacing it", process.pid, slot)
            self.processes[slot] = self._spawn(slot)

    def restart_all(self) -> None:
        """Each worker's replacement serves its socket before the worker stops (SIGHUP)."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                log.error("the replacement of worker %s was not ready in time; keeping it", old.pid)
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: restart the service with another --workers")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: restart the service with another --workers")

    def run(self) -> None:
        try:
            super().run()
        finally:
            for sock in self.owned:
                sock.close()

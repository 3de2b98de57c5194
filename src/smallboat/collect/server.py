"""Running the collector: in this process (`serve`), or as a child process (`CollectorProcess`).

`serve` opens the store before uvicorn starts, so a log held by another collector is a one-line
error, not a traceback from the startup hook. uvicorn stops gracefully on SIGTERM or Ctrl-C: the
requests in flight finish, then the log is closed. A child process is how the demo, the tests
and the benchmark run a real collector: `python -m smallboat.cli collect serve` on a free port.

Scale-out on one home: each collector process writes its own log. Several collectors (one per
port or machine sharing the home's disk) take a replica id each (SMALLBOAT_COLLECT_REPLICA,
`--replica`); `--workers N` runs N processes on one port (uvicorn's workers: one listening
socket, the kernel spreads connections; a dead worker is restarted), each claiming the log slot
`<replica>-w<i>` (`segments.claim_worker_slot`, the prediction service's mechanism). Compaction
lands every replica's log against one state, exactly once (`collect.compaction`).
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from fastapi import FastAPI

from smallboat.collect.app import create_app
from smallboat.collect.compaction import replicas_dir
from smallboat.collect.control import Control
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.data.log.segments import claim_worker_slot
from smallboat.durable import process_start
from smallboat.errors import SmallboatError
from smallboat.web.connections import run_app
from smallboat.web.process import ServerProcess

log = logging.getLogger(__name__)

DEFAULT_WORKER_REPLICA = "main"
"""The replica id workers' slots are named after when none is set: `main-w0`, `main-w1`..."""
WORKER_REPLICA_ENV = "SMALLBOAT_COLLECT_WORKER_REPLICA"
WORKER_COUNT_ENV = "SMALLBOAT_COLLECT_WORKER_COUNT"
WORKER_URL_ENV = "SMALLBOAT_COLLECT_WORKER_URL"
"""What `serve` hands its worker processes (the environment is what a spawned worker sees)."""


def serve(
    settings: Settings, *, host: str, port: int, log_level: str = "info", workers: int = 1
) -> None:
    """Run the collector until SIGTERM or Ctrl-C (the app's shutdown closes the store).

    While it runs, each process publishes `server.json` beside its log (`collect.control`: how
    the CLI asks for a roll and reads the counters)."""
    if workers < 1:
        raise SmallboatError(f"--workers must be 1 or more, got {workers}")
    token = settings.admin_token or secrets.token_urlsafe(24)
    local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    url = f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "loop": "uvloop",  # what "auto" picks when installed; said, so its absence is an error
        "server_header": False,  # nobody reads it; one header less to write per answer
        # (the Date header stays: HTTP/1.1 asks an origin server with a clock to send it, and
        # uvicorn renders it once a second, not per answer)
    }
    if workers > 1:
        os.environ[WORKER_REPLICA_ENV] = settings.collect_replica or DEFAULT_WORKER_REPLICA
        os.environ[WORKER_COUNT_ENV] = str(workers)
        os.environ[WORKER_URL_ENV] = url
        os.environ["SMALLBOAT_ADMIN_TOKEN"] = token  # every worker answers the same token
        run_app(f"{__name__}:worker_app", settings, factory=True, workers=workers, **options)
        return
    store = EventStore.open(settings)
    control = Control(pid=os.getpid(), url=url, token=token, started=process_start(os.getpid()))
    try:
        run_app(
            create_app(settings, store=store, admin_token=token, control=control),
            settings,
            **options,
        )
    finally:
        store.close()


def worker_app() -> FastAPI:
    """A worker's app (uvicorn calls it in each worker process): it claims the first free log
    slot `<replica>-w<i>` and writes that replica's log."""
    settings = Settings()
    base = os.environ.get(WORKER_REPLICA_ENV) or DEFAULT_WORKER_REPLICA
    slot = claim_worker_slot(
        replicas_dir(settings), base, int(os.environ.get(WORKER_COUNT_ENV, "1"))
    )
    settings = settings.model_copy(update={"collect_replica": slot})
    control = Control(
        pid=os.getpid(),
        url=os.environ.get(WORKER_URL_ENV, ""),
        token=settings.admin_token,
        shared=True,
        started=process_start(os.getpid()),
    )
    log.info("collector worker %d writes the log of replica %s", os.getpid(), slot)
    return create_app(settings, admin_token=settings.admin_token, control=control)


class CollectorProcess(ServerProcess):
    """`smallboat collect serve` in a child process on 127.0.0.1, for the demo, tests and bench.

    Its state home is `home`; `env` adds settings (SMALLBOAT_*). Output goes to `log_path` (or is
    discarded). Use as a context manager, or `start()` / `stop()` / `kill()`.
    """

    name = "the collector"
    command = ("collect", "serve")
    ready_path = "/readyz"

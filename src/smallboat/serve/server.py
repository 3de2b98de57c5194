"""Running the prediction service: in this process (`serve`), or as a child (`ServeProcess`).

`serve` loads the model and checks the session store before uvicorn starts, so a missing champion
or an unreachable Redis is a one-line error, not a traceback from the startup hook. uvicorn stops
gracefully on SIGTERM or Ctrl-C: requests in flight finish first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.serve.app import create_app
from smallboat.serve.scoring import load_model
from smallboat.serve.sessions import open_session_store
from smallboat.web.connections import run_app
from smallboat.web.process import ServerProcess

log = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    bundle: Path | None = None,
    log_level: str = "info",
    routers: Sequence[APIRouter] = (),
    workers: int = 1,
    worker_app: str | None = None,
) -> None:
    """Serve the champion (or `bundle`) until SIGTERM or Ctrl-C; `routers` are mounted too.

    With `workers` > 1, that many processes share the port, each with its own listening socket
    (SO_REUSEPORT: the kernel spreads connections evenly, `web.workers`), each loading the
    model; sessions must then live in
    Redis (SMALLBOAT_REDIS_URL) so any worker answers any session. `worker_app` is the import
    string of a factory each worker calls for its app (`worker_app` below, or the CLI's, which
    mounts the dashboard too)."""
    if workers < 1:
        raise SmallboatError(f"--workers must be 1 or more, got {workers}")
    if workers > 1 and not settings.redis_url:
        raise SmallboatError(
            f"--workers {workers} needs the sessions in Redis, shared by the workers: set "
            "SMALLBOAT_REDIS_URL (or serve with one worker)"
        )
    model = load_model(settings, bundle)  # fails here, once, with a one-line error
    asyncio.run(_check_store(settings))
    replica = settings.serve_replica or f"{socket.gethostname()}-{port}"
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "loop": "uvloop",
        "server_header": False,  # nobody reads it; one header less to check and write per answer
    }
    if workers == 1:
        app = create_app(settings, model=model, bundle=bundle, replica=replica, routers=routers)
        run_app(app, settings, **options)
        return
    del model  # each worker loads its own
    os.environ[WORKER_REPLICA_ENV] = replica
    os.environ[WORKER_COUNT_ENV] = str(workers)
    if bundle is not None:
        os.environ[WORKER_BUNDLE_ENV] = str(bundle.resolve())
    run_app(
        worker_app or f"{__name__}:worker_app",
        settings,
        factory=True,
        workers=workers,
        reuse_port=True,
        **options,
    )


WORKER_REPLICA_ENV = "SMALLBOAT_SERVE_WORKER_REPLICA"
WORKER_COUNT_ENV = "SMALLBOAT_SERVE_WORKER_COUNT"
WORKER_BUNDLE_ENV = "SMALLBOAT_SERVE_WORKER_BUNDLE"
"""What `serve` hands its worker processes (the environment is what a spawned worker sees)."""


def worker_app(routers: Sequence[APIRouter] = ()) -> FastAPI:
    """A worker's app (uvicorn calls it in each worker process): the settings, replica and
    bundle `serve` put in the environment; each worker claims its own prediction log."""
    settings = Settings()
    bundle = os.environ.get(WORKER_BUNDLE_ENV)
    return create_app(
        settings,
        bundle=Path(bundle) if bundle else None,
        replica=os.environ.get(WORKER_REPLICA_ENV) or None,
        replicas=int(os.environ.get(WORKER_COUNT_ENV, "1")),
        routers=routers,
    )


async def _check_store(settings: Settings) -> None:
    store = open_session_store(settings)
    try:
        await store.ping()
    finally:
        await store.close()


class ServeProcess(ServerProcess):
    """`smallboat serve` in a child process on 127.0.0.1, for the demo, tests and bench; ready
    once `/readyz` answers 200 (model loaded, session store reachable)."""

    name = "the prediction service"
    command = ("serve",)
    ready_path = "/readyz"

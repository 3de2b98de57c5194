"""Running the prediction service: in this process (`serve`), or as a child (`ServeProcess`).

`serve` loads the model and checks the session store before uvicorn starts, so a missing champion
or an unreachable Redis is a one-line error, not a traceback from the startup hook. uvicorn stops
gracefully on SIGTERM or Ctrl-C: requests in flight finish first.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import APIRouter

from smallboat.config import Settings
from smallboat.serve.app import create_app
from smallboat.serve.scoring import load_model
from smallboat.serve.sessions import open_session_store
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
) -> None:
    """Serve the champion (or `bundle`) until SIGTERM or Ctrl-C; `routers` are mounted too."""
    model = load_model(settings, bundle)
    asyncio.run(_check_store(settings))
    replica = settings.serve_replica or f"{socket.gethostname()}-{port}"
    uvicorn.run(
        create_app(settings, model=model, bundle=bundle, replica=replica, routers=routers),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
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

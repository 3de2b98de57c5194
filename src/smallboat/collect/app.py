"""The collector's FastAPI application: routers, the store's lifespan, JSON error bodies.

Errors are `{"error": <code>, "detail": <what was wrong>}`: 400 names the parameter or body
field and the problem, 401 a missing or wrong Segment write key, 413 a body over the limit, 503 a
log that can no longer write.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from smallboat.collect.events import HitError
from smallboat.collect.routes import ops, pixel, segment
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.data.log.wal import LogWriteError
from smallboat.web.body import BodyLimit
from smallboat.web.errors import install_error_handlers

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, store: EventStore | None = None) -> FastAPI:
    """The collector app. Without `store`, one opens when the app starts; either way the store
    closes when the app stops (uvicorn's graceful shutdown)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = store if store is not None else EventStore.open(settings)
        app.state.store = opened
        log.info("collector log at %s", opened.wal.folder)
        try:
            yield
        finally:
            opened.close()

    app = FastAPI(
        title="smallboat collector",
        summary="Pixel, JSON and Segment-compatible event collection on a durable log.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.body_limit = BodyLimit(
        settings.collect_max_body_bytes, "SMALLBOAT_COLLECT_MAX_BODY_BYTES"
    )
    app.include_router(pixel.router)
    app.include_router(segment.router)
    app.include_router(ops.router)
    install_error_handlers(app, invalid_status=400, statuses={HitError: 400, LogWriteError: 503})
    return app

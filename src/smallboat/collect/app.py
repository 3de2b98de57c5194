"""The collector's FastAPI application: routers, the store's lifespan, JSON error bodies.

Errors are `{"error": <code>, "detail": <what was wrong>}`: 400 names the parameter or body
field and the problem, 401 a missing or wrong Segment write key, 413 a body over the limit, 503 a
log that can no longer write. On the Segment routes (`/v1/...`) they also carry `code` and
`message`, the fields Segment's and RudderStack's SDKs read. Browser trackers on the origins of
SMALLBOAT_COLLECT_CORS_ORIGINS may call with credentials (CORS).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from smallboat.collect.control import ROLL_SIGNAL, Control, remove_control, write_control
from smallboat.collect.counters import HitCounters
from smallboat.collect.events import HitError
from smallboat.collect.fastlane import FastLane
from smallboat.collect.rejects import RejectsLog
from smallboat.collect.routes import admin, ga4, ops, pixel, segment, snowplow
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.data.log.segments import Segment
from smallboat.data.log.wal import LogWriteError
from smallboat.web.body import BodyLimit
from smallboat.web.errors import complete_openapi, install_error_handlers
from smallboat.web.telemetry import telemetry

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    admin_token: str | None = None,
    control: Control | None = None,
) -> FastAPI:
    """The collector app. Without `store`, one opens when the app starts; either way the store
    closes when the app stops (uvicorn's graceful shutdown). The admin routes take `admin_token`
    (default: SMALLBOAT_ADMIN_TOKEN; none: they are off). With `control` (a served collector,
    `collect.server`), the running app publishes it beside its log and rolls the log's active
    segment on `control.ROLL_SIGNAL` (how `smallboat collect compact` asks every replica)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = store if store is not None else EventStore.open(settings)
        app.state.store = opened
        log.info("collector log at %s", opened.wal.folder)
        if control is not None:
            asyncio.get_running_loop().add_signal_handler(ROLL_SIGNAL, _roll, opened)
            write_control(settings, control)
        try:
            yield
        finally:
            if control is not None:
                remove_control(settings)
                # A CLI that read the control file just before may still signal: ignore it
                # (the default action of SIGUSR1 would end the process mid-close).
                asyncio.get_running_loop().add_signal_handler(ROLL_SIGNAL, _ignore)
            opened.close()

    app = FastAPI(
        title="smallboat collector",
        summary="Pixel, JSON and Segment-compatible event collection on a durable log.",
        lifespan=lifespan,
        telemetry=telemetry(settings),
    )
    app.state.settings = settings
    app.state.counters = HitCounters()
    app.state.rejects = RejectsLog.of(settings)
    app.state.admin_token = admin_token or settings.admin_token or None
    app.state.body_limit = BodyLimit(
        settings.collect_max_body_bytes, "SMALLBOAT_COLLECT_MAX_BODY_BYTES"
    )
    app.include_router(pixel.router)
    app.include_router(segment.router)
    app.include_router(snowplow.router)
    app.include_router(ga4.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    install_error_handlers(
        app,
        invalid_status=400,
        statuses={HitError: 400, LogWriteError: 503},
        extra=_sdk_fields,
    )
    origins = settings.cors_origin_list
    if origins:
        # Credentials (the trackers' cookies) only for origins named in the setting: with `*`
        # any page could read answers made with a visitor's cookies.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "SP-Anonymous"],
            max_age=3600,
        )
    # Outermost: single pixel hits skip FastAPI's routing (everything else passes through).
    app.add_middleware(FastLane, owner=app, cors=bool(origins))
    complete_openapi(app)
    return app


def _roll(store: EventStore) -> None:
    """Roll the log's active segment (on ROLL_SIGNAL); the writer thread does it once every
    append queued before is durable."""

    def done(future: Future[Segment | None]) -> None:
        if future.exception() is not None:
            log.error("rolling the log on request failed: %s", future.exception())

    store.wal.roll().add_done_callback(done)


def _ignore() -> None:
    return None


def _sdk_fields(request: Request, code: str, detail: str) -> dict[str, str]:
    """Segment's and RudderStack's SDKs read an error's `code` and `message` (RudderStack's
    raises KeyError without them, and retries): the Segment routes' errors carry both."""
    if request.url.path.startswith("/v1/"):
        return {"code": code, "message": detail}
    return {}

"""The prediction service's FastAPI application: routers, the model and session store lifespan,
metrics, JSON error bodies.

Errors are `{"error": <code>, "detail": <what was wrong>}`: 400 a body that is not JSON, 401/403
a missing or wrong admin token, 404 an unknown route or session, 413 a body over the limit, 415 a
content type other than JSON, 422 a field that fails validation (its path and the allowed values
are named), 503 a session store that cannot be reached or a failed reload. Nothing is a 500
unless the service itself is broken, and then the body says so without a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from smallboat.config import Settings
from smallboat.data.log.predictions import PredictionLog
from smallboat.serve.lane import PredictLane
from smallboat.serve.metrics import MetricsMiddleware, ServeMetrics
from smallboat.serve.prediction_log import open_replica_log
from smallboat.serve.routes import admin, kserve, oip, ops, predict, sagemaker
from smallboat.serve.scoring import LoadedModel, Scorer, load_model
from smallboat.serve.sessions import (
    SessionStore,
    SessionStoreError,
    SessionTooLarge,
    open_session_store,
)
from smallboat.web.body import BodyLimit
from smallboat.web.errors import complete_openapi, error_response, install_error_handlers
from smallboat.web.telemetry import telemetry

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    model: LoadedModel | None = None,
    bundle: Path | None = None,
    sessions: SessionStore | None = None,
    replica: str | None = None,
    replicas: int = 1,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The prediction app. The model is `model`, else loaded when the app starts from `bundle`
    or the registry's champion; the session store is `sessions`, else opened from settings
    (Redis when SMALLBOAT_REDIS_URL is set). Both close when the app stops.

    Every prediction goes to the prediction log of `replica` (SMALLBOAT_SERVE_REPLICA, else
    host-port; `<replica>-w<i>` for the i-th of `replicas` worker processes) unless
    SMALLBOAT_PREDICTION_LOG is false. `routers` are mounted beside the API
    (the CLI mounts the monitoring dashboard this way: serve does not import monitor).
    """
    settings = settings or Settings()
    metrics = ServeMetrics(sections=settings.serve_sections)
    name = replica or settings.serve_replica or f"{socket.gethostname()}-{settings.serve_port}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.serve_threads)
        loaded = (
            model if model is not None else await asyncio.to_thread(load_model, settings, bundle)
        )
        store = sessions if sessions is not None else open_session_store(settings)
        scorer = Scorer(loaded, on_batch=metrics.batch)
        predictions = (
            await asyncio.to_thread(open_replica_log, settings, name, replicas)
            if settings.prediction_log
            else PredictionLog(None, name, max_pending=0)
        )
        metrics.watch_log(lambda: predictions.written, lambda: predictions.dropped)
        metrics.watch_sessions(lambda: store.rebuilds, lambda: store.conflicts)
        app.state.scorer = scorer
        app.state.sessions = store
        app.state.prediction_log = predictions
        metrics.serving(loaded.version)
        # The model, vocabulary and modules are long-lived: keep the collector from walking
        # them on every full collection (a latency spike on some request).
        gc.collect()
        gc.freeze()
        log.info("serving %s (%s); sessions: %s", loaded.version, loaded.source, store.describe())
        try:
            yield
        finally:
            scorer.close()
            await store.close()
            await asyncio.to_thread(predictions.close)

    app = FastAPI(
        title="smallboat prediction service",
        summary="Purchase intent of shopping sessions; smallboat's API, SageMaker's, KServe's "
        "v1 and the Open Inference Protocol (v2).",
        lifespan=lifespan,
        telemetry=telemetry(settings),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.bundle = bundle
    app.state.reload_lock = asyncio.Lock()
    app.state.body_limit = BodyLimit(
        settings.serve_max_body_bytes, "SMALLBOAT_SERVE_MAX_BODY_BYTES"
    )
    app.include_router(predict.router)
    app.include_router(sagemaker.router)
    app.include_router(kserve.router)
    app.include_router(oip.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    for router in routers:
        app.include_router(router)
    install_error_handlers(app, invalid_status=422, statuses={SessionTooLarge: 413})
    app.add_exception_handler(SessionStoreError, _store_unavailable)
    app.add_middleware(PredictLane)  # inside the metrics: its answers are counted and timed
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    complete_openapi(app)
    return app


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A 503 that does not name the store: its host and port are for the log, not for any
    caller (SessionStoreError's message names them, password hidden)."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "the session store is unavailable; the service's log names the cause"
    )

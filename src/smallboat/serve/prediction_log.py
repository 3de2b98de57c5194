"""The prediction service's side of the prediction log: one row per answered session (the request,
the route, the replica, the model, its answer, the latency so far and the prefix's summary),
handed to the app's `PredictionLog`, which buffers and never blocks the answer."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from fastapi import Request

from smallboat.config import Settings
from smallboat.data.log.predictions import PredictionLog, prediction_row, predictions_dir
from smallboat.data.log.segments import claim_worker_slot
from smallboat.errors import SmallboatError
from smallboat.serve.metrics import STARTED_KEY
from smallboat.serve.scoring import Outcome

log = logging.getLogger(__name__)

MAX_REQUEST_ID = 128
"""Longest `x-request-id` kept; a longer one is cut."""


def open_replica_log(settings: Settings, replica: str, replicas: int = 1) -> PredictionLog:
    """This process's prediction log: `replica`'s, or with several worker processes on one port
    the first free of `<replica>-w0` .. `<replica>-w<replicas-1>` (`claim_worker_slot`: a
    restarted worker takes the slot its predecessor left). Landed by the same compaction as any
    replica's."""
    if replicas <= 1:
        return PredictionLog.open(settings, replica)
    try:
        slot = claim_worker_slot(predictions_dir(settings), replica, replicas)
    except (OSError, SmallboatError) as exc:
        log.error("the prediction log of %s is off: %s", replica, exc)
        return PredictionLog(None, replica, max_pending=0)
    return PredictionLog.open(settings, slot)


def record_predictions(
    request: Request, outcomes: Sequence[Outcome], session_ids: Sequence[str | None]
) -> None:
    """Log one request's answers; a failure is logged, never raised (bookkeeping must never fail
    an answer)."""
    try:
        _record(request, outcomes, session_ids)
    except Exception:
        log.exception("logging predictions failed")


def _record(
    request: Request, outcomes: Sequence[Outcome], session_ids: Sequence[str | None]
) -> None:
    prediction_log: PredictionLog | None = getattr(request.app.state, "prediction_log", None)
    if prediction_log is None:
        return
    started = request.scope.get(STARTED_KEY)
    latency_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000.0
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    request_id = request.headers.get("x-request-id", "")[:MAX_REQUEST_ID] or uuid.uuid4().hex
    now_ms = int(time.time() * 1000)
    prediction_log.record(
        [
            prediction_row(
                request_id=request_id,
                route=route,
                replica=prediction_log.replica,
                session_id=session_id,
                predicted_at_ms=now_ms,
                model_version=outcome.model_version,
                probability=outcome.purchase_probability,
                latency_ms=latency_ms,
                summary=outcome.summary,
            )
            for outcome, session_id in zip(outcomes, session_ids, strict=True)
        ]
    )

"""Operations: liveness (`/healthz`, shared with the collector), readiness (`/readyz`: the model
is loaded, the session store answers (a lost Redis is 503), and the prediction log can write to a
disk that is not nearly full) and Prometheus `/metrics`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response

from smallboat.data.log.predictions import PredictionLog
from smallboat.serve.deps import MetricsDep, ScorerDep, SessionsDep
from smallboat.serve.models import ErrorBody, Ready
from smallboat.serve.sessions import SessionStoreError
from smallboat.web.deps import SettingsDep
from smallboat.web.probes import live

router = APIRouter(tags=["ops"])
router.include_router(live)


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(
    request: Request, scorer: ScorerDep, sessions: SessionsDep, settings: SettingsDep
) -> Ready:
    """Readiness: the model is loaded, the session store answers, and the prediction log is not
    failing (a failed write it has not recovered from, or a nearly full disk: 503)."""
    try:
        await sessions.ping()
    except SessionStoreError as exc:
        # The store's host is for the log, not for any caller (issue 17).
        logging.getLogger(__name__).warning("readyz: %s", exc)
        raise HTTPException(
            503, "the session store does not answer; see the service's log"
        ) from None
    prediction_log: PredictionLog | None = getattr(request.app.state, "prediction_log", None)
    if prediction_log is not None:
        problem = prediction_log.readiness_problem(settings.log_min_free_bytes)
        if problem is not None:
            raise HTTPException(503, f"the prediction log cannot write: {problem}")
    model = scorer.model
    return Ready(
        model_version=model.version, model_source=model.source, session_store=sessions.describe()
    )


@router.get("/metrics", response_class=Response)
async def metrics(collected: MetricsDep) -> Response:
    """Prometheus text format: requests, latency, predictions, batches, the model version."""
    return Response(collected.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

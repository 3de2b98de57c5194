"""Operations: liveness (`/healthz`, shared with the collector), readiness (`/readyz`: the model
is loaded and the session store answers) and Prometheus `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from smallboat.serve.deps import MetricsDep, ScorerDep, SessionsDep
from smallboat.serve.models import ErrorBody, Ready
from smallboat.serve.sessions import SessionStoreError
from smallboat.web.probes import live

router = APIRouter(tags=["ops"])
router.include_router(live)


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(scorer: ScorerDep, sessions: SessionsDep) -> Ready:
    """Readiness: the model is loaded and the session store answers."""
    try:
        await sessions.ping()
    except SessionStoreError as exc:
        raise HTTPException(503, str(exc)) from None
    model = scorer.model
    return Ready(
        model_version=model.version, model_source=model.source, session_store=sessions.describe()
    )


@router.get("/metrics", response_class=Response)
async def metrics(collected: MetricsDep) -> Response:
    """Prometheus text format: requests, latency, predictions, batches, the model version."""
    return Response(collected.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

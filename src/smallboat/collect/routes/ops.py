"""Operations: liveness (`/healthz`, shared with the prediction service) and readiness
(`/readyz`: the write-ahead log is open and writable, with its counters)."""

from __future__ import annotations

from fastapi import APIRouter

from smallboat.collect.deps import StoreDep
from smallboat.collect.models import ErrorBody, Ready
from smallboat.web.probes import live

router = APIRouter(tags=["ops"])
router.include_router(live)


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(store: StoreDep) -> Ready:
    """Readiness: the log is open and writable (503 once it cannot write); its counters since
    the collector started."""
    return store.ready()

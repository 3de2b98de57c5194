"""Administration behind the admin token (`SMALLBOAT_ADMIN_TOKEN`): hot reload of the model."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException, Request

from smallboat.serve.deps import AdminDep, MetricsDep, ScorerDep
from smallboat.serve.models import ErrorBody, Reloaded
from smallboat.serve.scoring import load_model
from smallboat.web.deps import SettingsDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])


@router.post("/reload", responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def reload(
    request: Request, scorer: ScorerDep, settings: SettingsDep, collected: MetricsDep
) -> Reloaded:
    """Load the current champion (or re-read the served bundle folder) and serve it from the
    next batch on; requests in flight finish on the old model. A failed load keeps the old."""
    lock: asyncio.Lock = request.app.state.reload_lock
    async with lock:
        previous = scorer.model
        try:
            loaded = await asyncio.to_thread(load_model, settings, request.app.state.bundle)
        except Exception as exc:
            collected.reloads.labels("failed").inc()
            log.exception("reload failed; still serving %s", previous.version)
            raise HTTPException(
                503, f"reload failed, still serving {previous.version}: {exc}"
            ) from None
        scorer.swap(loaded)
        collected.serving(loaded.version)
        collected.reloads.labels("ok").inc()
        log.info("now serving %s (was %s)", loaded.version, previous.version)
    return Reloaded(
        model_version=loaded.version,
        model_source=loaded.source,
        previous_version=previous.version,
    )

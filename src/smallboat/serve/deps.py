"""Request dependencies of the prediction API: the scorer, the session store, the metrics, the
admin token (the settings' alias is `web.deps.SettingsDep`, shared with the collector)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from smallboat.serve.metrics import ServeMetrics
from smallboat.serve.scoring import Scorer
from smallboat.serve.sessions import SessionStore
from smallboat.web.deps import SettingsDep, app_state

ScorerDep = Annotated[Scorer, app_state("scorer")]
SessionsDep = Annotated[SessionStore, app_state("sessions")]
MetricsDep = Annotated[ServeMetrics, app_state("metrics")]


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """`Authorization: Bearer <SMALLBOAT_ADMIN_TOKEN>`; without a configured token the admin
    routes do not exist (404), so a forgotten setting never leaves them open."""
    if not settings.admin_token:
        raise HTTPException(404, f"{request.url.path} is off: set SMALLBOAT_ADMIN_TOKEN to use it")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401,
            "send the admin token as Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(token.strip().encode(), settings.admin_token.encode()):
        raise HTTPException(403, "the admin token is not this service's SMALLBOAT_ADMIN_TOKEN")


AdminDep = Depends(require_admin)

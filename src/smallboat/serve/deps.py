"""Request dependencies of the prediction API: the scorer, the session store, the admin token."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from smallboat.config import Settings
from smallboat.serve.metrics import ServeMetrics
from smallboat.serve.scoring import Scorer
from smallboat.serve.sessions import SessionStore


async def get_scorer(request: Request) -> Scorer:
    scorer: Scorer = request.app.state.scorer
    return scorer


async def get_sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> ServeMetrics:
    metrics: ServeMetrics = request.app.state.metrics
    return metrics


ScorerDep = Annotated[Scorer, Depends(get_scorer)]
SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServeMetrics, Depends(get_metrics)]


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

"""The liveness probe, the same on both servers (DESIGN §2): `GET /healthz` answers while the
process does. Readiness (`GET /readyz`) is each app's own: what it needs before taking traffic."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok"] = "ok"


live = APIRouter()
"""Included by each app's ops router, which gives it its tag."""


@live.get("/healthz")
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()

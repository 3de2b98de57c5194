"""Administration of a running collector, behind a bearer token: roll the log's active segment
(so `smallboat collect compact` can land everything acknowledged so far) and read the counters
of ignored and refused hits (`smallboat collect status`).

The token is SMALLBOAT_ADMIN_TOKEN, or one the collector makes up when it starts and writes,
readable only by its user, to `server.json` beside its replica's log (`collect.control`), where
the CLI finds it. Without a token the routes answer 404. (`smallboat collect compact` asks for
the roll with a signal instead, which also reaches each worker of a shared port.)
"""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from smallboat.collect.counters import Snapshot
from smallboat.collect.deps import CountersDep, StoreDep
from smallboat.collect.models import ErrorBody, Ready

router = APIRouter(prefix="/admin", tags=["admin"])


class Rolled(BaseModel):
    """`POST /admin/roll`: the segment that was closed (None: the active one held nothing)."""

    rolled: str | None


class Counters(BaseModel):
    """`GET /admin/counters`: hits ignored and refused since the collector started, and the
    log's readiness and counters."""

    counters: Snapshot
    ready: Ready


def _authorize(request: Request) -> None:
    token: str | None = getattr(request.app.state, "admin_token", None)
    if not token:
        raise HTTPException(404, "the admin routes are off: set SMALLBOAT_ADMIN_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401,
            "send the collector's admin token as Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.post("/roll", responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}})
async def roll(request: Request, store: StoreDep) -> Rolled:
    """Close the log's active segment once every append queued before this request is durable;
    the closed segment can then be compacted."""
    _authorize(request)
    segment = await asyncio.wrap_future(store.wal.roll())
    return Rolled(rolled=None if segment is None else segment.name)


@router.get("/counters", responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}})
async def counters(request: Request, store: StoreDep, hit_counters: CountersDep) -> Counters:
    """Hits ignored and refused, per protocol and reason, and the log's counters."""
    _authorize(request)
    return Counters(counters=hit_counters.snapshot(), ready=store.ready())

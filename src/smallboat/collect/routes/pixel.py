"""`/collect`: a Google-Analytics-style pixel hit (`GET`, answered with a 1x1 GIF) and canonical
JSON events (`POST`). One resource, one router: both are the shop's own tracking path."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from smallboat.collect.deps import StoreDep
from smallboat.collect.events import now_ms
from smallboat.collect.models import Accepted, ErrorBody, GaHit, JsonEvents
from smallboat.collect.protocols import ga_hits, json_hits
from smallboat.web.body import BoundedBodyRoute

PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
"""A transparent 1x1 GIF, the answer to a pixel hit."""
NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
"""A cached pixel would not reach the collector twice: browsers and proxies must not cache it."""

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A parameter or field is missing or invalid."},
    413: {"model": ErrorBody, "description": "The body is over the size limit."},
    503: {"model": ErrorBody, "description": "The log cannot write; nothing was accepted."},
}
"""The error answers of every route that logs events (these and Segment's)."""

router = APIRouter(tags=["pixel"], route_class=BoundedBodyRoute)


@router.get(
    "/collect",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "A 1x1 GIF."}, **ERRORS},
)
async def collect_hit(hit: Annotated[GaHit, Query()], store: StoreDep) -> Response:
    """A Google-Analytics-style hit; answers a 1x1 GIF once the hit is durable."""
    received = now_ms()
    await store.log(ga_hits(hit, received_ms=received, policy=store.time_policy), received)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)


@router.post("/collect", responses=ERRORS)
async def collect_json(events: JsonEvents, store: StoreDep) -> Accepted:
    """Canonical JSON events, one or a list; answers once every event is durable."""
    received = now_ms()
    hits = json_hits(events.root, received_ms=received, policy=store.time_policy)
    return Accepted(events=await store.log(hits, received))

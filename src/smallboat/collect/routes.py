"""The collection API's routers: the pixel and canonical JSON (`/collect`), Segment (`/v1`), ops.

Every handler validates the whole request first (nothing malformed reaches the log), then awaits
the store's group commit, and only then answers 2xx.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from smallboat.collect.deps import StoreDep, WriteKeyDep
from smallboat.collect.events import now_ms
from smallboat.collect.models import (
    Accepted,
    ErrorBody,
    GaHit,
    Health,
    JsonEvents,
    SegmentBatch,
    SegmentMessage,
)
from smallboat.collect.protocols import ga_hits, json_hits, segment_hits
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

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A parameter or field is missing or invalid."},
    413: {"model": ErrorBody, "description": "The body is over the size limit."},
    503: {"model": ErrorBody, "description": "The log cannot write; nothing was accepted."},
}

pixel = APIRouter(tags=["pixel"], route_class=BoundedBodyRoute)
segment = APIRouter(prefix="/v1", tags=["segment"], route_class=BoundedBodyRoute)
ops = APIRouter(tags=["ops"])


@pixel.get(
    "/collect",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "A 1x1 GIF."}, **_ERRORS},
)
async def collect_hit(hit: Annotated[GaHit, Query()], store: StoreDep) -> Response:
    """A Google-Analytics-style hit; answers a 1x1 GIF once the hit is durable."""
    received = now_ms()
    await store.log(ga_hits(hit, received_ms=received, policy=store.time_policy), received)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)


@pixel.post("/collect", responses=_ERRORS)
async def collect_json(events: JsonEvents, store: StoreDep) -> Accepted:
    """Canonical JSON events, one or a list; answers once every event is durable."""
    received = now_ms()
    hits = json_hits(events.root, received_ms=received, policy=store.time_policy)
    return Accepted(events=await store.log(hits, received))


@segment.post("/batch", responses={401: {"model": ErrorBody}, **_ERRORS})
async def segment_batch(body: SegmentBatch, store: StoreDep, _key: WriteKeyDep) -> Accepted:
    """Segment's batch call (what its libraries send)."""
    received = now_ms()
    hits, ignored = segment_hits(
        body.batch, received_ms=received, policy=store.time_policy, where="batch"
    )
    return Accepted(events=await store.log(hits, received), ignored=ignored)


@segment.post("/track", responses={401: {"model": ErrorBody}, **_ERRORS})
async def segment_track(message: SegmentMessage, store: StoreDep, _key: WriteKeyDep) -> Accepted:
    """Segment's track call: the e-commerce spec's product events become product actions."""
    return await _one_message(message.model_copy(update={"type": "track"}), store)


@segment.post("/page", responses={401: {"model": ErrorBody}, **_ERRORS})
async def segment_page(message: SegmentMessage, store: StoreDep, _key: WriteKeyDep) -> Accepted:
    """Segment's page call: a pageview."""
    return await _one_message(message.model_copy(update={"type": "page"}), store)


async def _one_message(message: SegmentMessage, store: StoreDep) -> Accepted:
    received = now_ms()
    hits, ignored = segment_hits([message], received_ms=received, policy=store.time_policy)
    return Accepted(events=await store.log(hits, received), ignored=ignored)


@ops.get("/health")
async def health(store: StoreDep) -> Health:
    """Liveness, and the log's counters since the collector started."""
    return store.health()

"""Segment's HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/page`), behind a write key, so
Segment's own libraries send here unchanged."""

from __future__ import annotations

from fastapi import APIRouter

from smallboat.collect.deps import StoreDep, WriteKeyDep
from smallboat.collect.events import now_ms
from smallboat.collect.models import Accepted, ErrorBody, SegmentBatch, SegmentMessage
from smallboat.collect.protocols import segment_hits
from smallboat.collect.routes.pixel import ERRORS
from smallboat.web.body import BoundedBodyRoute

router = APIRouter(prefix="/v1", tags=["segment"], route_class=BoundedBodyRoute)


@router.post("/batch", responses={401: {"model": ErrorBody}, **ERRORS})
async def segment_batch(body: SegmentBatch, store: StoreDep, _key: WriteKeyDep) -> Accepted:
    """Segment's batch call (what its libraries send)."""
    received = now_ms()
    hits, ignored = segment_hits(
        body.batch, received_ms=received, policy=store.time_policy, where="batch"
    )
    return Accepted(events=await store.log(hits, received), ignored=ignored)


@router.post("/track", responses={401: {"model": ErrorBody}, **ERRORS})
async def segment_track(message: SegmentMessage, store: StoreDep, _key: WriteKeyDep) -> Accepted:
    """Segment's track call: the e-commerce spec's product events become product actions."""
    return await _one_message(message.model_copy(update={"type": "track"}), store)


@router.post("/page", responses={401: {"model": ErrorBody}, **ERRORS})
async def segment_page(message: SegmentMessage, store: StoreDep, _key: WriteKeyDep) -> Accepted:
    """Segment's page call: a pageview."""
    return await _one_message(message.model_copy(update={"type": "page"}), store)


async def _one_message(message: SegmentMessage, store: StoreDep) -> Accepted:
    received = now_ms()
    hits, ignored = segment_hits([message], received_ms=received, policy=store.time_policy)
    return Accepted(events=await store.log(hits, received), ignored=ignored)

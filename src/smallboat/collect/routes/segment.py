"""Segment's HTTP tracking API (`/v1/batch`, `/v1/track`, `/v1/page`), behind a write key, so
Segment's and RudderStack's own libraries send here unchanged.

Each message is validated and mapped on its own: a batch keeps its good messages and answers 200
with how many rows were logged, how many messages were ignored (identify, a non-e-commerce
track...) and which were refused and why (`refusals`); the refused ones go to the rejects log. A
request whose messages are all refused is a 400 naming them. Error bodies carry `code` and
`message` besides `error` and `detail`: the fields the SDKs read (`collect.app`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import ValidationError

from smallboat.collect.counters import HitCounters
from smallboat.collect.deps import CountersDep, RejectsDep, StoreDep, WriteKeyDep
from smallboat.collect.events import HitError, now_ms
from smallboat.collect.fastmodels import segment_view
from smallboat.collect.models import (
    BatchAccepted,
    SdkErrorBody,
    SegmentBatch,
    SegmentMessage,
    validator,
)
from smallboat.collect.protocols import segment_message_hits
from smallboat.collect.rejects import RejectsLog
from smallboat.collect.routes.pixel import ERRORS
from smallboat.collect.routes.refusals import Outcome, counted_route, validation_detail
from smallboat.collect.store import EventStore

PROTOCOL = "segment"
_validate_message = validator(SegmentMessage)
SDK_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**answer, "model": SdkErrorBody}
    for status, answer in {401: {"description": "A missing or wrong write key."}, **ERRORS}.items()
}

router = APIRouter(prefix="/v1", tags=["segment"], route_class=counted_route(PROTOCOL))


@router.post("/batch", responses=SDK_ERRORS)
async def segment_batch(
    body: SegmentBatch,
    store: StoreDep,
    counters: CountersDep,
    rejects: RejectsDep,
    _key: WriteKeyDep,
) -> BatchAccepted:
    """Segment's batch call (what its libraries send): the good messages are logged, the bad
    ones refused one by one."""
    received = now_ms()
    outcome = _map(body.batch, store, received, route="/v1/batch", where="batch")
    return await outcome.answer(store, counters, rejects, received)


Message = Annotated[dict[str, Any], Body(description="One Segment message (SegmentMessage).")]


@router.post("/track", responses=SDK_ERRORS)
async def segment_track(
    message: Message, store: StoreDep, counters: CountersDep, rejects: RejectsDep, _key: WriteKeyDep
) -> BatchAccepted:
    """Segment's track call: the e-commerce spec's product events become product actions."""
    return await _one(message, "track", store, counters, rejects)


@router.post("/page", responses=SDK_ERRORS)
async def segment_page(
    message: Message, store: StoreDep, counters: CountersDep, rejects: RejectsDep, _key: WriteKeyDep
) -> BatchAccepted:
    """Segment's page call: a pageview."""
    return await _one(message, "page", store, counters, rejects)


async def _one(
    message: dict[str, Any],
    kind: str,
    store: EventStore,
    counters: HitCounters,
    rejects: RejectsLog,
) -> BatchAccepted:
    """A single-message call (`/v1/track`, `/v1/page`): the message typed by its route."""
    received = now_ms()
    outcome = _map([{**message, "type": kind}], store, received, route=f"/v1/{kind}")
    return await outcome.answer(store, counters, rejects, received)


def _map(
    raws: list[Any], store: EventStore, received: int, *, route: str, where: str = ""
) -> Outcome:
    """Each message validated and mapped on its own; `where` prefixes field names ("batch")."""
    outcome = Outcome(PROTOCOL, route)
    for i, raw in enumerate(raws):
        at = f"{where}[{i}]." if where else ""
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        try:
            message = segment_view(raw) or _validate_message(raw)
            hits, ignored = segment_message_hits(
                message, received_ms=received, policy=store.time_policy, at=at
            )
        except ValidationError as exc:
            outcome.refuse(i, raw, validation_detail(exc, at), _text(message_id))
            continue
        except HitError as exc:
            outcome.refuse(i, raw, str(exc), _text(message_id))
            continue
        outcome.hits.extend(hits)
        if ignored is not None:
            outcome.ignored[ignored] += 1
    return outcome


def _text(value: Any) -> str | None:
    return str(value)[:256] if isinstance(value, str | int) else None

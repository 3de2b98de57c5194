"""Snowplow's tracker protocol: `POST /com.snowplowanalytics.snowplow/tp2` (a `payload_data`
JSON with a list of events, what the JavaScript and Python trackers send by default) and the
`GET /i` pixel (one event in the query string), mapped by `collect.snowplow`.

Browser trackers call from the shop's pages, another origin: the app's CORS middleware answers
their preflight and allows credentials for the origins of SMALLBOAT_COLLECT_CORS_ORIGINS.
Each event is validated on its own: the good ones are logged, the bad ones refused (counted, and
in the rejects log); a request whose events are all refused is a 400, which the trackers do not
retry.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from smallboat.collect.deps import CountersDep, RejectsDep, StoreDep
from smallboat.collect.events import HitError, now_ms
from smallboat.collect.fastmodels import SnowplowLike, snowplow_view
from smallboat.collect.models import BatchAccepted, SnowplowEvent, SnowplowPayload, validator
from smallboat.collect.routes.pixel import ERRORS, NO_CACHE, PIXEL_GIF
from smallboat.collect.routes.refusals import Outcome, counted_route, validation_detail
from smallboat.collect.snowplow import PAYLOAD_SCHEMA, snowplow_hits
from smallboat.collect.store import EventStore

PROTOCOL = "snowplow"
_validate_event = validator(SnowplowEvent)

router = APIRouter(tags=["snowplow"], route_class=counted_route(PROTOCOL))


@router.post("/com.snowplowanalytics.snowplow/tp2", responses=ERRORS)
async def snowplow_post(
    body: SnowplowPayload, store: StoreDep, counters: CountersDep, rejects: RejectsDep
) -> BatchAccepted:
    """A batch of tracker-protocol events: the good ones are logged, the bad ones refused one
    by one (`refusals`)."""
    received = now_ms()
    outcome = payload_outcome(body, store, received)
    return await outcome.answer(store, counters, rejects, received)


def payload_outcome(body: SnowplowPayload, store: EventStore, received: int) -> Outcome:
    """Each event of a tp2 payload mapped (or refused) on its own; a HitError for a payload
    whose schema is not `payload_data`."""
    outcome = Outcome(PROTOCOL, "/com.snowplowanalytics.snowplow/tp2")
    if not body.schema_.startswith(PAYLOAD_SCHEMA):
        raise HitError("schema", f"{body.schema_!r} is not {PAYLOAD_SCHEMA}<version>")
    for i, raw in enumerate(body.data):
        _map(outcome, i, raw, store, received)
    return outcome


@router.get(
    "/i",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "A 1x1 GIF."}, **ERRORS},
)
async def snowplow_pixel(
    request: Request, store: StoreDep, counters: CountersDep, rejects: RejectsDep
) -> Response:
    """One tracker-protocol event in the query string (the GET emitters' and the no-script
    pixel's form); answers a 1x1 GIF once it is durable."""
    received = now_ms()
    outcome = Outcome(PROTOCOL, "/i")
    _map(outcome, None, dict(request.query_params), store, received)
    await outcome.answer(store, counters, rejects, received)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)


def _map(outcome: Outcome, index: int | None, raw: Any, store: EventStore, received: int) -> None:
    """One event mapped into `outcome`, or refused there with its error's fields prefixed with
    `data[<index>].` (nothing for the pixel's single event). The prefix and the message id are
    made only for a refused event: the mapping's errors are the same with the prefix added."""
    try:
        event: SnowplowLike | None = snowplow_view(raw)
        if event is None:
            outcome.modelled += 1
            event = _validate_event(raw)
        hits, ignored = snowplow_hits(event, received_ms=received, policy=store.time_policy)
    except ValidationError as exc:
        outcome.refuse(index, raw, validation_detail(exc, _at(index)), _message_id(raw))
        return
    except HitError as exc:
        outcome.refuse(index, raw, f"{_at(index)}{exc}", _message_id(raw))
        return
    outcome.hits.extend(hits)
    if ignored is not None:
        outcome.ignored[ignored] += 1


def _at(index: int | None) -> str:
    return "" if index is None else f"data[{index}]."


def _message_id(raw: Any) -> str | None:
    event_id = raw.get("eid") if isinstance(raw, dict) else None
    return event_id[:256] if isinstance(event_id, str) else None

"""`/collect` and `/batch`: Universal Analytics hits (the pixel `GET`, a hit in a `POST` body,
up to 20 hits in a `POST /batch`), and the canonical JSON events (`POST /collect` with
`Content-Type: application/json`). One resource, one router: the shop's own tracking path.

A UA hit is answered with a 1x1 GIF once its rows are durable; a hit that carries no browsing
signal (a timing hit, an event without a product action...) is acknowledged the same way and
counted as ignored (`collect.ga`), never refused.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from smallboat.collect.counters import count_ignored, counting_refusals
from smallboat.collect.deps import CountersDep, StoreDep
from smallboat.collect.events import HitError, now_ms
from smallboat.collect.fastmodels import JsonLike, json_views
from smallboat.collect.ga import UA_MAX_BATCH, Mapped, body_text, form, ua_hits, validate
from smallboat.collect.models import Accepted, ErrorBody, GaHit, JsonEvents, validator
from smallboat.collect.protocols import json_hits
from smallboat.collect.store import EventStore
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
GIF_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/gif": {}}, "description": "A 1x1 GIF: the hit is durable."}
}
PROTOCOL = "ga"
_validate_events = validator(JsonEvents)

router = APIRouter(tags=["pixel"], route_class=BoundedBodyRoute)


def _gif() -> Response:
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)


async def _log_ua(store: EventStore, counters: CountersDep, mapped: Mapped, received: int) -> None:
    await store.log(mapped.hits, received)
    count_ignored(counters, PROTOCOL, mapped.ignored)


def _ua(params: Mapping[str, str], store: EventStore, received: int, where: str = "") -> Mapped:
    hit = validate(GaHit, params, where)
    return ua_hits(hit, received_ms=received, policy=store.time_policy, where=where)


@router.get("/collect", response_class=Response, responses={**GIF_ANSWER, **ERRORS})
async def collect_hit(request: Request, store: StoreDep, counters: CountersDep) -> Response:
    """A Universal Analytics hit in the query string (v=1, t, cid, pa, pr<N>id, dl, z, qt,
    and the smallboat extensions sid and ts_ms); answers a 1x1 GIF once the hit is durable."""
    received = now_ms()
    with counting_refusals(counters, PROTOCOL):
        mapped = _ua(dict(request.query_params), store, received)
    await _log_ua(store, counters, mapped, received)
    return _gif()


@router.post(
    "/collect",
    response_class=Response,
    responses={
        200: {
            "model": Accepted,
            "content": {"image/gif": {}},
            "description": "Canonical JSON events: how many were logged. A UA hit: a 1x1 GIF.",
        },
        **ERRORS,
        401: {"model": ErrorBody, "description": "JSON events without the key, when one is set."},
        403: {"model": ErrorBody, "description": "JSON events with a wrong key."},
    },
)
async def collect_post(request: Request, store: StoreDep, counters: CountersDep) -> Response:
    """Canonical JSON events (`Content-Type: application/json`: one event or a list), or one
    Universal Analytics hit in the body (text/plain or form-encoded, what analytics.js sends
    with sendBeacon and for long hits); answers once every row is durable. With
    SMALLBOAT_COLLECT_KEY set, JSON events need that key (`Authorization: Bearer <key>` or
    `X-Smallboat-Key`); unset, anyone may post them."""
    received = now_ms()
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        _check_key(request)
        with counting_refusals(counters, "json"):
            events = _json_events(await request.body())
            hits = json_hits(events, received_ms=received, policy=store.time_policy)
        accepted = Accepted(events=await store.log(hits, received))
        return JSONResponse(accepted.model_dump())
    with counting_refusals(counters, PROTOCOL):
        mapped = ua_post(request.query_params, await request.body(), store, received)
    await _log_ua(store, counters, mapped, received)
    return _gif()


def ua_post(query: Mapping[str, str], body: bytes, store: EventStore, received: int) -> Mapped:
    """The rows of a UA hit in a POST body (its parameters over the query's)."""
    text = body_text(body).strip()
    if text.startswith(("{", "[")):
        raise HitError("body", "is not JSON: send it with Content-Type: application/json")
    if "\n" in text:
        raise HitError("body", "holds several lines: send several hits to POST /batch")
    return _ua({**query, **form(text)}, store, received)


@router.post("/batch", response_class=Response, responses={**GIF_ANSWER, **ERRORS})
async def collect_batch(request: Request, store: StoreDep, counters: CountersDep) -> Response:
    """Up to 20 Universal Analytics hits, one per body line (what analytics.js and the
    Measurement Protocol libraries batch); all of them are logged, or none (a 400 naming the
    line)."""
    received = now_ms()
    with counting_refusals(counters, PROTOCOL):
        mapped = ua_batch(await request.body(), store, received)
    await _log_ua(store, counters, mapped, received)
    return _gif()


def ua_batch(body: bytes, store: EventStore, received: int) -> Mapped:
    """The rows of a `POST /batch` body: every line's hit, or a HitError naming the line."""
    lines = [line for line in body_text(body).splitlines() if line.strip()]
    if not lines:
        raise HitError("body", "is empty: send one hit per line")
    if len(lines) > UA_MAX_BATCH:
        raise HitError(
            "body", f"has {len(lines)} hits; at most {UA_MAX_BATCH} per batch are accepted"
        )
    mapped = Mapped()
    for i, line in enumerate(lines):
        mapped.add(_ua(form(line), store, received, where=f"line {i + 1}: "))
    return mapped


def _check_key(request: Request) -> None:
    """JSON events name their session (a purchase for anyone's): with SMALLBOAT_COLLECT_KEY set
    they need it, as `Authorization: Bearer <key>` or `X-Smallboat-Key: <key>`."""
    key: str = request.app.state.settings.collect_key
    if not key:
        return
    given = given_key(
        request.headers.get("authorization", ""), request.headers.get("x-smallboat-key", "")
    )
    if not given:
        raise HTTPException(
            401,
            "JSON events need the collector's key (SMALLBOAT_COLLECT_KEY): send it as "
            "Authorization: Bearer <key> or X-Smallboat-Key: <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not key_matches(given, key):
        raise HTTPException(403, "the key is not the collector's (SMALLBOAT_COLLECT_KEY)")


def given_key(authorization: str, x_smallboat_key: str) -> str:
    """The key a request carries: `Authorization: Bearer <key>`, else `X-Smallboat-Key`."""
    scheme, _, bearer = authorization.partition(" ")
    given = bearer.strip() if scheme.lower() == "bearer" else ""
    return given or x_smallboat_key.strip()


def key_matches(given: str, key: str) -> bool:
    """Whether JSON events carrying `given` pass SMALLBOAT_COLLECT_KEY `key` (unset: all do)."""
    return not key or (bool(given) and secrets.compare_digest(given.encode(), key.encode()))


def _json_events(body: bytes) -> Sequence[JsonLike]:
    """The canonical events of a JSON body; errors answer 400 like a declared body model's."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
              "input": {}, "ctx": {"error": str(exc)}}]
        ) from None  # fmt: skip
    return json_events_of(data)


def json_events_of(data: Any) -> Sequence[JsonLike]:
    """The canonical events of a parsed JSON body; RequestValidationError naming the field.
    Plain events are read without pydantic (`collect.fastmodels`), the others by the model."""
    views = json_views(data)
    if views is not None:
        return views
    try:
        return _validate_events(data).root
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None

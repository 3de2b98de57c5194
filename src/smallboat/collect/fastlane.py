"""The collector's fast lane: single hits and batches answered without FastAPI's routing.

A hit's own work is small: map the query string or body, append to the log, wait for the group
commit, answer. Profiled under load, FastAPI's routing, dependency solving, body parsing,
request and response objects cost about twice that work (docs/collect.md, "Speed"). This ASGI
middleware answers the *happy path* of the collection routes itself, with the very functions
the routes call and the same answer (status, body, headers):

- `GET /collect`, `GET /g/collect`, `GET /i` (pixel hits);
- `POST /collect` (canonical JSON events, or a UA hit in the body), `POST /batch` (UA),
  `POST /g/collect` (gtag.js), `POST /v1/batch|track|page` (Segment, behind the write key),
  `POST /com.snowplowanalytics.snowplow/tp2` (Snowplow).

Anything else goes to the app unchanged, its body replayed as it was received: another path or
method, a CORS request (an `Origin` header while SMALLBOAT_COLLECT_CORS_ORIGINS is set), a body
over the limit or compressed, a missing or wrong key, a body that orjson does not parse (NaN,
a lone surrogate, a byte order mark: the app's parser decides), an event the mapping refuses
(even one of a batch), a log that cannot write. The lane has then logged and counted nothing, so
the app answers exactly as it would without the lane: one definition of every error, refusal
count and rejects-log entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smallboat.collect.counters import count_ignored
from smallboat.collect.events import now_ms
from smallboat.collect.ga import Mapped, ga4_web_hits
from smallboat.collect.models import (
    Accepted,
    BatchAccepted,
    SegmentBatch,
    SnowplowPayload,
    validator,
)
from smallboat.collect.protocols import json_hits
from smallboat.collect.routes import ga4, pixel, segment, snowplow
from smallboat.collect.routes.refusals import Outcome
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.data.log.wal import LogWriteError
from smallboat.web.body import read_whole_body, replaying
from smallboat.web.jsontext import has_long_number

Params = dict[str, str]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, headers, body."""


@dataclass
class Incoming:
    """What a handler gets: the app, its store, the query, the body (b"" for a GET), the
    headers the lane reads, and the receive time."""

    app: FastAPI
    store: EventStore
    params: Params
    body: bytes
    headers: dict[bytes, bytes]
    received: int


Handler = Callable[[Incoming], Awaitable[Answer | None]]
"""Logs a request's rows and returns the answer; None (having logged and counted nothing)
when the app must answer instead."""

_GIF: Answer = (
    200,
    [
        (b"content-type", b"image/gif"),
        (b"content-length", str(len(pixel.PIXEL_GIF)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in pixel.NO_CACHE.items()),
    ],
    pixel.PIXEL_GIF,
)
_NO_CONTENT: Answer = (204, [], b"")
_JSON_TYPE = (b"content-type", b"application/json")
_READ = (b"origin", b"content-type", b"content-encoding", b"content-length", b"authorization")
_JSON_KEY = b"x-smallboat-key"
_UNPARSED = object()
_validate_batch = validator(SegmentBatch)
_validate_payload = validator(SnowplowPayload)


def _loads(body: bytes) -> Any:
    """The JSON of a body as the app's parser (`json.loads`) reads it, with orjson (several
    times faster); `_UNPARSED` when orjson refuses it (the app's parser then decides: it takes
    NaN, lone surrogates, a byte order mark, UTF-16). orjson reads an integer past 64 bits as a
    float where `json` keeps it exact: a body with a 19-digit run is read by `json` itself."""
    if has_long_number(body):
        try:
            return json.loads(body)
        except ValueError:
            return _UNPARSED
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _UNPARSED


def _json_answer(content: dict[str, Any]) -> Answer:
    """What `JSONResponse(content)` sends, at a tenth of its cost: `content` holds only
    booleans, integers and an empty list, whose orjson text is the stdlib's."""
    body = orjson.dumps(content)
    return 200, [(b"content-length", str(len(body)).encode()), _JSON_TYPE], body


def _media(hit: Incoming) -> str:
    return hit.headers.get(b"content-type", b"").decode("latin-1").partition(";")[0].strip().lower()


async def _logged(hit: Incoming, mapped: Mapped, protocol: str, answer: Answer) -> Answer:
    await hit.store.log(mapped.hits, hit.received)
    count_ignored(hit.app.state.counters, protocol, mapped.ignored)
    return answer


async def _answered(hit: Incoming, outcome: Outcome, answer: Answer | None = None) -> Answer | None:
    """A Segment or Snowplow request whose events were all taken (none refused): logged and
    counted, answered with `answer` or the JSON of what was accepted."""
    if outcome.refused:
        return None  # the app refuses them: counted, in the rejects log, listed in its answer
    logged = await outcome.log(hit.store, hit.app.state.counters, hit.received)
    return answer or _accepted(logged, sum(outcome.ignored.values()))


@lru_cache(maxsize=1024)
def _accepted(events: int, ignored: int) -> Answer:
    """What `Outcome.answer` answers to a batch with no refused event (`BatchAccepted`), made
    once per pair of counts: a tracker sends batches of the same few sizes, and building the
    model, dumping and encoding it were a twentieth of a Snowplow batch's CPU."""
    return _json_answer(BatchAccepted(events=events, ignored=ignored).model_dump())


# -- GET ---------------------------------------------------------------------------------------


async def _ua_get(hit: Incoming) -> Answer | None:
    try:
        mapped = pixel._ua(hit.params, hit.store, hit.received)
    except Exception:
        return None
    return await _logged(hit, mapped, pixel.PROTOCOL, _GIF)


async def _ga4_get(hit: Incoming) -> Answer | None:
    try:
        mapped = ga4_web_hits(
            hit.params, [], received_ms=hit.received, policy=hit.store.time_policy
        )
    except Exception:
        return None
    return await _logged(hit, mapped, "ga4", _NO_CONTENT)


async def _snowplow_get(hit: Incoming) -> Answer | None:
    outcome = Outcome(snowplow.PROTOCOL, "/i")
    try:
        snowplow._map(outcome, None, hit.params, hit.store, hit.received)
    except Exception:
        return None
    return await _answered(hit, outcome, _GIF)


# -- POST --------------------------------------------------------------------------------------


async def _collect_post(hit: Incoming) -> Answer | None:
    """`POST /collect`: canonical JSON events (behind SMALLBOAT_COLLECT_KEY when set), or a UA
    hit in the body."""
    media = _media(hit)
    if media == "application/json" or media.endswith("+json"):
        given = pixel.given_key(
            hit.headers.get(b"authorization", b"").decode("latin-1"),
            hit.headers.get(_JSON_KEY, b"").decode("latin-1"),
        )
        if not pixel.key_matches(given, hit.app.state.settings.collect_key):
            return None
        data = _loads(hit.body)
        if data is _UNPARSED:
            return None
        try:
            events = pixel.json_events_of(data)
            hits = json_hits(events, received_ms=hit.received, policy=hit.store.time_policy)
        except Exception:
            return None
        logged = await hit.store.log(hits, hit.received)
        return _json_answer(Accepted(events=logged).model_dump())
    try:
        mapped = pixel.ua_post(hit.params, hit.body, hit.store, hit.received)
    except Exception:
        return None
    return await _logged(hit, mapped, pixel.PROTOCOL, _GIF)


async def _ua_batch(hit: Incoming) -> Answer | None:
    try:
        mapped = pixel.ua_batch(hit.body, hit.store, hit.received)
    except Exception:
        return None
    return await _logged(hit, mapped, pixel.PROTOCOL, _GIF)


async def _ga4_post(hit: Incoming) -> Answer | None:
    try:
        mapped = ga4.ga4_web_rows(hit.params, hit.body, hit.store, hit.received)
    except Exception:
        return None
    return await _logged(hit, mapped, "ga4", _NO_CONTENT)


def _write_key_ok(hit: Incoming) -> bool:
    """What `deps.require_write_key` accepts: basic auth whose user is a write key."""
    scheme, _, encoded = hit.headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        user = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return False
    given = user.encode()
    keys = _write_keys(hit.app.state.settings.write_keys)
    return any(secrets.compare_digest(given, key) for key in keys)


@lru_cache(maxsize=16)
def _write_keys(setting: str) -> tuple[bytes, ...]:
    """SMALLBOAT_WRITE_KEYS as `Settings.write_key_set` reads it, encoded: once per value, not
    once per request."""
    return tuple(key.encode() for key in Settings.model_construct(write_keys=setting).write_key_set)


def _segment_body(hit: Incoming) -> Any:
    """The JSON of a Segment or Snowplow POST as FastAPI would read it; `_UNPARSED` when the
    app must read it (another media type: FastAPI decides what it does with it)."""
    if _media(hit) != "application/json":
        return _UNPARSED
    return _loads(hit.body)


async def _segment_batch(hit: Incoming) -> Answer | None:
    if not _write_key_ok(hit):
        return None
    data = _segment_body(hit)
    if data is _UNPARSED:
        return None
    try:
        body = _validate_batch(data)
        outcome = segment._map(
            body.batch, hit.store, hit.received, route="/v1/batch", where="batch"
        )
    except Exception:
        return None
    return await _answered(hit, outcome)


def _segment_one(kind: str) -> Handler:
    async def one(hit: Incoming) -> Answer | None:
        if not _write_key_ok(hit):
            return None
        data = _segment_body(hit)
        if not isinstance(data, dict):
            return None
        try:
            outcome = segment._map(
                [{**data, "type": kind}], hit.store, hit.received, route=f"/v1/{kind}"
            )
        except Exception:
            return None
        return await _answered(hit, outcome)

    return one


async def _snowplow_post(hit: Incoming) -> Answer | None:
    """The body is read by orjson alone, without `_loads`' scan for long digit runs (a twentieth
    of the request): the plain views read every field the mapping uses as text, so a number
    orjson reads differently from `json` (past 64 bits) changes nothing unless an event went to
    the model, which reads numbers as text; then the app reads the body again, exactly."""
    if _media(hit) != "application/json":
        return None
    try:
        data = orjson.loads(hit.body)
    except orjson.JSONDecodeError:
        return None
    try:
        body = _validate_payload(data)
        outcome = snowplow.payload_outcome(body, hit.store, hit.received)
    except Exception:
        return None
    if outcome.modelled and has_long_number(hit.body):
        return None
    return await _answered(hit, outcome)


_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/collect"): _ua_get,
    ("GET", "/g/collect"): _ga4_get,
    ("GET", "/i"): _snowplow_get,
    ("POST", "/collect"): _collect_post,
    ("POST", "/batch"): _ua_batch,
    ("POST", "/g/collect"): _ga4_post,
    ("POST", "/v1/batch"): _segment_batch,
    ("POST", "/v1/track"): _segment_one("track"),
    ("POST", "/v1/page"): _segment_one("page"),
    ("POST", "/com.snowplowanalytics.snowplow/tp2"): _snowplow_post,
}


def query_params(query: bytes) -> Params:
    """What Starlette's `dict(request.query_params)` gives for `query`, i.e. `urllib.parse.
    parse_qsl(query.decode("latin-1"), keep_blank_values=True)` with the last value of a name
    winning, at a third of its cost: most names and values need no unquoting at all."""
    out: Params = {}
    for part in query.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value)
        out[name] = value
    return out


class FastLane:
    """ASGI middleware in front of the collector app (`owner`): answers the happy path of its
    collection routes directly and hands every other request to `app`."""

    def __init__(self, app: ASGIApp, owner: FastAPI, cors: bool) -> None:
        self.app = app
        self.owner = owner
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = _ROUTES.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        store = getattr(self.owner.state, "store", None)
        if handler is None or store is None:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _READ or name == _JSON_KEY:
                headers[name] = value
        if self.cors and b"origin" in headers:
            await self.app(scope, receive, send)
            return
        body = b""
        messages: list[Message] = []
        if scope["method"] == "POST":
            if not self._plain_body(headers):
                await self.app(scope, receive, send)
                return
            read, messages = await read_whole_body(receive, self.owner.state.body_limit.max_bytes)
            if read is None:
                await self.app(scope, replaying(messages, receive), send)
                return
            body = read
        hit = Incoming(
            self.owner, store, query_params(scope["query_string"]), body, headers, now_ms()
        )
        try:
            answer = await handler(hit)
        except LogWriteError:
            answer = None  # nothing was acknowledged: the app tries and answers its 503
        if answer is None:
            await self.app(scope, replaying(messages, receive) if messages else receive, send)
            return
        status, answer_headers, answer_body = answer
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": answer_body})

    def _plain_body(self, headers: dict[bytes, bytes]) -> bool:
        """A body the lane may read: not compressed, not declared longer than the limit."""
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            return False
        declared = headers.get(b"content-length")
        limit: int = self.owner.state.body_limit.max_bytes
        return declared is None or not declared.isdigit() or int(declared) <= limit

"""The collector's fast lane: single pixel hits answered without FastAPI's routing machinery.

A pixel hit (UA `GET /collect`, GA4 `GET /g/collect`, Snowplow `GET /i`) is the collector's
hottest request and its work is small: map the query string, append one record to the log, wait
for the group commit, answer. Profiled under load, FastAPI's routing, dependency solving, request
and response objects cost about twice that work (docs/collect.md, "Speed"). This ASGI middleware
answers the *happy path* of those three routes itself, with the very functions the routes call
(`routes.pixel._ua`, `ga.ga4_web_hits`, `routes.snowplow._map`, `EventStore.log`, the counters)
and the same answer (status, body, headers).

Anything else goes to the app unchanged: another path or method, a CORS request (an `Origin`
header while SMALLBOAT_COLLECT_CORS_ORIGINS is set), a hit the mapping refuses, a log that
cannot write. The lane has then logged and counted nothing, so the app answers exactly as it
would without the lane: one definition of every error, refusal count and rejects-log entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from smallboat.collect.counters import count_ignored
from smallboat.collect.events import now_ms
from smallboat.collect.ga import ga4_web_hits
from smallboat.collect.routes import pixel, snowplow
from smallboat.collect.routes.refusals import Outcome
from smallboat.collect.store import EventStore
from smallboat.data.log.wal import LogWriteError

Params = dict[str, str]
Handler = Callable[[FastAPI, EventStore, Params, int], Awaitable[bool]]
"""Logs one hit; False (having logged and counted nothing) when the app must answer instead."""

_GIF_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(pixel.PIXEL_GIF)).encode()),
    *((name.lower().encode(), value.encode()) for name, value in pixel.NO_CACHE.items()),
]


async def _ua(app: FastAPI, store: EventStore, params: Params, received: int) -> bool:
    try:
        mapped = pixel._ua(params, store, received)
    except Exception:
        return False
    await store.log(mapped.hits, received)
    count_ignored(app.state.counters, pixel.PROTOCOL, mapped.ignored)
    return True


async def _ga4(app: FastAPI, store: EventStore, params: Params, received: int) -> bool:
    try:
        mapped = ga4_web_hits(params, [], received_ms=received, policy=store.time_policy)
    except Exception:
        return False
    await store.log(mapped.hits, received)
    count_ignored(app.state.counters, "ga4", mapped.ignored)
    return True


async def _snowplow(app: FastAPI, store: EventStore, params: Params, received: int) -> bool:
    outcome = Outcome(snowplow.PROTOCOL, "/i")
    try:
        snowplow._map(outcome, None, params, store, received, at="")
    except Exception:
        return False
    if outcome.refused:
        return False
    await outcome.answer(store, app.state.counters, app.state.rejects, received)
    return True


_ROUTES: dict[str, tuple[Handler, int]] = {
    "/collect": (_ua, 200),
    "/g/collect": (_ga4, 204),
    "/i": (_snowplow, 200),
}
"""Path -> (handler, success status): 200 with the GIF, or GA4's 204 No Content."""


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
    """ASGI middleware in front of the collector app (`owner`): answers its pixel hits' happy
    path directly and hands every other request to `app`."""

    def __init__(self, app: ASGIApp, owner: FastAPI, cors: bool) -> None:
        self.app = app
        self.owner = owner
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        store = getattr(self.owner.state, "store", None)
        if (
            route is None
            or scope["method"] != "GET"
            or store is None
            or (self.cors and any(name == b"origin" for name, _ in scope["headers"]))
        ):
            await self.app(scope, receive, send)
            return
        handler, status = route
        received = now_ms()
        params = query_params(scope["query_string"])
        try:
            logged = await handler(self.owner, store, params, received)
        except LogWriteError:
            logged = False  # nothing was acknowledged: the app tries and answers its 503
        if not logged:
            await self.app(scope, receive, send)
            return
        if status == 204:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": status, "headers": _GIF_HEADERS})
        await send({"type": "http.response.body", "body": pixel.PIXEL_GIF})

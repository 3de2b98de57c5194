"""The fast lane of `POST /v1/predict` and `POST /v1/sessions/{session_id}/events`: plain ASGI
in front of FastAPI.

A prediction's own work (parse, encode, forward, answer) is a few hundred microseconds; what a
request costs around it in FastAPI (matching the path against every route of four protocol
families, two Request objects, the dependency and exception machinery, the Response object and
the send wrappers of each layer) was about as much again. `PredictLane` sits inside the metrics
middleware: a JSON body to either route that `serve.plainbody` is sure of is read, scored and
answered here, its predictions logged once the answer is sent (not in its latency); any other
request, and any body the lane is not sure of (not JSON, invalid, gzip, over the lane's size, a
client gone mid-body), goes to the app unchanged, with the body bytes already read handed over
first. So every error keeps one definition (FastAPI's
route and the pydantic models; a session store's error is answered by the app's own handler),
and the lane answers only what the route would answer 200, with the same JSON
(tests/unit/test_serve_lane.py, tests/integration/test_serve_plainbody.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from smallboat.serve.models import MAX_ID
from smallboat.serve.plainbody import (
    answer_json,
    plain_append_body,
    plain_predict_body,
    wire_prediction,
)
from smallboat.serve.routes.predict import (
    APPEND_PATH,
    OFF_LOOP_BODY_BYTES,
    PREDICT_PATH,
    log_timed,
    router,
    score_timed,
)
from smallboat.serve.scoring import Scorer
from smallboat.serve.sessions import SessionStore
from smallboat.web.body import BodyLimit, read_whole_body, replaying

_JSON = b"application/json"
_IDENTITY = (b"", b"identity")
_SESSIONS, _EVENTS = APPEND_PATH.split("{session_id}")


_Answer = tuple[bytes, Callable[[], None]]
"""What the lane answers: the JSON body, and what logs the predictions once it is sent."""
_ANSWERED: Any = object()
"""The app's own handler has answered (a session store's error): nothing more to send."""


def _declared(path: str) -> BaseRoute:
    return next(
        r
        for r in router.routes
        if isinstance(r, APIRoute) and r.path == path and "POST" in (r.methods or ())
    )


_PREDICT_ROUTE = _declared(PREDICT_PATH)
_APPEND_ROUTE = _declared(APPEND_PATH)
"""The routes the lane stands in for: the route of the scope (metrics and prediction log label)."""


class PredictLane:
    """Answers the plain bodies of the two prediction routes itself; passes everything else to
    `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        session_id = None if path == PREDICT_PATH else _session_of(path)
        if (path != PREDICT_PATH and session_id is None) or not _plain_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        limit: BodyLimit = scope["app"].state.body_limit
        raw, received = await read_whole_body(receive, min(OFF_LOOP_BODY_BYTES, limit.max_bytes))
        if raw is not None:
            answer = (
                await self._predict(scope, receive, raw)
                if session_id is None
                else await self._append(scope, receive, send, raw, session_id)
            )
            if answer is not None:
                if answer is not _ANSWERED:
                    body, log = answer
                    try:
                        await _send_json(send, body)
                    finally:  # the prediction log's rows: after the answer, not in its latency
                        log()
                return
        # not certainly valid, long, or the client left: the route and its models answer it
        await self.app(scope, replaying(received, receive), send)

    async def _predict(self, scope: Scope, receive: Receive, raw: bytes) -> _Answer | None:
        plain = plain_predict_body(raw)
        if plain is None:
            return None
        scope["route"] = _PREDICT_ROUTE
        scorer: Scorer = scope["app"].state.scorer
        request = Request(scope, receive)
        outcomes = await score_timed(request, scorer, plain.sessions, plain.options)
        return (
            answer_json(plain, outcomes, scorer.model.version),
            lambda: log_timed(request, outcomes, plain.session_ids),
        )

    async def _append(
        self, scope: Scope, receive: Receive, send: Send, raw: bytes, session_id: str
    ) -> _Answer | None:
        rows = plain_append_body(raw, session_id)
        if rows is None:
            return None
        scope["route"] = _APPEND_ROUTE
        app = scope["app"]
        scorer: Scorer = app.state.scorer
        store: SessionStore = app.state.sessions
        request = Request(scope, receive)
        window = scorer.model.predictor.spec.max_events
        try:
            prefix = await store.append(session_id, rows, window=window)
        except Exception as exc:  # the app's handler answers it, as behind the route
            handler = _handler_of(app, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            await response(scope, receive, send)
            return _ANSWERED
        outcomes = await score_timed(request, scorer, [prefix])
        return (
            orjson.dumps(wire_prediction(outcomes[0], session_id)),
            lambda: log_timed(request, outcomes, [session_id]),
        )


def _session_of(path: str) -> str | None:
    """The session id of an append's path (as the route's path parameter: 1 to MAX_ID
    characters, no slash), else None."""
    if not (path.startswith(_SESSIONS) and path.endswith(_EVENTS)):
        return None
    session_id = path[len(_SESSIONS) : len(path) - len(_EVENTS)]
    if not 1 <= len(session_id) <= MAX_ID or "/" in session_id:
        return None
    return session_id


def _handler_of(app: Any, exc: Exception) -> Any:
    """The app's own handler of `exc`'s type, as Starlette's exception middleware looks it up
    (a 500 for anything else is the server-error middleware's, outside the lane)."""
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        if kind in app.exception_handlers:
            return app.exception_handlers[kind]
    return None


async def _send_json(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _plain_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Content-Type application/json and no Content-Encoding but identity (names are lower
    case in ASGI)."""
    content_type: bytes | None = None
    for name, value in headers:
        if name == b"content-type" and content_type is None:  # the first, as Starlette reads
            content_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"content-encoding" and value.strip().lower() not in _IDENTITY:
            return False
    return content_type == _JSON

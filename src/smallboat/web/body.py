"""Bounded request bodies: a route class whose handlers never read more than the app's limit.

An app sets `app.state.body_limit = BodyLimit(max_bytes, setting)` and gives its routers
`route_class=BoundedBodyRoute`; a longer body is a 413 naming the limit and the setting that
raises it, checked on Content-Length, while reading, and after un-gzipping (every member of the gzip
stream).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message, Receive


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: int
    setting: str  # the environment variable that changes it, named in the 413


class BoundedBodyRequest(Request):
    """A request whose body is read at most `app.state.body_limit` long (413 past it), and
    un-gzipped when it says `Content-Encoding: gzip` (bounded the same way)."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            bound: BodyLimit = self.app.state.body_limit
            limit = bound.max_bytes
            declared = self.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _too_large(f"is {int(declared):,} bytes", bound)
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(f"is more than {limit:,} bytes", bound)
                chunks.append(chunk)
            data = b"".join(chunks)
            encoding = self.headers.get("content-encoding", "identity").strip().lower()
            if encoding == "gzip":
                data = _gunzip(data, bound)
            elif encoding not in ("", "identity"):
                raise HTTPException(
                    415, f"Content-Encoding {encoding!r} is not supported; send gzip or identity"
                )
            self._body = data
        return self._body


def _too_large(what: str, bound: BodyLimit) -> HTTPException:
    return HTTPException(
        413,
        f"the request body {what}; the limit is {bound.max_bytes:,} bytes ({bound.setting})",
    )


def _gunzip(data: bytes, bound: BodyLimit) -> bytes:
    """Every member of a gzip body (`gzip(a) + gzip(b)` is one valid stream, what some clients
    send), bounded by the limit after inflating; bytes after the last member are a 400."""
    limit = bound.max_bytes
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            where = f" from byte {len(data) - len(rest):,}" if rest is not data else ""
            raise HTTPException(
                400, f"body: Content-Encoding is gzip but the body is not{where} ({exc})"
            ) from None
        if len(out) > limit:
            raise _too_large(f"inflates to more than {limit:,} bytes", bound)
        if not inflater.eof:
            raise HTTPException(400, "body: the gzip stream is truncated")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)
        if not rest.startswith(_GZIP_MAGIC):
            raise HTTPException(
                400,
                f"body: {len(rest):,} bytes after the end of the gzip stream are not gzip "
                "(trailing garbage)",
            )


_GZIP_MAGIC = b"\x1f\x8b"


class BoundedBodyRoute(APIRoute):
    """Routes whose handlers see a BoundedBodyRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedBodyRequest(request.scope, request.receive))

        return bounded


async def read_whole_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """A plain-ASGI lane's read of a request body: the whole body, or None when it is longer
    than `limit` bytes or the client left; with the messages received, so that a request the
    lane does not answer reaches the app unchanged (`replaying`)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        size += len(message.get("body", b""))
        if size > limit:
            return None, messages
        if not message.get("more_body", False):
            break
    if len(messages) == 1:
        return messages[0].get("body", b""), messages
    return b"".join(m.get("body", b"") for m in messages), messages


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` as if nothing had been read: `messages` (what a lane already received) given
    back first, in order."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay

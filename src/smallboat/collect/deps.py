"""Request dependencies of the collection API: the store, the write key, bounded bodies."""

from __future__ import annotations

import base64
import binascii
import secrets
import zlib
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute

from smallboat.collect.store import EventStore
from smallboat.config import Settings


def get_store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[EventStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_write_key(request: Request, settings: SettingsDep) -> str:
    """The Segment write key from HTTP basic auth (user = key, empty password); 401 unless it is
    one of SMALLBOAT_WRITE_KEYS."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _unauthorized("send the write key as the HTTP basic auth user (Authorization: Basic)")
    try:
        user = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("the Authorization header is not valid basic auth") from None
    keys = settings.write_key_set
    if not keys:
        raise _unauthorized("this collector has no write keys: set SMALLBOAT_WRITE_KEYS")
    if not any(secrets.compare_digest(user.encode(), key.encode()) for key in keys):
        raise _unauthorized("the write key is not one of this collector's keys")
    return user


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Basic realm="smallboat"'})


WriteKeyDep = Annotated[str, Depends(require_write_key)]


class BoundedBodyRequest(Request):
    """A request whose body is read at most `collect_max_body_bytes` long (413 past it), and
    un-gzipped when it says `Content-Encoding: gzip` (bounded the same way)."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            limit = self.app.state.settings.collect_max_body_bytes
            declared = self.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise _too_large(f"is {int(declared):,} bytes", limit)
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(f"is more than {limit:,} bytes", limit)
                chunks.append(chunk)
            data = b"".join(chunks)
            encoding = self.headers.get("content-encoding", "identity").strip().lower()
            if encoding == "gzip":
                data = _gunzip(data, limit)
            elif encoding not in ("", "identity"):
                raise HTTPException(
                    415, f"Content-Encoding {encoding!r} is not supported; send gzip or identity"
                )
            self._body = data
        return self._body


def _too_large(what: str, limit: int) -> HTTPException:
    return HTTPException(
        413,
        f"the request body {what}; the limit is {limit:,} bytes (SMALLBOAT_COLLECT_MAX_BODY_BYTES)",
    )


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise HTTPException(
            400, f"body: Content-Encoding is gzip but the body is not ({exc})"
        ) from None
    if len(out) > limit:
        raise _too_large(f"inflates to more than {limit:,} bytes", limit)
    if not inflater.eof:
        raise HTTPException(400, "body: the gzip stream is truncated")
    return out


class BoundedBodyRoute(APIRoute):
    """Routes whose handlers see a BoundedBodyRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedBodyRequest(request.scope, request.receive))

        return bounded

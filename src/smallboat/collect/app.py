"""The collector's FastAPI application: routers, the store's lifespan, JSON error bodies.

Errors are `{"error": <code>, "detail": <what was wrong>}`: 400 names the parameter or body
field and the problem, 401 a missing or wrong Segment write key, 413 a body over the limit, 503 a
log that can no longer write.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smallboat.collect.events import HitError
from smallboat.collect.routes import ops, pixel, segment
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.data.wal import LogWriteError

log = logging.getLogger(__name__)

ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
_SHOWN_ERRORS = 3


def create_app(settings: Settings | None = None, *, store: EventStore | None = None) -> FastAPI:
    """The collector app. Without `store`, one opens when the app starts; either way the store
    closes when the app stops (uvicorn's graceful shutdown)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = store if store is not None else EventStore.open(settings)
        app.state.store = opened
        log.info("collector log at %s", opened.wal.folder)
        try:
            yield
        finally:
            opened.close()

    app = FastAPI(
        title="smallboat collector",
        summary="Pixel, JSON and Segment-compatible event collection on a durable log.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(pixel)
    app.include_router(segment)
    app.include_router(ops)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HitError, _hit_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(LogWriteError, _log_error)
    return app


def error_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    code = ERROR_CODES.get(status, "error")
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, describe_errors(exc.errors()))


async def _hit_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(400, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _log_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(503, str(exc))


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as a field path: ('body', 'batch', 3, 'event') ->
    'batch[3].event'; query parameters by name; the whole body as 'body'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "header", "path"):
        where = parts.pop(0)
        if not parts:
            return str(where)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_error(error: dict[str, Any]) -> str:
    """One validation error as `<field> <problem>`."""
    path = field_path(error.get("loc", ()))
    kind = error.get("type", "")
    given = error.get("input")
    ctx = error.get("ctx") or {}
    if path == "body" and isinstance(given, bytes):
        return "body is not JSON: send it with Content-Type: application/json"
    if kind == "missing":
        return f"{path} is required"
    if kind == "literal_error":
        return f"{path} {given!r} is not one of {ctx.get('expected', '')}"
    if kind == "extra_forbidden":
        return f"{path} is not a field of this body"
    if kind == "json_invalid":
        return f"body is not valid JSON ({ctx.get('error', 'decode error')})"
    if kind == "value_error":
        return f"{path} {ctx.get('error', error.get('msg', ''))!s}"
    shown = f" {given!r}" if isinstance(given, str | int | float | bool) else ""
    return f"{path}{shown}: {error.get('msg', 'is invalid')}"


def describe_errors(errors: Sequence[Any]) -> str:
    shown = [describe_error(e) for e in errors[:_SHOWN_ERRORS]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")

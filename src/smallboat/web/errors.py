"""JSON error bodies `{"error": <code>, "detail": <what was wrong>}` for every 4xx/5xx answer.

`install_error_handlers` makes an app answer validation errors, HTTP errors and the package's own
errors this way. Validation errors name the field path and the problem, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal",
    503: "unavailable",
}
_SHOWN_ERRORS = 3


ExtraFields = Callable[[Request, str, str], Mapping[str, Any]]
"""More fields of an app's error bodies, from (request, code, detail)."""


def error_response(
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    *,
    request: Request | None = None,
    extra: ExtraFields | None = None,
) -> JSONResponse:
    code = ERROR_CODES.get(status, "error")
    body: dict[str, Any] = {"error": code, "detail": detail}
    if extra is not None and request is not None:
        body.update(extra(request, code, detail))
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(
    app: FastAPI,
    *,
    invalid_status: int,
    statuses: Mapping[type[Exception], int] | None = None,
    extra: ExtraFields | None = None,
) -> None:
    """Answer errors as JSON bodies: a body or parameter that fails validation with
    `invalid_status` (400 for the collector, 422 for the prediction API), a body that is not JSON
    at all with 400, HTTP errors with their own status, each exception type of `statuses` with
    its status and its message, and anything else with a 500 that names the exception (the
    traceback goes to the log, not to the client). `extra` adds fields to the bodies (the
    collector adds the `code` and `message` that Segment's and RudderStack's SDKs read)."""

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        status = 400 if any(_is_not_json(e) for e in errors) else invalid_status
        return error_response(status, describe_errors(errors), request=request, extra=extra)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(
            exc.status_code, str(exc.detail), exc.headers, request=request, extra=extra
        )

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(
            500,
            f"the server failed on this request ({type(exc).__name__}); see its log",
            request=request,
            extra=extra,
        )

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind, status in (statuses or {}).items():
        app.add_exception_handler(kind, _answer_with(status, extra))
    app.add_exception_handler(Exception, internal_error)


def _answer_with(
    status: int, extra: ExtraFields | None
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error_response(status, str(exc), request=request, extra=extra)

    return handler


def _is_not_json(error: Mapping[str, Any]) -> bool:
    if error.get("type") == "json_invalid":
        return True
    return tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes)


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


def describe_error(error: Mapping[str, Any]) -> str:
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

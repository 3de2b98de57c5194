"""JSON error bodies `{"error": <code>, "detail": <what was wrong>}` for every 4xx/5xx answer.

`install_error_handlers` makes an app answer validation errors, HTTP errors and the package's own
errors this way. Validation errors name the field path and the problem, never a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

log = logging.getLogger(__name__)

ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "request_header_fields_too_large",
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
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(
            exc.status_code, str(exc.detail), headers, request=request, extra=extra
        )

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(
            500,
            f"the server failed on this request ({type(exc).__name__}); see its log",
            request=request,
            extra=extra,
        )

    async def disconnected(request: Request, exc: Exception) -> JSONResponse:
        # The client left (or its stalled body hit SMALLBOAT_HTTP_REQUEST_TIMEOUT_SECONDS):
        # nobody reads this answer, and it is no server failure.
        log.info("%s %s: the client disconnected mid-request", request.method, request.url.path)
        return error_response(400, "the client disconnected before the request ended")

    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind, status in (statuses or {}).items():
        app.add_exception_handler(kind, _answer_with(status, extra))
    app.add_exception_handler(Exception, internal_error)


def allowed_methods(request: Request) -> str:
    """The `Allow` of a 405: the methods of the resource the path names (Starlette's names only
    the first route that matched the path, so `GET /collect` hid `POST /collect`). The resource
    is the OpenAPI path template the path fits, the most literal one when several do
    (`/v1/models/x:predict` fits `/v1/models/{name}` too); for an undocumented path, every
    method some route takes there."""
    path = request.scope["path"]
    best: tuple[int, dict[str, Any]] | None = None
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            literal = len(re.sub(r"\{[^}]*\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, operations)
    if best is not None:
        return ", ".join(sorted(m.upper() for m in best[1] if m.upper() in _METHODS))
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


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


CONNECTION_ANSWERS: dict[str, dict[str, Any]] = {
    "408": {"description": "The request did not fully arrive in time "
            "(SMALLBOAT_HTTP_REQUEST_TIMEOUT_SECONDS); the connection is closed."},
    "431": {"description": "The request's head is over SMALLBOAT_HTTP_MAX_HEADER_BYTES."},
}  # fmt: skip
"""Answers any operation may give before the app sees the request (`web.connections`)."""
NOT_FOUND = {"description": "No such resource (the path names a model, endpoint or session the "
             "server does not have)."}  # fmt: skip


def complete_openapi(app: FastAPI) -> None:
    """Make the app's OpenAPI document name every status its operations can answer: the
    connection limits' 408 and 431 everywhere, and 404 on every path with a parameter (an
    unknown model, endpoint or session). Their bodies differ by protocol (KServe's carry only
    `error`), so the schema gives no body for them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                answers = operation.setdefault("responses", {})
                for status, answer in CONNECTION_ANSWERS.items():
                    answers.setdefault(status, answer)
                if "{" in path:
                    answers.setdefault("404", NOT_FOUND)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]

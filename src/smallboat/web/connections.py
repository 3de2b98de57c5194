"""Connection limits of both servers, enforced where uvicorn reads the socket, before any app code.

uvicorn 0.54 leaves three gaps an outsider can use: with httptools (its parser whenever that is
installed) a request's head has no size limit (one 256 MiB header held the collector's event loop
for a minute); a connection that never sends a request, or stops half-way through one, is never
closed (the keep-alive timer starts only after a first answer); and malformed HTTP is answered
with a plain-text 400, not the JSON error shape of every other answer. The two protocol classes
here, one per uvicorn parser (h11 and httptools), close those gaps the same way:

- a request head (request line and headers) longer than `max_header_bytes` is answered 431
  while it is still arriving (at most one socket read past the budget is ever buffered);
- a connection idle for `keep_alive_s` (before its first request or between requests) is closed;
- a request not fully received `request_timeout_s` after its first byte is answered 408 if its
  head is incomplete, or the connection is closed if its body stalls (the app sees a disconnect);
- malformed HTTP is a JSON 400 (`{"error": "bad_request", "detail": ...}`).

`run_app` runs an app under uvicorn with these classes and the limits of the settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from smallboat.config import Settings
from smallboat.web.errors import ERROR_CODES
from smallboat.web.workers import ReusePortMultiprocess, reuse_port_sockets

log = logging.getLogger(__name__)

Parser = Literal["auto", "httptools", "h11"]
LIMITS_ATTR = "smallboat_http_limits"
"""The attribute of uvicorn's Config that carries the limits to the protocol (it survives the
pickling of the Config into worker processes)."""


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024
    keep_alive_s: int = 5
    request_timeout_s: float = 30.0
    parser: Parser = "auto"

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            keep_alive_s=settings.http_keep_alive_seconds,
            request_timeout_s=settings.http_request_timeout_seconds,
            parser=settings.http_parser,
        )


def error_bytes(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 answer in the JSON error shape that closes the connection."""
    body = json.dumps({"error": ERROR_CODES.get(status, "error"), "detail": detail}).encode()
    reason = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _head_too_large(limits: HttpLimits) -> str:
    return (
        f"the request's head (request line and headers) is over {limits.max_header_bytes:,} "
        "bytes (SMALLBOAT_HTTP_MAX_HEADER_BYTES)"
    )


def _timed_out(limits: HttpLimits) -> str:
    return (
        f"the request did not arrive within {limits.request_timeout_s:g} s "
        "(SMALLBOAT_HTTP_REQUEST_TIMEOUT_SECONDS)"
    )


def _limits_of(config: uvicorn.Config) -> HttpLimits:
    limits = getattr(config, LIMITS_ATTR, None)
    return limits if isinstance(limits, HttpLimits) else HttpLimits()


class _RecordingConnection(h11.Connection):
    """h11's connection, remembering the protocol error it raised (uvicorn drops its status
    hint: 431 for a head over the budget)."""

    def __init__(self, max_head: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
        self.max_head = max_head
        self.refused: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                # h11 bounds a head that is still arriving; one that came in a single read
                # is measured here.
                size = len(event.method) + len(event.target) + 12
                size += sum(len(name) + len(value) + 4 for name, value in event.headers)
                if size > self.max_head:
                    raise h11.RemoteProtocolError("head too large", error_status_hint=431)
            return event
        except h11.RemoteProtocolError as exc:
            self.refused = exc
            raise


class _Deadlines:
    """The timers both protocols add to uvicorn's: the idle timer from the connection's start
    (uvicorn arms it after a first answer only, so a connection that never sends a request would
    stay open) and one deadline from a request's first byte to its last."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    limits: HttpLimits
    request_timer: asyncio.TimerHandle | None
    timeout_keep_alive: int
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def _awaiting_head(self) -> bool:
        """No byte of the current request's head has been parsed to its end yet."""
        raise NotImplementedError

    def _arm_idle_timer(self, handler: Callable[[], None]) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, handler)

    def _start_request_timer(self) -> None:
        self.request_timer = self.loop.call_later(
            self.limits.request_timeout_s, self._request_timed_out
        )

    def _stop_request_timer(self) -> None:
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None

    def _request_timed_out(self) -> None:
        self.request_timer = None
        if self.transport.is_closing():
            return
        if self._awaiting_head():
            self.transport.write(error_bytes(408, _timed_out(self.limits)))
        self.transport.close()


class LimitedH11Protocol(_Deadlines, H11Protocol):
    """uvicorn's h11 protocol with the limits above (h11 bounds the head itself)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = _limits_of(config)
        self.conn: _RecordingConnection = _RecordingConnection(self.limits.max_header_bytes)
        self.request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_idle_timer(self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self.request_timer is None and self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._start_request_timer()
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY) or self.transport.is_closing():
            self._stop_request_timer()

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def send_400_response(self, msg: str) -> None:
        refused = self.conn.refused
        if refused is not None and refused.error_status_hint == 431:
            answer = error_bytes(431, _head_too_large(self.limits))
        else:
            reason = f": {str(refused)[:120]}" if refused is not None and str(refused) else ""
            answer = error_bytes(400, f"the request is not valid HTTP/1.1{reason}")
        self._stop_request_timer()
        self.transport.write(answer)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        super().connection_lost(exc)


class HeldHeadTransport:
    """A transport that holds an answer's head until the first write of its body, and writes
    both at once: uvicorn writes them apart, two TCP segments that wake the client twice (at one
    client the first write was the costliest line of a prediction's profile). Nothing else is
    held: a 100 Continue goes out at once, and a held head goes out before any other write, on
    close, and when the answer is complete (a HEAD, 204 or 304 answer has no body write)."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif (
            data.startswith(b"HTTP/1.1 ")
            and data.endswith(b"\r\n\r\n")
            and not data.startswith(b"HTTP/1.1 100 ")
        ):
            self._held = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        # Asked at least twice a request: said here, not found through `__getattr__`.
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(_Deadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above: the head is counted here, since
    neither llhttp nor uvicorn bound it; an answer's head and body go out in one write
    (`HeldHeadTransport`)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = _limits_of(config)
        self.reading_head = True  # between requests, or a head has begun and not ended
        self.head_bytes = 0
        self.refusal: tuple[int, str] | None = None
        self.request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        # uvicorn's flow control keeps the socket's own transport; answers go through this one
        self.transport = HeldHeadTransport(self.transport)  # type: ignore[assignment]
        self._arm_idle_timer(self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()

    def data_received(self, data: bytes) -> None:
        if self.request_timer is None:
            self._start_request_timer()
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            self._stop_request_timer()
        elif self.reading_head and self.head_bytes > self.limits.max_header_bytes:
            self._refuse(431, _head_too_large(self.limits))

    def on_headers_complete(self) -> None:
        # The exact size of what arrived in one read with the end of the head.
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:
            self.refusal = (431, _head_too_large(self.limits))
            raise ValueError("head over the budget")  # stops the parser: see send_400
        self.reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
        self._stop_request_timer()

    def _awaiting_head(self) -> bool:
        return self.reading_head

    def _refuse(self, status: int, detail: str) -> None:
        self._stop_request_timer()
        self.transport.write(error_bytes(status, detail))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        refusal, self.refusal = self.refusal, None
        self._refuse(*(refusal or (400, "the request is not valid HTTP/1.1")))

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        super().connection_lost(exc)


def protocol_class(parser: Parser) -> type[asyncio.Protocol]:
    """The limited protocol for `parser` ("auto": httptools, uvicorn's own choice)."""
    return LimitedH11Protocol if parser == "h11" else LimitedHttpToolsProtocol


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's Config for `app` (an app, or an import string with `workers`) with the
    connection limits of `settings`; `options` are uvicorn's (host, port, log_level...)."""
    limits = HttpLimits.of(settings)
    config = uvicorn.Config(
        app,
        http=protocol_class(limits.parser),
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **options,
    )
    setattr(config, LIMITS_ATTR, limits)
    return config


def run_app(app: Any, settings: Settings, *, reuse_port: bool = False, **options: Any) -> None:
    """`uvicorn.run` with the connection limits of `settings` (see `uvicorn_config`). With
    several workers and `reuse_port`, each worker listens on its own socket of a SO_REUSEPORT
    group (`web.workers`) instead of all sharing one."""
    config = uvicorn_config(app, settings, **options)
    server = uvicorn.Server(config)
    if config.workers > 1 and reuse_port:
        sockets = reuse_port_sockets(config.host, config.port, config.workers)
        log.info("%d workers on %s:%d, one socket each", config.workers, config.host, config.port)
        ReusePortMultiprocess(config, sockets).run()
        return
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE

"""A minimal keep-alive HTTP/1.1 client for the replay tool and the load generators.

Why not httpx: on this machine httpx spends ~1.2 ms of CPU per request, more than the collector
spends answering it (~0.4 ms), so a load generator built on it measures itself. This client sends
a request with one write and reads the answer with two buffered reads (~35 us of CPU). It speaks
plain HTTP/1.1 to one host: Content-Length and chunked bodies, reconnecting when the server
closes an idle connection. TLS and redirects are out of scope (it talks to our own servers).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from smallboat.errors import SmallboatError

_MAX_HEAD = 64 * 1024


class WireError(ConnectionError):
    """The connection failed or the server's answer was not HTTP/1.1 we understand."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: host, port and a base path prefix, from a base URL."""

    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SmallboatError(
                f"URL {url!r} must be http://host[:port]: this client speaks plain HTTP/1.1"
            )
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection; `request` reconnects once if the server closed it."""

    def __init__(self, endpoint: Endpoint, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request and read its answer; WireError on a broken connection."""
        head = (
            f"{method} {self.endpoint.base_path}{path} HTTP/1.1\r\nHost: {self.endpoint.host}\r\n"
        )
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        retry = self._writer is not None  # a reused connection the server may have closed
        while True:
            try:
                # `asyncio.timeout`, not `wait_for`: no task of its own per request (a third of
                # a load generator's CPU per request went to making and running it).
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(data)
            except TimeoutError:  # before OSError, of which it is a subclass: no retry
                self.close()
                raise WireError(f"no answer within {self.timeout:.0f} s") from None
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                WireError,
            ) as exc:
                self.close()
                if not retry:
                    raise WireError(f"{type(exc).__name__}: {exc}") from None
                retry = False  # one more try, on a new connection

    async def _exchange(self, data: bytes) -> Answer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.endpoint.host, self.endpoint.port, limit=_MAX_HEAD
            )
        assert self._reader is not None
        self._writer.write(data)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"not an HTTP/1.1 answer: {status_line[:80]!r}")
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            body = await self._reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.close()
        return Answer(int(parts[1]), body)

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        chunks: list[bytes] = []
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while await self._reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

"""The load generators' HTTP/1.1 client (`web.wire`) against a real socket server on 127.0.0.1:
an answer is read whole, and a server that stops answering is a WireError after the timeout,
not retried (TimeoutError is an OSError, which the client retries once on a reused connection)."""

from __future__ import annotations

import asyncio
import time

import pytest

from smallboat.web.wire import Connection, Endpoint, WireError

OK = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello"


async def _serve(answers: int) -> tuple[asyncio.Server, Endpoint, list[int]]:
    """A server that answers the first `answers` requests of each connection with OK, then
    reads on without answering; and the count of requests it read."""
    heads: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in range(1_000):
            await reader.readuntil(b"\r\n\r\n")
            heads.append(i)
            if i < answers:
                writer.write(OK)
                await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Endpoint("127.0.0.1", port, ""), heads


def test_an_answer_is_read_whole() -> None:
    async def main() -> tuple[int, bytes]:
        server, endpoint, _ = await _serve(answers=1)
        async with server:
            answer = await Connection(endpoint).request("POST", "/x", body=b"{}")
            return answer.status, answer.body

    assert asyncio.run(main()) == (201, b"hello")


@pytest.mark.parametrize("answered", [0, 1])
def test_a_server_that_stops_answering_is_a_wire_error_after_one_timeout(answered: int) -> None:
    """On a fresh connection (`answered` 0) and on a reused one (1): one request sent, one
    timeout waited, then the error."""

    async def main() -> tuple[float, list[int]]:
        server, endpoint, heads = await _serve(answers=answered)
        async with server:
            connection = Connection(endpoint, timeout=0.3)
            for _ in range(answered):
                await connection.request("GET", "/x")
            started = time.perf_counter()
            with pytest.raises(WireError, match="no answer within 0 s"):
                await connection.request("GET", "/x")
            waited = time.perf_counter() - started
            server.close()
        return waited, heads

    waited, heads = asyncio.run(main())
    assert 0.3 <= waited < 0.55, waited
    assert len(heads) == answered + 1, heads

"""Connection limits of both servers, over raw sockets against real servers on 127.0.0.1: a head
over the budget is a 431, an idle or half-sent connection is closed after its timeout (a half
head answered 408), malformed HTTP is a JSON 400 -- with each of uvicorn's parsers (httptools,
its default, and h11)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from smallboat.collect.server import CollectorProcess
from smallboat.serve.server import ServeProcess
from smallboat.web.process import ServerProcess
from tests.trained_service import Trained

pytestmark = pytest.mark.slow

TIMEOUT_S = 1  # both timeouts, short so that the test waits little
LIMITS = {
    "SMALLBOAT_HTTP_KEEP_ALIVE_SECONDS": str(TIMEOUT_S),
    "SMALLBOAT_HTTP_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT_S),
    "SMALLBOAT_HTTP_MAX_HEADER_BYTES": str(16 * 1024),
}


@pytest.fixture(scope="module", params=["collector-httptools", "collector-h11", "service"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real server with short timeouts: the collector with each parser, and the prediction
    service (its default parser) on the trained champion."""
    folder = tmp_path_factory.mktemp("limits")
    process: ServerProcess
    if request.param == "service":
        trained: Trained = request.getfixturevalue("trained")
        env = {**LIMITS, "SMALLBOAT_PREDICTION_LOG": "false"}
        process = ServeProcess(trained.settings.home_dir, env=env, log_path=folder / "serve.log")
    else:
        parser = request.param.removeprefix("collector-")
        env = {**LIMITS, "SMALLBOAT_HTTP_PARSER": parser, "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0"}
        process = CollectorProcess(folder / "home", env=env, log_path=folder / "collector.log")
    with process:
        yield process


def exchange(server: ServerProcess, data: bytes, *, wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send `data`, then read until the server closes; (what it answered, seconds it took)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as s:
        started = time.monotonic()
        # It may answer and close before taking everything: then read the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with our unread bytes in its buffer, after answering
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for {wait_s} s: {answer[:200]!r}")
        return answer, time.monotonic() - started


def json_error(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    payload: dict[str, str] = json.loads(body)
    return status, payload


def test_a_head_over_the_budget_is_a_431_and_one_under_it_is_served(server: ServerProcess) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (4 << 20) + b"\r\n\r\n"
    answer, _ = exchange(server, big)
    status, payload = json_error(answer)
    assert status == 431
    assert payload == {
        "error": "request_header_fields_too_large",
        "detail": "the request's head (request line and headers) is over 16,384 bytes "
        "(SMALLBOAT_HTTP_MAX_HEADER_BYTES)",
    }
    # Many headers, each small, over the budget together; and a head that fits.
    many = {f"x-h{i}": "v" * 100 for i in range(200)}
    assert httpx.get(f"{server.url}/healthz", headers=many).status_code == 431
    fits = {"x-pad": "a" * 12_000}
    assert httpx.get(f"{server.url}/healthz", headers=fits).json() == {"status": "ok"}


def test_an_idle_connection_is_closed_after_the_keep_alive(server: ServerProcess) -> None:
    answer, took = exchange(server, b"")
    assert answer == b""
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 2


def test_a_half_sent_head_is_answered_408_after_the_timeout(server: ServerProcess) -> None:
    answer, took = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
    status, payload = json_error(answer)
    assert (status, payload["error"]) == (408, "request_timeout")
    assert payload["detail"] == (
        f"the request did not arrive within {TIMEOUT_S} s (SMALLBOAT_HTTP_REQUEST_TIMEOUT_SECONDS)"
    )
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 2


def test_a_stalled_body_is_disconnected_after_the_timeout(server: ServerProcess) -> None:
    # A route of the server that reads its body (one that answers before reading does not stall).
    path = b"/collect" if isinstance(server, CollectorProcess) else b"/v1/predict"
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer, took = exchange(server, head + b'Content-Length: 1000\r\n\r\n{"batch": [')
    assert answer == b""
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 2
    # ... and the server goes on serving.
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\x01\r\n\r\n", b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n"],
    ids=["request-line", "header"],
)
def test_malformed_http_is_a_json_400(server: ServerProcess, request_bytes: bytes) -> None:
    answer, _ = exchange(server, request_bytes)
    status, payload = json_error(answer)
    assert status == 400
    assert payload["error"] == "bad_request"
    assert payload["detail"].startswith("the request is not valid HTTP/1.1")

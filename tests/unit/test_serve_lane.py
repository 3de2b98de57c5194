"""The ASGI fast lane of `POST /v1/predict` (`serve.lane`), in-process on a small bundle: it
answers a plain body itself, with the bytes the declared route gives; it hands every other
request to the route with the body it read (gzip, invalid, long, streamed, another content type),
so errors and their field locations stay the route's; its answers are counted under the route."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from smallboat.config import Settings
from smallboat.serve.app import create_app
from smallboat.serve.routes import predict
from tests.unit.test_serve_api import session, tiny_bundle

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture
def client(bundle: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "home", serve_max_body_bytes=400_000)
    with TestClient(create_app(settings, bundle=bundle)) as c:
        yield c


def events(seed: int, n: int = 5) -> list[dict[str, Any]]:
    return session(np.random.default_rng(seed), n)


def declared_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the declared route fail: an answer that still comes back 200 came from the lane."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the declared route was called")

    monkeypatch.setattr(predict, "answer", broken)


def test_the_lane_answers_plain_bodies_as_the_declared_route_does(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[dict[str, Any]] = [
        {"events": events(1), "session_id": "s-1"},
        {"events": events(2), "k": 3, "exclude_seen": True},
        {"events": []},
        {"sessions": [{"events": events(3), "session_id": "a"}, {"events": events(4)}], "k": 2},
    ]
    # k as 10.0 (or 3.0...): valid for the models, left by the lane to the declared route
    declared = [
        client.post(
            "/v1/predict", content=orjson.dumps(b | {"k": float(b.get("k", 10))}), headers=JSON
        )
        for b in bodies
    ]
    declared_only(monkeypatch)
    for body, expected in zip(bodies, declared, strict=True):
        lane = client.post("/v1/predict", content=orjson.dumps(body), headers=JSON)
        assert lane.status_code == expected.status_code == 200, lane.text
        assert lane.headers["content-type"] == "application/json"
        assert lane.content == expected.content
    with pytest.raises(RuntimeError, match="declared route"):  # the patch is in force
        client.post("/v1/predict", content=orjson.dumps(bodies[0] | {"k": 10.0}), headers=JSON)


def test_a_streamed_body_is_read_whole(client: TestClient) -> None:
    raw = orjson.dumps({"events": events(5, 12)})
    whole = client.post("/v1/predict", content=raw, headers=JSON)
    chunks = (raw[i : i + 100] for i in range(0, len(raw), 100))
    streamed = client.post("/v1/predict", content=chunks, headers=JSON)
    assert streamed.status_code == whole.status_code == 200
    assert streamed.content == whole.content


def test_the_route_answers_what_the_lane_hands_over(client: TestClient) -> None:
    body = {"events": events(6)}
    plain = client.post("/v1/predict", json=body).json()
    zipped = client.post(
        "/v1/predict",
        content=gzip.compress(orjson.dumps(body)),
        headers=JSON | {"content-encoding": "gzip"},
    )
    assert zipped.status_code == 200 and zipped.json() == plain
    bad = events(7, 2)
    bad[1]["server_timestamp_epoch_ms"] = -5
    r = client.post("/v1/predict", json={"events": bad})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(
        "events[1].server_timestamp_epoch_ms -5: Input should be greater than or equal to 0"
    )
    r = client.post("/v1/predict", content=b'{"events": [', headers=JSON)
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = client.post(
        "/v1/predict", content=orjson.dumps(body), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["detail"]


def test_long_bodies_go_to_the_route_bounded_by_the_limit(client: TestClient) -> None:
    one = {"events": events(8, 20), "session_id": "x"}
    single = client.post("/v1/predict", json=one).json()
    batch = {"sessions": [one] * 40}  # past the lane's 64 KiB, under the 400 KB limit
    assert predict.OFF_LOOP_BODY_BYTES < len(orjson.dumps(batch)) < 400_000
    r = client.post("/v1/predict", json=batch)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [single] * 40
    too_long = {"sessions": [one] * 300}
    assert len(orjson.dumps(too_long)) > 400_000
    r = client.post("/v1/predict", json=too_long)
    assert r.status_code == 413
    assert "SMALLBOAT_SERVE_MAX_BODY_BYTES" in r.json()["detail"]


def test_lane_answers_are_counted_under_the_route(client: TestClient) -> None:
    for seed in range(3):
        assert client.post("/v1/predict", json={"events": events(seed)}).status_code == 200
    metrics = client.get("/metrics").text
    line = 'smallboat_requests_total{method="POST",route="/v1/predict",status="200"} 3.0'
    assert line in metrics, [m for m in metrics.splitlines() if "smallboat_requests_total" in m]
    assert client.get("/healthz").status_code == 200  # the other routes are untouched


def as_floats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events with float times: valid for the models, left by the lane to the route."""
    return [r | {"server_timestamp_epoch_ms": float(r["server_timestamp_epoch_ms"])} for r in rows]


def test_the_lane_appends_as_the_declared_route_does(client: TestClient) -> None:
    rows = events(9, 6)
    for i, row in enumerate(rows):
        lane = client.post("/v1/sessions/lane-1/events", json={"events": [row]})
        route = client.post("/v1/sessions/route-1/events", json={"events": as_floats([row])})
        assert lane.status_code == route.status_code == 200, (lane.text, route.text)
        assert lane.json() == route.json() | {"session_id": "lane-1"}
        assert lane.json()["events_in_session"] == i + 1
    stored = client.get("/v1/sessions/lane-1").json()["events"]
    expected = client.get("/v1/sessions/route-1").json()["events"]
    assert stored == [e | {"session_id_hash": "lane-1"} for e in expected]
    metrics = client.get("/metrics").text
    label = 'method="POST",route="/v1/sessions/{session_id}/events",status="200"} 12.0'
    assert label in metrics


def test_append_errors_stay_the_routes_and_the_stores(bundle: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", session_max_session_bytes=4_000)
    with TestClient(create_app(settings, bundle=bundle)) as client:
        row = events(10, 1)[0]
        r = client.post(
            "/v1/sessions/mine/events", json={"events": [row | {"session_id_hash": "x"}]}
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("events[0].session_id_hash 'x' is not the session")
        r = client.post("/v1/sessions/mine/events", json={"events": []})
        assert r.status_code == 422 and r.json()["detail"].startswith("events")
        big = [row | {"hashed_url": "u" * 3_000}, row | {"hashed_url": "v" * 3_000}]
        r = client.post("/v1/sessions/mine/events", json={"events": big})  # the lane's, ~6 KB
        assert r.status_code == 413, r.text
        assert "SMALLBOAT_SESSION_MAX_SESSION_BYTES" in r.json()["detail"]
        assert client.get("/v1/sessions/mine").status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/predict", {"events": events(5), "session_id": "s-5"}),
        ("/v1/sessions/s-6/events", {"events": events(6, 1)}),
    ],
)
def test_the_lane_logs_each_prediction_once_its_answer_is_sent(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str, body: dict[str, Any]
) -> None:
    app: Any = client.app
    prediction_log = app.state.prediction_log
    order: list[tuple[str, Any]] = []
    record = prediction_log.record

    def recorded(rows: Any) -> None:
        order.append(("logged", [row["session_id_hash"] for row in rows]))
        record(rows)

    monkeypatch.setattr(prediction_log, "record", recorded)
    messages = [{"type": "http.request", "body": orjson.dumps(body), "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        order.append(("sent", message.get("status", message["type"])))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080),
    }  # fmt: skip
    assert client.portal is not None
    client.portal.call(app, scope, receive, send)
    session_id = body["session_id"] if "session_id" in body else path.split("/")[3]
    assert order == [("sent", 200), ("sent", "http.response.body"), ("logged", [session_id])]
    prediction_log.flush()
    assert prediction_log.written >= 1 and prediction_log.dropped == 0

"""The collector's fast lane (`collect.fastlane`): pixel hits answered without FastAPI's routing
must be indistinguishable from the routes' answers: the same status, body, headers, logged rows
and counters; and everything the lane does not take must reach the app unchanged."""

from __future__ import annotations

import warnings
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from smallboat.collect.app import create_app
from smallboat.collect.compaction import compact_events
from smallboat.collect.fastlane import FastLane, query_params
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS

with warnings.catch_warnings():  # starlette's notice about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SHOP = "https://shop.example"

HITS: list[tuple[str, dict[str, str]]] = [
    # UA: a product view, a hit without browsing signal (ignored), a refused hit.
    ("/collect", {"v": "1", "t": "event", "cid": "c1", "pa": "detail", "pr1id": "SKU-1",
                  "dl": "https://shop.example/p/1", "ts_ms": "1700000000000", "z": "1"}),
    ("/collect", {"v": "1", "t": "timing", "cid": "c1", "z": "2"}),
    ("/collect", {"v": "1", "t": "pageview"}),
    ("/collect", {"v": "1", "t": "event", "cid": "c", "pa": "buy", "pr1id": "A"}),
    # GA4 web: a page view, an ignored event, a refused hit.
    ("/g/collect", {"v": "2", "tid": "G-1", "cid": "1.2", "sid": "77", "en": "page_view",
                    "dl": "https://shop.example/p/2"}),
    ("/g/collect", {"v": "2", "tid": "G-1", "cid": "1.2", "sid": "77", "en": "scroll"}),
    ("/g/collect", {"v": "2", "tid": "G-1", "en": "page_view"}),
    # Snowplow's pixel: a page view and a refused event.
    ("/i", {"e": "pv", "p": "web", "tv": "js-3.0.0", "aid": "shop", "duid": "d1",
            "sid": "3f1c3d3e-1111-4222-8333-444455556666", "url": "https://shop.example/p/3",
            "eid": "0b6f2a3c-1111-4222-8333-444455556666"}),
    ("/i", {"e": "pv", "p": "web"}),
]  # fmt: skip


class Counting:
    """Wraps the app behind the lane and counts the requests that reach it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


def _lane(app: FastAPI) -> FastLane:
    stack: Any = app.middleware_stack
    while not isinstance(stack, FastLane):
        stack = stack.app
    return stack


@pytest.fixture
def collect_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"collect_compact_seconds": 0, "collect_max_event_age_days": 36500.0}
    )


def _client(settings: Settings, *, lane: bool) -> TestClient:
    app = create_app(settings)
    if not lane:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FastLane]
    return TestClient(app)


VARYING = ("server_timestamp_epoch_ms",)
"""Landed columns that depend on the moment a hit arrived (no client time given)."""


def _landed(settings: Settings) -> list[dict[str, Any]]:
    """Every row the hits landed, without the columns that differ from run to run."""
    compact_events(settings)
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    rows = [
        r for p in sorted(folder.glob("collect-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    return [{k: v for k, v in r.items() if k not in VARYING} for r in rows]


def _answer(client: TestClient, path: str, params: dict[str, str]) -> tuple[Any, ...]:
    r = client.get(path, params=params)
    headers = {k: v for k, v in r.headers.items() if k != "date"}
    return r.status_code, r.content, headers


@pytest.mark.parametrize(
    ("path", "params"), HITS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(HITS)]
)
def test_the_lane_answers_logs_and_counts_like_the_route(
    collect_settings: Settings, tmp_path: Any, path: str, params: dict[str, str]
) -> None:
    outcomes = []
    for lane in (True, False):
        settings = collect_settings.model_copy(update={"home": tmp_path / f"lane-{lane}"})
        with _client(settings, lane=lane) as client:
            answer = _answer(client, path, params)
            counters = client.app.state.counters.snapshot()  # type: ignore[attr-defined]
            rejects = client.get("/readyz").json()["records"]
        outcomes.append((answer, counters, rejects, _landed(settings)))
    with_lane, without = outcomes
    assert with_lane == without
    assert with_lane[0][0] in (200, 204, 400)


def test_the_lane_takes_good_hits_and_hands_the_rest_to_the_app(collect_settings: Settings) -> None:
    with _client(collect_settings, lane=True) as client:
        client.get("/healthz")  # builds the middleware stack
        lane = _lane(client.app)  # type: ignore[arg-type]
        behind = Counting(lane.app)
        lane.app = behind
        good = {"v": "1", "t": "pageview", "cid": "c", "dl": "https://shop.example/", "z": "1"}
        assert client.get("/collect", params=good).status_code == 200
        assert client.get("/g/collect", params=HITS[4][1]).status_code == 204
        assert client.get("/i", params=HITS[7][1]).status_code == 200
        assert behind.calls == 0
        # A refused hit is answered by the app (a 400 naming the parameter), counted once.
        bad = client.get("/collect", params={"v": "1", "t": "pageview"})
        assert bad.status_code == 400 and "cid" in bad.json()["detail"]
        assert behind.calls == 1
        counters = client.app.state.counters  # type: ignore[attr-defined]
        assert counters.total("refused", "ga") == 1
        # Other methods and paths pass through.
        assert client.head("/collect", params=good).status_code in (200, 405)
        assert client.post("/g/collect", params=HITS[4][1]).status_code == 204
        assert client.get("/healthz").status_code == 200
        assert behind.calls == 4
        assert client.get("/readyz").json()["records"] == 4


def test_a_log_that_cannot_write_is_the_apps_503_and_nothing_is_logged_twice(
    collect_settings: Settings,
) -> None:
    answers = []
    for lane in (True, False):
        with _client(collect_settings, lane=lane) as client:
            client.app.state.store.wal.close()  # type: ignore[attr-defined]
            r = client.get("/collect", params=HITS[0][1])
            answers.append((r.status_code, r.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 503


def test_cors_requests_go_through_the_cors_middleware(collect_settings: Settings) -> None:
    settings = collect_settings.model_copy(update={"collect_cors_origins": SHOP})
    with _client(settings, lane=True) as client:
        hit = HITS[7][1]
        cross = client.get("/i", params=hit, headers={"Origin": SHOP})
        assert cross.status_code == 200
        assert cross.headers["access-control-allow-origin"] == SHOP
        assert cross.headers["access-control-allow-credentials"] == "true"
        same = client.get("/i", params={**hit, "eid": "0b6f2a3c-1111-4222-8333-777777777777"})
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers


QUERY_TEXT = st.text(alphabet="ab=&%+2Fzé; x€C3", max_size=40)


@given(QUERY_TEXT)
@hsettings(max_examples=400, deadline=None)
def test_query_params_are_what_starlette_gives(text: str) -> None:
    raw = text.encode("utf-8")
    assert query_params(raw) == dict(QueryParams(raw.decode("latin-1")))

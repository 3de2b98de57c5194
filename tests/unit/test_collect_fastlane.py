"""The collector's fast lane (`collect.fastlane`): pixel hits answered without FastAPI's routing
must be indistinguishable from the routes' answers: the same status, body, headers, logged rows
and counters; and everything the lane does not take must reach the app unchanged."""

from __future__ import annotations

import base64
import gzip
import json
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
from smallboat.collect.compaction import compact_events, log_dir
from smallboat.collect.fastlane import _UNPARSED, FastLane, _loads, query_params
from smallboat.config import Settings
from smallboat.data.log.segments import list_segments, scan_segment
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


KEY = "wk"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
JSON = {"Content-Type": "application/json"}
SEGMENT = {**BASIC, **JSON}
SP = "/com.snowplowanalytics.snowplow/tp2"
SP_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
PV = {"e": "pv", "duid": "d1", "url": "https://shop.example/", "eid": "e-1", "ttm": "1700000000000"}
TRACK = {
    "type": "track",
    "event": "Product Viewed",
    "anonymousId": "a1",
    "messageId": "m1",
    "properties": {"product_id": "SKU-1", "url": "https://shop.example/p/1"},
    "timestamp": "2023-11-14T22:13:20.000Z",
}
PAGE = {
    "type": "page",
    "userId": 42,
    "messageId": "m2",
    "context": {"page": {"url": "u"}},
    "timestamp": "2023-11-14T22:13:21.000Z",
}
BIG = 123456789012345678901234567
"""An integer past 64 bits: `json` reads it exactly, orjson as a float."""
ROW = {
    "message_id": "j1",
    "client_id": "c1",
    "event_type": "event_product",
    "product_action": "add",
    "product_sku_hash": "S",
    "url": "https://shop.example/",
    "server_timestamp_epoch_ms": 1700000000000,
}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


POSTS: list[tuple[str, dict[str, str], bytes]] = [
    # Segment: a good batch, one with an ignored message, partly and wholly refused batches,
    # single calls, a wrong key, bodies only `json` reads (NaN, a lone surrogate, a BOM, an
    # integer past 64 bits), another media type, a gzip body.
    ("/v1/batch", SEGMENT, _json({"batch": [TRACK, PAGE]})),
    ("/v1/batch", SEGMENT, _json({"batch": [TRACK, {"type": "identify", "userId": "u"}]})),
    ("/v1/batch", SEGMENT, _json({"batch": [TRACK, {"type": "track", "event": "Product Added"}]})),
    ("/v1/batch", SEGMENT, _json({"batch": [{"type": "page"}]})),
    ("/v1/track", SEGMENT, _json(TRACK)),
    ("/v1/page", SEGMENT, _json(PAGE)),
    ("/v1/page", SEGMENT, b"[1]"),
    ("/v1/batch", {**JSON, "Authorization": "Basic d3Jvbmc6"}, _json({"batch": [TRACK]})),
    ("/v1/batch", JSON, _json({"batch": [TRACK]})),
    ("/v1/batch", SEGMENT, b'{"batch": [{"type": "page", "userId": NaN}]}'),
    ("/v1/batch", SEGMENT, b'{"batch": [{"type": "page", "userId": "\\ud800"}]}'),
    ("/v1/batch", SEGMENT, b"\xef\xbb\xbf" + _json({"batch": [PAGE]})),
    ("/v1/batch", SEGMENT, _json({"batch": [{**PAGE, "userId": 123456789012345678901234567890}]})),
    ("/v1/batch", SEGMENT, _json({"batch": [{**PAGE, "userId": 1e300}]})),
    ("/v1/batch", {**BASIC, "Content-Type": "text/plain"}, _json({"batch": [PAGE]})),
    ("/v1/batch", {**SEGMENT, "Content-Encoding": "gzip"}, gzip.compress(_json({"batch": [PAGE]}))),
    ("/v1/batch", SEGMENT, b"{not json"),
    # Snowplow: a page view, an ignored event, a wrong schema, a refused event.
    (SP, JSON, _json({"schema": SP_SCHEMA, "data": [PV]})),
    (SP, JSON, _json({"schema": SP_SCHEMA, "data": [{**PV, "e": "pp"}]})),
    (SP, JSON, _json({"schema": "iglu:x", "data": [PV]})),
    (SP, JSON, _json({"schema": SP_SCHEMA, "data": [PV, {"e": "pv"}]})),
    # Canonical JSON, one and a list, a refused one; a UA hit in a POST body and in a batch.
    ("/collect", JSON, _json(ROW)),
    ("/collect", JSON, _json([ROW, {**ROW, "message_id": "j2", "event_type": "pageview",
                                   "product_action": None, "product_sku_hash": None}])),
    ("/collect", JSON, _json({**ROW, "product_sku_hash": None})),
    ("/collect", {"Content-Type": "text/plain"},
     b"v=1&t=pageview&cid=c2&z=9&dl=https%3A%2F%2Fx&ts_ms=1700000000000"),
    ("/collect", {"Content-Type": "text/plain"}, b"v=1&t=pageview"),
    ("/batch", {}, b"v=1&t=pageview&cid=c3&z=1&ts_ms=1700000000000\nv=1&t=timing&cid=c3&z=2\n"),
    ("/batch", {}, b"v=1&t=pageview&cid=c3&z=1\nv=1&t=pageview&z=2\n"),
    # GA4: two events in a POST body, a refused line.
    ("/g/collect?v=2&tid=G-1&cid=1.2&sid=5&_p=p&_s=1", {},
     b"en=page_view&dl=https%3A%2F%2Fx\nen=add_to_cart&pr1=idSKU-9~nmShoe\n"),
    ("/g/collect?v=2&tid=G-1&cid=1.2&sid=5&_p=p&_s=2", {}, b"en=add_to_cart&pr1=nm\n"),
    # Snowplow bodies the lane reads with orjson alone: an integer past 64 bits in a field the
    # mapping does not read, in one the model reads as text (`json` keeps it exact, orjson
    # would not), and a number the model reads with no long digit run.
    (SP, JSON, _json({"schema": SP_SCHEMA, "data": [{**PV, "p": BIG}]})),
    (SP, JSON, _json({"schema": SP_SCHEMA, "data": [PV, {**PV, "eid": BIG}]})),
    (SP, JSON, _json({"schema": SP_SCHEMA, "data": [{**PV, "ttm": 1700000000000}]})),
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
        update={
            "collect_compact_seconds": 0,
            "collect_max_event_age_days": 36500.0,
            "write_keys": KEY,
        }
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


def _rejects(client: TestClient) -> list[dict[str, Any]]:
    rejects = client.app.state.rejects.read()  # type: ignore[attr-defined]
    return [{k: v for k, v in vars(r).items() if k != "at_ms"} for r in rejects]


@pytest.mark.parametrize(
    ("path", "headers", "body"), POSTS, ids=[f"{p[:12]}-{i}" for i, (p, _, _) in enumerate(POSTS)]
)
def test_the_lane_answers_posts_like_the_routes(
    collect_settings: Settings, tmp_path: Any, path: str, headers: dict[str, str], body: bytes
) -> None:
    outcomes = []
    for lane in (True, False):
        settings = collect_settings.model_copy(update={"home": tmp_path / f"lane-{lane}"})
        with _client(settings, lane=lane) as client:
            r = client.post(path, content=body, headers=headers)
            answer = r.status_code, r.content, {k: v for k, v in r.headers.items() if k != "date"}
            counters = client.app.state.counters.snapshot()  # type: ignore[attr-defined]
            records = client.get("/readyz").json()["records"]
            rejects = _rejects(client)
        outcomes.append((answer, counters, records, rejects, _landed(settings)))
    with_lane, without = outcomes
    assert with_lane == without
    assert with_lane[0][0] in (200, 204, 400, 401, 415)


def test_the_lane_takes_good_posts(collect_settings: Settings) -> None:
    """The good requests of POSTS are answered by the lane itself."""
    with _client(collect_settings, lane=True) as client:
        client.get("/healthz")
        lane = _lane(client.app)  # type: ignore[arg-type]
        behind = Counting(lane.app)
        lane.app = behind
        for path, headers, body in [POSTS[0], POSTS[1], POSTS[4], POSTS[5], POSTS[12]]:
            assert client.post(path, content=body, headers=headers).status_code == 200
        for path, headers, body in [POSTS[17], POSTS[18], POSTS[21], POSTS[22], POSTS[24]]:
            assert client.post(path, content=body, headers=headers).status_code == 200
        for path, headers, body in [POSTS[26], POSTS[28]]:
            assert client.post(path, content=body, headers=headers).status_code in (200, 204)
        assert behind.calls == 0
        # What the lane does not take: a partly refused batch, a wrong key, NaN, gzip.
        for path, headers, body in [POSTS[2], POSTS[7], POSTS[9], POSTS[15]]:
            client.post(path, content=body, headers=headers)
        assert behind.calls == 4


def test_a_snowplow_number_orjson_reads_inexactly_is_read_by_the_app(
    collect_settings: Settings,
) -> None:
    """The lane reads Snowplow bodies without looking for long digit runs: one in a field the
    mapping never reads stays in the lane, one in a field read by the model (a number, taken as
    its text) goes to the app, which reads the body exactly (`sp:<all the digits>`)."""
    with _client(collect_settings, lane=True) as client:
        client.get("/healthz")
        lane = _lane(client.app)  # type: ignore[arg-type]
        behind = Counting(lane.app)
        lane.app = behind
        unread, read, short = POSTS[-3:]
        for path, headers, body in (unread, short):
            assert client.post(path, content=body, headers=headers).status_code == 200
        assert behind.calls == 0
        assert client.post(read[0], content=read[2], headers=read[1]).json()["events"] == 2
        assert behind.calls == 1
    folder = log_dir(collect_settings)
    ids = {r["message_id"] for seg in list_segments(folder) for r in scan_segment(seg.path).records}
    assert f"sp:{BIG}" in ids


def test_a_body_over_the_limit_reaches_the_app_whole(collect_settings: Settings) -> None:
    settings = collect_settings.model_copy(update={"collect_max_body_bytes": 2_000})
    big = _json({"batch": [{**PAGE, "messageId": f"m{i}"} for i in range(40)]})
    with _client(settings, lane=True) as client:
        # Declared too long: the app's 413, its body unread by the lane.
        r = client.post("/v1/batch", content=big, headers=SEGMENT)
        assert r.status_code == 413 and "SMALLBOAT_COLLECT_MAX_BODY_BYTES" in r.json()["detail"]
        # Streamed without a length: the lane stops reading past the limit, the app finishes.
        chunks = (big[i : i + 500] for i in range(0, len(big), 500))
        r = client.post("/v1/batch", content=chunks, headers=SEGMENT)
        assert r.status_code == 413
        # A streamed body within the limit: the lane reads every chunk.
        small = _json({"batch": [PAGE]})
        r = client.post("/v1/batch", content=iter([small[:10], small[10:]]), headers=SEGMENT)
        assert r.status_code == 200 and r.json()["events"] == 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(JSON_VALUES)
@hsettings(max_examples=400, deadline=None)
def test_orjson_reads_what_json_reads(value: Any) -> None:
    """Whatever the lane's parser returns is what `json.loads` (the app's parser) returns; what
    it does not parse goes to the app."""
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        parsed = _loads(raw)
        if parsed is not _UNPARSED:
            assert json.dumps(parsed) == json.dumps(json.loads(raw))


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
        # An empty gtag.js POST (the query is the event) is the lane's; other methods and
        # paths pass through.
        assert client.post("/g/collect", params=HITS[4][1]).status_code == 204
        assert behind.calls == 1
        assert client.head("/collect", params=good).status_code in (200, 405)
        assert client.get("/healthz").status_code == 200
        assert behind.calls == 3
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

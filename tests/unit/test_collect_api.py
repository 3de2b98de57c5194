"""The collection API in-process (FastAPI's TestClient, a real log on disk): answers, errors,
deduplication and sessions that survive a restart."""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

from smallboat.collect.app import create_app
from smallboat.collect.compaction import compact_events
from smallboat.collect.events import hash_url, now_ms
from smallboat.collect.routes.pixel import PIXEL_GIF
from smallboat.collect.sessions import session_id_for
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS, SESSION_GAP_MS

with warnings.catch_warnings():  # starlette's notice about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LIMIT = 4096


@pytest.fixture
def collect_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "write_keys": "k1, k2",
            "collect_max_body_bytes": LIMIT,
            "collect_compact_seconds": 0,
        }
    )


@pytest.fixture
def client(collect_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(collect_settings)) as c:
        yield c


def records_logged(client: TestClient) -> int:
    count: int = client.get("/readyz").json()["records"]
    return count


def landed_rows(settings: Settings) -> list[dict[str, Any]]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    return [
        r for p in sorted(folder.glob("collect-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def test_a_pixel_hit_answers_an_uncacheable_gif(client: TestClient) -> None:
    answer = client.get("/collect", params={"v": "1", "t": "pageview", "cid": "c", "z": "1"})
    assert answer.status_code == 200
    assert answer.content == PIXEL_GIF
    assert PIXEL_GIF.startswith(b"GIF89a\x01\x00\x01\x00")
    assert answer.headers["content-type"] == "image/gif"
    assert answer.headers["cache-control"] == "no-cache, no-store, must-revalidate, max-age=0"
    assert answer.headers["pragma"] == "no-cache"
    assert answer.headers["expires"] == "0"
    assert records_logged(client) == 1


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        (
            {"v": "1", "t": "event", "cid": "c", "pa": "buy", "pr1id": "A"},
            "pa 'buy' is not one of 'detail', 'click', 'add', 'remove', 'checkout', "
            "'checkout_option', 'purchase', 'refund' or 'promo_click'",
        ),
        ({"v": "1", "t": "pageview"}, "cid is required"),
        (
            {"v": "1", "t": "pageview", "cid": "c", "qt": "soon"},
            "qt 'soon': Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            {"v": "1", "t": "event", "cid": "c", "pa": "add"},
            "pr1id is required with pa=add: the product's SKU",
        ),
    ],
)
def test_a_bad_hit_is_a_400_naming_the_parameter_and_nothing_is_logged(
    client: TestClient, params: dict[str, str], detail: str
) -> None:
    answer = client.get("/collect", params=params)
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "detail": detail}
    assert records_logged(client) == 0


def test_json_events_one_or_a_list(client: TestClient) -> None:
    one = {"session_id_hash": "s", "event_type": "pageview", "message_id": "m1"}
    assert client.post("/collect", json=one).json() == {"success": True, "events": 1, "ignored": 0}
    many = [{**one, "message_id": f"m{i}"} for i in range(2, 5)]
    assert client.post("/collect", json=many).json()["events"] == 3
    typo = [{**one, "product_sku": "A"}]
    answer = client.post("/collect", json=typo)
    assert answer.status_code == 400
    assert answer.json()["detail"] == "[0].product_sku is not a field of this body"
    untyped = client.post("/collect", content=json.dumps(one).encode())  # no Content-Type
    assert untyped.status_code == 400
    assert (
        untyped.json()["detail"] == "body is not JSON: send it with Content-Type: application/json"
    )
    assert records_logged(client) == 4


def test_more_than_the_event_limit_is_refused(
    collect_settings: Settings,
) -> None:
    roomy = collect_settings.model_copy(update={"collect_max_body_bytes": 1 << 20})
    with TestClient(create_app(roomy)) as client:
        too_many = [{"session_id_hash": "s", "event_type": "pageview"}] * 501
        answer = client.post("/collect", json=too_many)
        assert answer.status_code == 400
        assert "List should have at most 500 items" in answer.json()["detail"]


def segment_batch(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"batch": list(messages), "sentAt": "2026-01-01T00:00:00Z"}


PAGE = {"type": "page", "anonymousId": "a1", "messageId": "p1", "properties": {"url": "/x"}}


@pytest.mark.parametrize(
    ("auth", "detail"),
    [
        (None, "send the write key as the HTTP basic auth user (Authorization: Basic)"),
        (("nope", ""), "the write key is not one of this collector's keys"),
    ],
)
def test_segment_needs_a_known_write_key(
    client: TestClient, auth: tuple[str, str] | None, detail: str
) -> None:
    answer = client.post("/v1/batch", json=segment_batch(PAGE), auth=auth)
    assert answer.status_code == 401
    # `code` and `message`: what Segment's and RudderStack's SDKs read from an error body
    assert answer.json() == {
        "error": "unauthorized",
        "detail": detail,
        "code": "unauthorized",
        "message": detail,
    }
    assert answer.headers["www-authenticate"] == 'Basic realm="smallboat"'
    assert records_logged(client) == 0


def test_segment_without_configured_keys_refuses_everyone(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"write_keys": ""}))) as client:
        answer = client.post("/v1/batch", json=segment_batch(PAGE), auth=("k1", ""))
        assert answer.status_code == 401
        assert "set SMALLBOAT_WRITE_KEYS" in answer.json()["detail"]


def test_segment_batches_plain_or_gzipped(client: TestClient) -> None:
    body = segment_batch(PAGE, {"type": "identify", "userId": "u", "traits": {"plan": "x"}})
    answer = client.post("/v1/batch", json=body, auth=("k2", ""))
    accepted = {"success": True, "events": 1, "ignored": 1, "refused": 0, "refusals": []}
    assert answer.json() == accepted
    zipped = gzip.compress(json.dumps(body).encode())
    answer = client.post(
        "/v1/batch",
        content=zipped,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=("k1", ""),
    )
    assert answer.json() == accepted
    track = {"event": "Product Added", "userId": "u", "properties": {"product_id": "P"}}
    assert client.post("/v1/track", json=track, auth=("k1", "")).json()["events"] == 1
    page = {"userId": "u", "properties": {"url": "https://x.test"}}
    assert client.post("/v1/page", json=page, auth=("k1", "")).json()["events"] == 1
    assert records_logged(client) == 4


HUGE = "1" + "0" * 400


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_event_time_past_any_calendar_is_a_400_naming_the_field(
    client: TestClient, sign: str
) -> None:
    """A 400-digit time used to overflow a float in the error message: a 500, a traceback."""
    problem = f"{sign}{HUGE[: 20 - len(sign)]}... is not an epoch time in milliseconds (0 to "
    problem += "253,402,300,799,999)"
    pixel = client.get(
        "/collect", params={"v": "1", "t": "pageview", "cid": "c", "ts_ms": sign + HUGE}
    )
    assert pixel.status_code == 400
    assert pixel.json() == {"error": "bad_request", "detail": f"ts_ms {problem}"}
    body = '{"session_id_hash": "s", "event_type": "pageview", "server_timestamp_epoch_ms": '
    body += f"{sign}{HUGE}}}"
    posted = client.post("/collect", content=body, headers={"Content-Type": "application/json"})
    assert posted.status_code == 400
    assert posted.json() == {
        "error": "bad_request",
        "detail": f"server_timestamp_epoch_ms {problem}",
    }
    assert records_logged(client) == 0


def test_every_member_of_a_gzip_body_is_read_and_trailing_garbage_refused(
    client: TestClient,
) -> None:
    """`gzip(a) + gzip(b)` is one valid gzip stream: both batches are logged (only the first
    used to be, with a 200); bytes after the last member are a 400, nothing logged; the
    members together stay bounded by the body limit."""
    first = segment_batch({**PAGE, "messageId": "m1"})
    second = segment_batch({**PAGE, "messageId": "m2"}, {**PAGE, "messageId": "m3"})
    # One JSON document across two members: the split lands inside the batch's text.
    text = json.dumps(segment_batch(*first["batch"], *second["batch"])).encode()
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    two = gzip.compress(text[:40]) + gzip.compress(text[40:])
    answer = client.post("/v1/batch", content=two, headers=headers, auth=("k1", ""))
    assert answer.json()["events"] == 3
    assert records_logged(client) == 3

    garbage = gzip.compress(json.dumps(segment_batch({**PAGE, "messageId": "m4"})).encode())
    for tail in (b"junk", b"\x00" * 8):
        answer = client.post("/v1/batch", content=garbage + tail, headers=headers, auth=("k1", ""))
        assert answer.status_code == 400
        assert answer.json()["detail"] == (
            f"body: {len(tail)} bytes after the end of the gzip stream are not gzip "
            "(trailing garbage)"
        )
    broken = gzip.compress(b"[") + b"\x1f\x8b" + b"\x00" * 20
    answer = client.post("/v1/batch", content=broken, headers=headers, auth=("k1", ""))
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("body: Content-Encoding is gzip but the body is not")
    # Members that each fit but together inflate past the limit.
    half = b" " * (LIMIT // 2 + 1)
    bomb = gzip.compress(half) + gzip.compress(half)
    answer = client.post("/v1/batch", content=bomb, headers=headers, auth=("k1", ""))
    assert answer.status_code == 413
    assert "inflates to more than 4,096 bytes" in answer.json()["detail"]
    assert records_logged(client) == 3


def test_bodies_over_the_limit_are_a_413(client: TestClient) -> None:
    big = segment_batch(*[{**PAGE, "messageId": f"p{i}"} for i in range(60)])
    raw = json.dumps(big).encode()
    assert len(raw) > LIMIT
    json_headers = {"Content-Type": "application/json"}
    declared = client.post("/v1/batch", content=raw, headers=json_headers, auth=("k1", ""))
    assert declared.status_code == 413
    detail = (
        f"the request body is {len(raw):,} bytes; the limit is 4,096 bytes "
        "(SMALLBOAT_COLLECT_MAX_BODY_BYTES)"
    )
    assert declared.json() == {
        "error": "payload_too_large",
        "detail": detail,
        "code": "payload_too_large",
        "message": detail,
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield from (raw[i : i + 1000] for i in range(0, len(raw), 1000))

    streamed = client.post("/v1/batch", content=chunks(), headers=json_headers, auth=("k1", ""))
    assert streamed.status_code == 413
    assert "is more than 4,096 bytes" in streamed.json()["detail"]
    bomb = gzip.compress(raw)
    assert len(bomb) < LIMIT
    inflated = client.post(
        "/v1/batch",
        content=bomb,
        headers={**json_headers, "Content-Encoding": "gzip"},
        auth=("k1", ""),
    )
    assert inflated.status_code == 413
    assert "inflates to more than 4,096 bytes" in inflated.json()["detail"]
    brotli = client.post(
        "/v1/batch",
        content=b"x",
        headers={**json_headers, "Content-Encoding": "br"},
        auth=("k1", ""),
    )
    assert brotli.status_code == 415
    assert records_logged(client) == 0


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ('"context":{"page":{"url":"https://x.test/\\ud800"}}', "context.page.url", "valid string"),
        ('"context":{"session_id":"s\\ud800"}', "context.session_id", "a lone surrogate"),
        ('"userId":"u\\ud800"', "userId", "a lone surrogate"),
        ('"context":{"session_id":"' + "s" * 257 + '"}', "context.session_id", "at most 256"),
        ('"context":{"session_id":1e400}', "context.session_id", "inf: Input should be a valid"),
        ('"properties":{"session_id":1e400}', "properties.session_id", "inf: Input should be a"),
        ('"context":{"session_id":""}', "context.session_id", "at least 1"),
    ],
)
def test_segment_context_fields_are_validated_like_their_properties(
    client: TestClient, fields: str, field: str, problem: str
) -> None:
    body = '{"batch":[{"type":"page","anonymousId":"a1","messageId":"p1",' + fields + "}]}"
    answer = client.post(
        "/v1/batch",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
        auth=("k1", ""),
    )
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith(f"batch[0].{field} ") and problem in detail
    assert records_logged(client) == 0


def test_segment_context_session_and_url_are_used_when_properties_lack_them(
    collect_settings: Settings,
) -> None:
    page = {
        "type": "page",
        "anonymousId": "a1",
        "messageId": "p1",
        "context": {"session_id": 42, "page": {"url": "https://x.test/p", "title": "P"}},
    }
    with TestClient(create_app(collect_settings)) as client:
        answer = client.post("/v1/batch", json=segment_batch(page), auth=("k1", ""))
        assert answer.json()["events"] == 1
    compact_events(collect_settings)
    [row] = landed_rows(collect_settings)
    assert (row["session_id_hash"], row["hashed_url"]) == ("42", hash_url("https://x.test/p"))


def test_lone_surrogates_never_reach_the_log_from_ga_or_json(client: TestClient) -> None:
    # A query string decodes invalid UTF-8 (%ED%A0%80 is "\\ud800" encoded) to U+FFFD ...
    pixel = client.get("/collect?v=1&t=pageview&cid=c%ED%A0%80&z=1&dl=https://x.test/%ED%A0%80")
    assert pixel.status_code == 200
    # ... and the canonical JSON's fields are plain constrained strings, which refuse them.
    body = b'{"client_id":"c\\ud800","event_type":"pageview"}'
    answer = client.post("/collect", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("[0].client_id ")
    assert records_logged(client) == 1


def test_unknown_paths_answer_json_errors(client: TestClient) -> None:
    assert client.get("/v2/batch").json() == {"error": "not_found", "detail": "Not Found"}
    answer = client.delete("/collect")
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"


def test_probes_name_liveness_and_readiness_like_the_prediction_service(
    client: TestClient,
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/health").status_code == 404
    store = client.app.state.store  # type: ignore[attr-defined]
    store.wal.close()  # a log that can no longer write: not ready, still alive
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json() == {
        "error": "unavailable",
        "detail": f"the log at {store.wal.folder} is closed",
    }
    assert client.get("/healthz").status_code == 200


def test_retries_with_the_same_message_id_land_once(collect_settings: Settings) -> None:
    hit = {"v": "1", "t": "event", "cid": "c", "z": "77", "pa": "add", "pr1id": "A"}
    event = {"session_id_hash": "s", "event_type": "pageview", "message_id": "j1"}
    order = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u",
        "messageId": "o1",
        "properties": {"products": [{"product_id": "P1"}, {"product_id": "P2"}]},
    }
    with TestClient(create_app(collect_settings)) as client:
        for _ in range(3):
            assert client.get("/collect", params=hit).status_code == 200
            assert client.post("/collect", json=event).status_code == 200
            batch = segment_batch(order)
            assert client.post("/v1/batch", json=batch, auth=("k1", "")).status_code == 200
        client.get("/collect", params={**hit, "cid": "other"})  # same z, other client: no retry
        assert records_logged(client) == 3 * 4 + 1
    report = compact_events(collect_settings)
    assert (report.records, report.rows_landed, report.duplicates) == (13, 5, 8)
    rows = landed_rows(collect_settings)
    assert sorted((r["product_action"] or "-", r["product_sku_hash"] or "-") for r in rows) == [
        ("-", "-"),
        ("add", "A"),
        ("add", "A"),
        ("purchase", "P1"),
        ("purchase", "P2"),
    ]


def test_sessions_continue_across_a_restart_and_a_compaction(collect_settings: Settings) -> None:
    t0 = now_ms() - 3 * 3_600_000
    times = [t0, t0 + 10 * 60_000, t0 + 10 * 60_000 + SESSION_GAP_MS + 1]
    for i, ts in enumerate(times):
        with TestClient(create_app(collect_settings)) as client:
            params = {"v": "1", "t": "pageview", "cid": "shopper", "ts_ms": str(ts), "z": str(i)}
            assert client.get("/collect", params={**params, "dl": f"/page/{i}"}).status_code == 200
        compact_events(collect_settings)  # the log is gone: state lives in the clients table
    rows = sorted(landed_rows(collect_settings), key=lambda r: r["server_timestamp_epoch_ms"])
    assert [r["server_timestamp_epoch_ms"] for r in rows] == times
    assert [r["session_id_hash"] for r in rows] == [
        session_id_for("shopper", t0),
        session_id_for("shopper", t0),
        session_id_for("shopper", times[2]),
    ]
    assert rows[1]["hashed_url"] == hash_url("/page/1")


def test_the_collector_caps_its_tracked_clients_by_setting(settings: Settings) -> None:
    capped = settings.model_copy(update={"collect_max_clients": 5, "collect_compact_seconds": 0})
    with TestClient(create_app(capped)) as client:
        for i in range(20):
            hit = {"v": "1", "t": "pageview", "cid": f"c{i}", "dl": "https://x.test/"}
            assert client.get("/collect", params=hit).status_code == 200
        assert client.app.state.store.tracker.max_clients == 5  # type: ignore[attr-defined]
        assert len(client.app.state.store.tracker) == 5  # type: ignore[attr-defined]


def test_json_events_need_the_collect_key_when_one_is_set(collect_settings: Settings) -> None:
    keyed = collect_settings.model_copy(update={"collect_key": "k-123"})
    event = {
        "session_id_hash": "s",
        "event_type": "event_product",
        "product_action": "purchase",
        "product_sku_hash": "P",
    }
    with TestClient(create_app(keyed)) as client:
        missing = client.post("/collect", json=event)
        assert missing.status_code == 401
        assert missing.json()["detail"] == (
            "JSON events need the collector's key (SMALLBOAT_COLLECT_KEY): send it as "
            "Authorization: Bearer <key> or X-Smallboat-Key: <key>"
        )
        wrong = client.post("/collect", json=event, headers={"Authorization": "Bearer k-12"})
        assert wrong.status_code == 403
        assert records_logged(client) == 0
        for i, headers in enumerate(
            ({"Authorization": "Bearer k-123"}, {"X-Smallboat-Key": "k-123"})
        ):
            posted = client.post("/collect", json={**event, "message_id": f"m{i}"}, headers=headers)
            assert posted.json()["events"] == 1
        # The pixel stays open: a browser's image request carries no key.
        hit = {"v": "1", "t": "pageview", "cid": "c", "dl": "https://x.test/"}
        assert client.get("/collect", params=hit).status_code == 200
        assert records_logged(client) == 3


def test_a_secret_read_with_its_newline_still_matches(
    monkeypatch: pytest.MonkeyPatch, collect_settings: Settings
) -> None:
    monkeypatch.setenv("SMALLBOAT_ADMIN_TOKEN", "tok-1\n")
    monkeypatch.setenv("SMALLBOAT_COLLECT_KEY", " key-1\r\n")
    settings = Settings()
    assert (settings.admin_token, settings.collect_key) == ("tok-1", "key-1")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/admin/counters", headers={"Authorization": "Bearer tok-1"})
        assert answer.status_code == 200


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    """`GET /collect` and `POST /collect` are two routes: the 405 used to name the first only."""
    for path in ("/collect", "/g/collect"):
        answer = client.options(path)
        assert answer.status_code == 405
        assert answer.json()["error"] == "method_not_allowed"
        assert answer.headers["allow"] == "GET, POST"
    operations = client.get("/openapi.json").json()["paths"]["/collect"]
    assert {"408", "431"} <= set(operations["post"]["responses"])

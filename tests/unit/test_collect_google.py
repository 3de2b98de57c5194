"""Google's protocols in-process (FastAPI's TestClient, a real log on disk): GA4 web hits (gtag.js),
the GA4 Measurement Protocol and Universal Analytics by GET, POST body and batch; what lands,
what is ignored and counted, what is refused, and the counters on /metrics."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

from smallboat.collect.app import create_app
from smallboat.collect.compaction import compact_events
from smallboat.collect.events import hash_url, now_ms
from smallboat.collect.ga import ga4_session_id
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS

with warnings.catch_warnings():  # starlette's notice about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "mp-secret"


@pytest.fixture
def collect_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"ga4_api_secrets": f"other, {SECRET}", "collect_compact_seconds": 0}
    )


@pytest.fixture
def client(collect_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(collect_settings, admin_token="admin-token")) as c:
        yield c


def landed(client: TestClient, settings: Settings) -> list[tuple[Any, ...]]:
    """Roll the log, compact it, and the landed rows as (type, action, sku, session, url, ts)."""
    assert client.post("/admin/roll", headers={"Authorization": "Bearer admin-token"}).is_success
    compact_events(settings)
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    rows = [
        r for p in sorted(folder.glob("collect-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    return sorted(
        (
            r["event_type"],
            r["product_action"] or "",
            r["product_sku_hash"] or "",
            r["session_id_hash"],
            r["hashed_url"] or "",
            r["server_timestamp_epoch_ms"],
        )
        for r in rows
    )


def metric_lines(client: TestClient, kind: str) -> list[str]:
    text = client.get("/metrics").text
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith(f"smallboat_collect_hits_{kind}_total{{")
    )


def test_ga4_web_hits_by_get_and_post_land_their_pageviews_and_items(
    client: TestClient, collect_settings: Settings
) -> None:
    t = now_ms() - 60_000
    shared = {
        "v": "2",
        "tid": "G-TEST",
        "cid": "123.456",
        "sid": "1700000000",
        "_p": "77",
        "_s": "1",
    }
    get = client.get(
        "/g/collect",
        params={**shared, "en": "page_view", "dl": "https://shop.test/", "ts_ms": str(t)},
    )
    assert get.status_code == 204 and get.content == b""
    body = "\n".join(
        [
            f"en=view_item&pr1=idSKU-1~nmShoes~caMen~pr9.99~qt1&ts_ms={t + 1}",
            f"en=add_to_cart&pr1=idSKU-1~qt1&pr2=nmSocks~qt2&ts_ms={t + 2}",
            "en=scroll&epn.percent_scrolled=90",
            "en=view_item",  # no items: nothing to log
            "en=my_custom_event",
            f"en=purchase&pr2=idSKU-3&pr1=idSKU-2&ts_ms={t + 3}"
            "&dl=https%3A%2F%2Fshop.test%2Fthanks",
        ]
    )
    post = client.post(
        "/g/collect",
        params={**shared, "_s": "2", "dl": "https://shop.test/p/1"},
        content=body,
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert post.status_code == 204
    session = ga4_session_id("123.456", "1700000000")
    page, thanks = hash_url("https://shop.test/p/1"), hash_url("https://shop.test/thanks")
    assert landed(client, collect_settings) == sorted(
        [
            ("pageview", "", "", session, hash_url("https://shop.test/"), t),
            ("event_product", "detail", "SKU-1", session, page, t + 1),
            ("event_product", "add", "SKU-1", session, page, t + 2),
            ("event_product", "add", "Socks", session, page, t + 2),  # no id: its name
            ("event_product", "purchase", "SKU-2", session, thanks, t + 3),
            ("event_product", "purchase", "SKU-3", session, thanks, t + 3),
        ]
    )
    assert metric_lines(client, "ignored") == [
        'smallboat_collect_hits_ignored_total{protocol="ga4",reason="custom event"} 1.0',
        'smallboat_collect_hits_ignored_total{protocol="ga4",reason="scroll"} 1.0',
        'smallboat_collect_hits_ignored_total{protocol="ga4",reason="view_item without items"} 1.0',
    ]


def test_ga4_web_without_sid_cuts_sessions_from_the_client_id(
    client: TestClient, collect_settings: Settings
) -> None:
    assert (
        client.get("/g/collect", params={"v": "2", "cid": "c1", "en": "page_view"}).status_code
        == 204
    )
    [row] = landed(client, collect_settings)
    assert row[0] == "pageview" and len(row[3]) == 64


@pytest.mark.parametrize(
    ("query", "body", "detail"),
    [
        ({"v": "1", "cid": "c", "en": "page_view"}, "", "v '1' is not one of '2'"),
        ({"v": "2", "en": "page_view"}, "", "cid is required"),
        ({"v": "2", "cid": "c"}, "en=page_view\n_et=5", "body line 2: en is required"),
        (
            {"v": "2", "cid": "c"},
            "en=view_item&pr1=caShoes~qt1",
            "body line 1: pr1 has no id (or nm) field",
        ),
        ({"v": "2", "cid": "c"}, "en=page_view&ts_ms=12", "body line 1: ts_ms 12 is"),
    ],
)
def test_bad_ga4_web_hits_are_a_400_naming_the_line_and_parameter_and_are_counted(
    client: TestClient, query: dict[str, str], body: str, detail: str
) -> None:
    answer = client.post("/g/collect", params=query, content=body)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(detail)
    assert client.get("/readyz").json()["records"] == 0
    assert metric_lines(client, "refused") == [
        'smallboat_collect_hits_refused_total{protocol="ga4",reason="invalid"} 1.0'
    ]


def mp(client: TestClient, body: Any, **query: str) -> Any:
    params = {"measurement_id": "G-TEST", "api_secret": SECRET, **query}
    return client.post(
        "/mp/collect",
        params=params,
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )


def test_ga4_measurement_protocol_lands_its_events(
    client: TestClient, collect_settings: Settings
) -> None:
    t = now_ms() - 120_000
    body = {
        "client_id": "555.666",
        "timestamp_micros": t * 1000,
        "events": [
            {
                "name": "page_view",
                "params": {"session_id": 1700000001, "page_location": "https://shop.test/a"},
            },
            {
                "name": "view_item",
                "params": {"session_id": 1700000001, "items": [{"item_id": "A", "price": 3}]},
            },
            {
                "name": "purchase",
                "timestamp_micros": (t + 5) * 1000,
                "params": {"items": [{"item_id": "A"}, {"item_name": "B"}], "transaction_id": "T1"},
            },
            {"name": "level_up", "params": {"level": 2}},
        ],
    }
    assert mp(client, body).status_code == 204
    session = ga4_session_id("555.666", "1700000001")
    rows = landed(client, collect_settings)
    assert [r[:2] + r[2:3] for r in rows] == [
        ("event_product", "detail", "A"),
        ("event_product", "purchase", "A"),
        ("event_product", "purchase", "B"),
        ("pageview", "", ""),
    ]
    assert [r[3] for r in rows[:1] + rows[3:]] == [session, session]
    assert rows[3][4] == hash_url("https://shop.test/a")
    assert [r[5] for r in rows] == [t, t + 5, t + 5, t]
    assert len(rows[1][3]) == 64 and rows[1][3] != session  # no session_id: cut from client_id
    assert metric_lines(client, "ignored") == [
        'smallboat_collect_hits_ignored_total{protocol="ga4mp",reason="custom event"} 1.0'
    ]


@pytest.mark.parametrize(
    ("query", "body", "status", "detail"),
    [
        ({"api_secret": "wrong"}, None, 401, "api_secret is not one of this collector's secrets"),
        ({"api_secret": ""}, None, 401, "api_secret is required in the query string"),
        ({"measurement_id": ""}, None, 400, "measurement_id is required"),
        ({}, {"events": [{"name": "page_view"}]}, 400, "client_id is required"),
        ({}, {"client_id": "c", "events": []}, 400, "events: List should have at least 1 item"),
        ({}, {"client_id": "c", "events": [{"name": "view_item", "params": {"items": [{}]}}]},
         400, "events[0].params.items[0].item_id is required (or item_name)"),
        ({}, [1], 400, "body must be a JSON object"),
    ],
)  # fmt: skip
def test_bad_measurement_protocol_requests_are_refused_and_counted(
    client: TestClient, query: dict[str, str], body: Any, status: int, detail: str
) -> None:
    good = {"client_id": "c", "events": [{"name": "page_view"}]}
    answer = mp(client, good if body is None else body, **query)
    assert answer.status_code == status
    assert answer.json()["detail"].startswith(detail)
    assert client.get("/readyz").json()["records"] == 0
    reason = "unauthorized" if status == 401 else "invalid"
    assert metric_lines(client, "refused") == [
        f'smallboat_collect_hits_refused_total{{protocol="ga4mp",reason="{reason}"}} 1.0'
    ]


def test_measurement_protocol_without_configured_secrets_refuses_everyone(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings)) as c:
        answer = mp(c, {"client_id": "c", "events": [{"name": "page_view"}]})
        assert answer.status_code == 401
        assert "set SMALLBOAT_GA4_API_SECRETS" in answer.json()["detail"]


def test_universal_analytics_by_post_body_and_batch(
    client: TestClient, collect_settings: Settings
) -> None:
    t = now_ms() - 30_000
    plain = client.post(
        "/collect",
        content=f"v=1&t=pageview&cid=u1&sid=s1&z=1&ts_ms={t}",
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/gif"
    form = client.post(
        "/collect",
        data={
            "v": "1",
            "t": "event",
            "cid": "u1",
            "sid": "s1",
            "pa": "add",
            "pr1id": "A",
            "ts_ms": str(t + 1),
        },
    )
    assert form.status_code == 200
    untyped = client.post(
        "/collect", content=f"v=1&t=timing&cid=u1&utt=120&ts_ms={t}"
    )  # no Content-Type
    assert untyped.status_code == 200
    batch = "\n".join(
        [
            f"v=1&t=pageview&cid=u1&sid=s1&z=2&pa=checkout&pr1id=A&ts_ms={t + 2}",  # pageview kept
            "v=1&t=event&cid=u1&ec=video&ea=play",
            "v=1&t=exception&cid=u1&exd=oops",
            "v=1&t=social&cid=u1&sn=x&sa=like&st=/",
            "v=1&t=pageview&cid=u1&pa=refund&ti=T1",
            "v=1&t=event&cid=u1&pa=click&pr1id=A",
            f"v=1&t=event&cid=u1&sid=s1&z=3&pa=purchase&pr1id=A&pr2id=B&ts_ms={t + 3}",
        ]
    )
    assert client.post("/batch", content=batch).status_code == 200
    rows = landed(client, collect_settings)
    assert [r[:3] for r in rows if r[3] == "s1"] == [
        ("event_product", "add", "A"),
        ("event_product", "purchase", "A"),
        ("event_product", "purchase", "B"),
        ("pageview", "", ""),
        ("pageview", "", ""),
    ]
    assert len(rows) == 6  # and the refund pageview, sessioned from its client id
    assert metric_lines(client, "ignored") == [
        f'smallboat_collect_hits_ignored_total{{protocol="ga",reason="{reason}"}} 1.0'
        for reason in [
            "event without pa", "pa=checkout", "pa=click", "pa=refund", "t=exception", "t=social",
            "t=timing",
        ]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/batch", "\n".join(["v=1&t=pageview&cid=c"] * 21), "body has 21 hits; at most 20"),
        ("/batch", "v=1&t=pageview&cid=c\nv=1&t=pageview", "line 2: cid is required"),
        (
            "/batch",
            "v=1&t=pageview&cid=c\nv=1&t=event&cid=c&pa=add",
            "line 2: pr1id is required with pa=add",
        ),
        ("/batch", "", "body is empty: send one hit per line"),
        ("/collect", "v=1&t=pageview&cid=c\nv=1&t=pageview&cid=d", "body holds several lines"),
        (
            "/collect",
            '{"event_type": "pageview"}',
            "body is not JSON: send it with Content-Type: application/json",
        ),
    ],
)
def test_bad_universal_analytics_bodies_log_nothing(
    client: TestClient, path: str, body: str, detail: str
) -> None:
    answer = client.post(path, content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(detail)
    assert client.get("/readyz").json()["records"] == 0
    assert metric_lines(client, "refused") == [
        'smallboat_collect_hits_refused_total{protocol="ga",reason="invalid"} 1.0'
    ]


def test_refused_canonical_json_is_counted(client: TestClient) -> None:
    answer = client.post("/collect", json=[{"event_type": "pageview"}])
    assert answer.status_code == 400
    assert metric_lines(client, "refused") == [
        'smallboat_collect_hits_refused_total{protocol="json",reason="invalid"} 1.0'
    ]


def test_admin_routes_need_the_token(client: TestClient) -> None:
    assert client.post("/admin/roll").status_code == 401
    assert client.post("/admin/roll", headers={"Authorization": "Bearer nope"}).status_code == 401
    counters = client.get("/admin/counters", headers={"Authorization": "Bearer admin-token"})
    assert counters.json()["counters"] == {"ignored": {}, "refused": {}}


def test_admin_routes_are_off_without_a_token(settings: Settings) -> None:
    with TestClient(create_app(settings)) as off:
        answer = off.post("/admin/roll", headers={"Authorization": "Bearer x"})
        assert answer.status_code == 404
        assert answer.json()["detail"] == "the admin routes are off: set SMALLBOAT_ADMIN_TOKEN"

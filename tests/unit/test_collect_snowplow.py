"""Snowplow's tracker protocol, partial batches, the rejects log and CORS, in-process (FastAPI's
TestClient, a real log on disk). The trackers themselves: tests/integration/test_collect_trackers.py
and test_collect_browser.py."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from smallboat.cli import app as cli
from smallboat.collect.app import create_app
from smallboat.collect.events import HitError, TimePolicy
from smallboat.collect.models import SnowplowEvent
from smallboat.collect.rejects import MAX_EVENT_CHARS, RejectsLog, event_text
from smallboat.collect.snowplow import snowplow_hits
from smallboat.config import Settings

with warnings.catch_warnings():  # starlette's notice about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = 1_800_000_000_000
POLICY = TimePolicy.from_days(7)
ACTION = "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2"
PRODUCT = "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0"
SESSION = "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2"
PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
SHOP = "https://shop.example"


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def ecommerce(kind: str, *skus: str, encoded: bool = False, **fields: Any) -> dict[str, Any]:
    ue = {"schema": "iglu:...unstruct_event", "data": {"schema": ACTION, "data": {"type": kind}}}
    co = {
        "schema": "iglu:...contexts",
        "data": [{"schema": PRODUCT, "data": {"id": s}} for s in skus],
    }
    if encoded:
        return {"e": "ue", "ue_px": b64(ue), "cx": b64(co), **fields}
    return {"e": "ue", "ue_pr": json.dumps(ue), "co": json.dumps(co), **fields}


def hits(event: dict[str, Any]) -> tuple[list[tuple[Any, ...]], str | None]:
    found, ignored = snowplow_hits(
        SnowplowEvent.model_validate({"duid": "d", **event}), received_ms=NOW, policy=POLICY
    )
    rows = [
        (h.event_type, h.product_action, h.product_sku_hash, h.session_id, h.timestamp_ms)
        for h in found
    ]
    return rows, ignored


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "base64"])
def test_ecommerce_actions_map_one_row_per_product(encoded: bool) -> None:
    event = ecommerce("transaction", "A", "B", encoded=encoded, sid="s1", ttm=str(NOW - 5))
    assert hits(event) == (
        [
            ("event_product", "purchase", "A", "s1", NOW - 5),
            ("event_product", "purchase", "B", "s1", NOW - 5),
        ],
        None,
    )
    assert hits(ecommerce("add_to_cart", "A", sid="s1"))[0] == [
        ("event_product", "add", "A", "s1", NOW)
    ]


def test_page_views_times_and_sessions() -> None:
    # Snowplow's derived time: the receive time minus the time the event waited on the device.
    assert hits({"e": "pv", "dtm": "1000", "stm": "4000", "sid": "s"})[0] == [
        ("pageview", None, None, "s", NOW - 3000)
    ]
    context = json.dumps(
        {"schema": "c", "data": [{"schema": SESSION, "data": {"sessionId": "cs"}}]}
    )
    assert hits({"e": "pv", "co": context})[0][0][3] == "cs"
    no_session = hits({"e": "pv"})[0][0]
    assert no_session[3] is None  # cut from the client id (duid) by the store


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"e": "pp"}, "e=pp"),
        ({"e": "zz"}, "other event"),
        (ecommerce("list_view", "A"), "ecommerce list_view"),
        (
            {
                "e": "ue",
                "ue_pr": json.dumps({"data": {"schema": "iglu:x/y/jsonschema/1-0-0", "data": {}}}),
            },
            "self-describing (not e-commerce)",
        ),
    ],
)
def test_events_without_a_browsing_signal_are_ignored_with_a_reason(
    event: dict[str, Any], reason: str
) -> None:
    assert hits(event) == ([], reason)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (ecommerce("add_to_cart"), "co has no product entity"),
        (ecommerce("buy", "A"), "ue_pr.data.data.type 'buy' is not an e-commerce action type"),
        ({"e": "ue", "ue_px": "!!"}, "ue_px is not base64url-encoded UTF-8 JSON"),
        ({"e": "ue"}, "ue_pr (or ue_px) is required"),
        ({"e": "pv", "ttm": "soon"}, "ttm 'soon' is not a time in epoch milliseconds"),
        ({"e": "pv", "ttm": str(NOW + 86_400_000)}, "ttm 1800086400000 is 1.0 days after"),
    ],
)
def test_bad_events_name_the_field(event: dict[str, Any], message: str) -> None:
    with pytest.raises(HitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hits(event)


@pytest.fixture
def settings_cors(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "write_keys": "k1",
            "collect_compact_seconds": 0,
            "collect_cors_origins": f"{SHOP}/",
        }
    )


@pytest.fixture
def client(settings_cors: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings_cors)) as c:
        yield c


def test_a_batch_keeps_its_good_events_and_logs_the_bad_ones(
    client: TestClient, settings_cors: Settings
) -> None:
    good = {"e": "pv", "eid": "e1", "sid": "s", "url": "https://shop.example/"}
    bad = ecommerce("add_to_cart", eid="e2", sid="s")
    answer = client.post(
        "/com.snowplowanalytics.snowplow/tp2",
        json={"schema": PAYLOAD, "data": [good, bad, {"e": "pp"}]},
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "events": 1,
        "ignored": 1,
        "refused": 1,
        "refusals": [
            {
                "index": 1,
                "messageId": "e2",
                "detail": f"data[1].co has no product entity ({PRODUCT} with an id) for the "
                "add_to_cart action",
            }
        ],
    }
    all_bad = client.post(
        "/com.snowplowanalytics.snowplow/tp2", json={"schema": PAYLOAD, "data": [bad, {"sid": "s"}]}
    )
    assert all_bad.status_code == 400
    assert all_bad.json()["detail"] == (
        f"data[0].co has no product entity ({PRODUCT} with an id) for the add_to_cart action; "
        "data[1].e is required (refused events: `smallboat collect rejects`)"
    )
    [first, _, third] = RejectsLog.of(settings_cors).read()
    assert (first.protocol, first.route, first.index, first.message_id) == (
        "snowplow",
        "/com.snowplowanalytics.snowplow/tp2",
        1,
        "e2",
    )
    assert json.loads(first.event or "") == bad
    assert third.reason == "data[1].e is required"
    metrics = client.get("/metrics").text
    assert (
        'smallboat_collect_hits_refused_total{protocol="snowplow",reason="invalid"} 3.0' in metrics
    )
    assert 'smallboat_collect_hits_ignored_total{protocol="snowplow",reason="e=pp"} 1.0' in metrics

    shown = CliRunner().invoke(
        cli,
        ["collect", "rejects", "--last", "1", "--protocol", "snowplow"],
        env={"SMALLBOAT_HOME": str(settings_cors.home)},
    )
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip().endswith(
        "snowplow /com.snowplowanalytics.snowplow/tp2 [1]: data[1].e is required"
    )


def test_the_pixel_answers_a_gif_or_a_400(client: TestClient) -> None:
    answer = client.get("/i", params={"e": "pv", "sid": "s", "url": "https://shop.example/"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    refused = client.get("/i", params={"e": "ue", "sid": "s"})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "bad_request",
        "detail": "ue_pr (or ue_px) is required on a self-describing event (e=ue) "
        "(refused events: `smallboat collect rejects`)",
    }


def test_segment_batches_keep_good_messages_and_errors_carry_the_sdks_fields(
    client: TestClient,
) -> None:
    batch = [
        {
            "type": "track",
            "event": "Product Added",
            "anonymousId": "a",
            "properties": {"product_id": "P"},
        },
        {
            "type": "track",
            "event": "Product Added",
            "anonymousId": "a",
            "messageId": "m2",
            "userId": "x" * 300,
        },
    ]
    answer = client.post("/v1/batch", json={"batch": batch}, auth=("k1", ""))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["events"], body["refused"], body["refusals"][0]["messageId"]) == (1, 1, "m2")
    assert body["refusals"][0]["detail"].startswith("batch[1].userId ")
    refused = client.post("/v1/batch", json={"batch": batch[1:]}, auth=("k1", ""))
    assert refused.status_code == 400
    error = refused.json()
    assert (error["code"], error["message"]) == ("bad_request", error["detail"])


def test_cors_allows_credentials_for_listed_origins_only(
    client: TestClient, settings: Settings
) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = client.options("/com.snowplowanalytics.snowplow/tp2", headers={"Origin": SHOP, **asked})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert ok.headers["access-control-allow-credentials"] == "true"
    other = client.options(
        "/com.snowplowanalytics.snowplow/tp2", headers={"Origin": "https://evil.example", **asked}
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    anyone = settings.model_copy(update={"collect_cors_origins": "*"})
    # (the middleware answers a preflight: no lifespan, no second writer of the same log)
    answer = TestClient(create_app(anyone)).options(
        "/i", headers={"Origin": "https://evil.example", **asked}
    )
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers


def test_the_rejects_log_is_bounded(tmp_path: Any) -> None:
    log = RejectsLog(tmp_path, max_bytes=20_000)
    from smallboat.collect.rejects import Reject

    for i in range(200):
        log.add(
            [
                Reject(
                    at_ms=i,
                    protocol="p",
                    route="/r",
                    reason=f"r{i}",
                    event=event_text({"n": "x" * 100}),
                )
            ]
        )
    kept = log.read()
    assert kept[-1].reason == "r199" and len(kept) < 200
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 20_000
    assert event_text("y" * 10_000).endswith("(10,002 characters)")
    assert len(event_text("y" * 10_000)) < MAX_EVENT_CHARS + 40

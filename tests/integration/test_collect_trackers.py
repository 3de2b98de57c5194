"""RudderStack's and Snowplow's own Python libraries, unchanged but for the host, against a real
collector (uvicorn in a child process): what a right-key run sends lands exactly; a wrong key or
a bad event reaches the library's own error callback as a 4xx, once (not retried); a batch
keeps its good events and the bad ones are in the rejects log."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import rudderstack.analytics as rudder
from snowplow_tracker import Emitter, PageView, SelfDescribing, SelfDescribingJson, Subject, Tracker

from smallboat.collect.events import hash_url
from smallboat.collect.rejects import RejectsLog
from smallboat.collect.server import CollectorProcess
from smallboat.collect.sessions import session_id_for
from smallboat.config import Settings
from tests.integration.test_collect_clients import ENV, WRITE_KEY, landed_after_stop

pytestmark = pytest.mark.slow

ACTION = "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2"
PRODUCT = "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    with CollectorProcess(tmp_path / "home", env=ENV, log_path=tmp_path / "collector.log") as c:
        yield c


def refused(collector: CollectorProcess, protocol: str) -> dict[str, float]:
    """The collector's refused-hit counters of `protocol` (reason -> count), from /metrics."""
    text = httpx.get(f"{collector.url}/metrics").text
    pattern = (
        r'^smallboat_collect_hits_refused_total\{protocol="' + protocol + r'",reason="([^"]+)"\}'
        r" ([0-9.e+]+)$"
    )
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, flags=re.MULTILINE)}


def rejects_of(collector: CollectorProcess) -> list[str]:
    return [r.reason for r in RejectsLog.of(Settings(home=collector.home)).read()]


@pytest.fixture
def rudder_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Exception]]:
    """RudderStack's module-level client, configured as its docs say; yields its errors."""
    errors: list[Exception] = []
    monkeypatch.setattr(rudder, "write_key", WRITE_KEY)
    monkeypatch.setattr(rudder, "on_error", lambda error, batch: errors.append(error))
    monkeypatch.setattr(rudder, "default_client", None)
    yield errors
    rudder.shutdown()


def test_rudderstacks_python_sdk_lands_what_it_sends(
    collector: CollectorProcess, rudder_client: list[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rudder, "dataPlaneUrl", collector.url)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    shopper = "anon-7"
    rudder.page(
        anonymous_id=shopper, name="Home", properties={"url": "https://shop.test/"}, timestamp=t0
    )
    for offset, event, props in [
        (4, "Product Viewed", {"product_id": "SKU-1"}),
        (8, "Product Added", {"product_id": "SKU-1"}),
        (12, "Product Removed", {"sku": "SKU-1"}),
        (20, "Order Completed", {"products": [{"product_id": "SKU-2"}, {"sku": "SKU-3"}]}),
    ]:
        rudder.track(
            anonymous_id=shopper,
            event=event,
            properties=props,
            timestamp=t0 + timedelta(seconds=offset),
        )
    rudder.identify(user_id="u-1", traits={"plan": "pro"})
    rudder.flush()
    assert rudder_client == []
    session = session_id_for(shopper, int(t0.timestamp() * 1000))
    rows = sorted(
        (
            r["server_timestamp_epoch_ms"] - int(t0.timestamp() * 1000),
            r["session_id_hash"],
            r["event_type"],
            r["product_action"],
            r["product_sku_hash"],
            r["hashed_url"],
        )
        for r in landed_after_stop(collector)
    )
    assert rows == [
        (0, session, "pageview", None, None, hash_url("https://shop.test/")),
        (4_000, session, "event_product", "detail", "SKU-1", None),
        (8_000, session, "event_product", "add", "SKU-1", None),
        (12_000, session, "event_product", "remove", "SKU-1", None),
        (20_000, session, "event_product", "purchase", "SKU-2", None),
        (20_000, session, "event_product", "purchase", "SKU-3", None),
    ]


def test_rudderstacks_sdk_sees_a_401_once_for_a_wrong_write_key(
    collector: CollectorProcess, rudder_client: list[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rudder, "dataPlaneUrl", collector.url)
    monkeypatch.setattr(rudder, "write_key", "not-the-key")
    rudder.track(anonymous_id="a", event="Product Added", properties={"product_id": "P"})
    rudder.flush()
    assert [(e.status, e.code, e.message) for e in rudder_client] == [  # type: ignore[attr-defined]
        (401, "unauthorized", "the write key is not one of this collector's keys")
    ]
    assert refused(collector, "segment") == {"unauthorized": 1.0}  # not retried
    assert httpx.get(f"{collector.url}/readyz").json()["records"] == 0


def test_rudderstacks_sdk_batch_keeps_its_good_events_and_surfaces_an_all_bad_one(
    collector: CollectorProcess, rudder_client: list[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rudder, "dataPlaneUrl", collector.url)
    # One batch (queued within the SDK's 0.5 s upload interval): two good events, one bad.
    rudder.track(anonymous_id="a", event="Product Viewed", properties={"product_id": "P1"})
    rudder.track(anonymous_id="a", event="Product Added", properties={"price": 3})
    rudder.track(anonymous_id="a", event="Product Added", properties={"product_id": "P1"})
    rudder.flush()
    assert rudder_client == []
    assert httpx.get(f"{collector.url}/readyz").json()["records"] == 2
    assert rejects_of(collector) == [
        "batch[1].properties.product_id is required for 'Product Added'"
    ]

    rudder.track(anonymous_id="a", event="Order Completed", properties={"order_id": "o"})
    rudder.flush()
    detail = "batch[0].properties.products is required for 'Order Completed': a list of products"
    assert [(e.status, e.code) for e in rudder_client] == [(400, "bad_request")]  # type: ignore[attr-defined]
    assert rudder_client[0].message.startswith(detail)  # type: ignore[attr-defined]
    assert refused(collector, "segment") == {"invalid": 2.0}  # one each, none retried
    assert len(rejects_of(collector)) == 2
    assert httpx.get(f"{collector.url}/readyz").json()["records"] == 2


def ecommerce(kind: str) -> SelfDescribingJson:
    return SelfDescribingJson(ACTION, {"type": kind})


def product(sku: str, price: float = 10.0) -> SelfDescribingJson:
    return SelfDescribingJson(
        PRODUCT, {"id": sku, "category": "shoes", "price": price, "currency": "EUR"}
    )


def snowplow_tracker(
    collector: CollectorProcess, method: str, subject: Subject, failures: list[Any]
) -> Tracker:
    emitter = Emitter(
        collector.url.removeprefix("http://"),
        protocol="http",
        method=method,  # type: ignore[arg-type]
        on_failure=lambda n, events: failures.append(events),
    )
    return Tracker("sp", emitter, subject=subject, app_id="shop")


@pytest.mark.parametrize("method", ["post", "get"])
@pytest.mark.parametrize("base64", [True, False], ids=["base64", "plain"])
def test_snowplows_python_tracker_lands_what_it_sends(
    collector: CollectorProcess, method: str, base64: bool
) -> None:
    failures: list[Any] = []
    subject = Subject().set_domain_user_id("duid-1").set_domain_session_id("sess-1")
    tracker = snowplow_tracker(collector, method, subject, failures)
    tracker.encode_base64 = base64
    t0 = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000)
    tracker.track(PageView(page_url="https://shop.test/p/1", true_timestamp=t0))
    tracker.track(
        SelfDescribing(
            ecommerce("product_view"), context=[product("SKU-1")], true_timestamp=t0 + 1_000
        )
    )
    tracker.track(
        SelfDescribing(
            ecommerce("add_to_cart"), context=[product("SKU-1")], true_timestamp=t0 + 2_000
        )
    )
    tracker.track(
        SelfDescribing(
            ecommerce("remove_from_cart"), context=[product("SKU-1")], true_timestamp=t0 + 3_000
        )
    )
    tracker.track(
        SelfDescribing(
            ecommerce("list_view"), context=[product("SKU-9")], true_timestamp=t0 + 3_500
        )
    )
    tracker.track(
        SelfDescribing(
            ecommerce("transaction"),
            context=[product("SKU-2"), product("SKU-3", 5.0)],
            true_timestamp=t0 + 4_000,
        )
    )
    tracker.flush()
    assert failures == []
    rows = sorted(
        (
            r["server_timestamp_epoch_ms"] - t0,
            r["session_id_hash"],
            r["event_type"],
            r["product_action"],
            r["product_sku_hash"],
            r["hashed_url"],
        )
        for r in landed_after_stop(collector)
    )
    assert rows == [
        (0, "sess-1", "pageview", None, None, hash_url("https://shop.test/p/1")),
        (1_000, "sess-1", "event_product", "detail", "SKU-1", None),
        (2_000, "sess-1", "event_product", "add", "SKU-1", None),
        (3_000, "sess-1", "event_product", "remove", "SKU-1", None),
        (4_000, "sess-1", "event_product", "purchase", "SKU-2", None),
        (4_000, "sess-1", "event_product", "purchase", "SKU-3", None),
    ]


@pytest.mark.parametrize("method", ["post", "get"])
def test_snowplows_python_tracker_sees_a_bad_event_refused_once(
    collector: CollectorProcess, method: str
) -> None:
    failures: list[Any] = []
    subject = Subject().set_domain_user_id("duid-1")
    tracker = snowplow_tracker(collector, method, subject, failures)
    tracker.track(SelfDescribing(ecommerce("add_to_cart")))  # no product entity
    tracker.flush()
    assert [[event["e"] for event in events] for events in failures] == [["ue"]]
    time.sleep(0.5)  # a retry, if the tracker made one, would have come by now
    assert refused(collector, "snowplow") == {"invalid": 1.0}
    [reason] = rejects_of(collector)
    prefix = "data[0]." if method == "post" else ""
    assert reason == (
        f"{prefix}co has no product entity ({PRODUCT} with an id) for the add_to_cart action"
    )


JS = Path(__file__).resolve().parents[1] / "js"


def segment_node(
    collector: CollectorProcess, write_key: str, messages: list[dict[str, Any]], tmp_path: Path
) -> dict[str, list[Any]]:
    """Send `messages` with @segment/analytics-node (tests/js, `make js-deps`) on the machine's
    node; what the library reported."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@segment" / "analytics-node").is_dir():
        pytest.fail(
            "node or tests/js/node_modules missing: run `make system-deps js-deps`", pytrace=False
        )
    file = tmp_path / "messages.json"
    file.write_text(json.dumps(messages))
    done = subprocess.run(
        [node, "segment_node.mjs", collector.url, write_key, str(file)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, list[Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_segments_node_library_lands_what_it_sends_and_sees_4xx_once(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    stamp = t0.isoformat()
    good = [
        {
            "type": "page",
            "anonymousId": "n1",
            "properties": {"url": "https://shop.test/"},
            "timestamp": stamp,
        },
        {
            "type": "track",
            "anonymousId": "n1",
            "event": "Product Added",
            "properties": {"product_id": "SKU-5"},
            "timestamp": stamp,
        },
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}},
    ]
    report = segment_node(collector, WRITE_KEY, good, tmp_path)
    assert report == {"callbackErrors": [], "emittedErrors": [], "statuses": [200]}
    assert httpx.get(f"{collector.url}/readyz").json()["records"] == 2

    wrong = segment_node(collector, "not-the-key", good[:1], tmp_path)
    # The library reports the status line (it does not read error bodies), and does not retry.
    assert wrong == {
        "callbackErrors": ["[401] Unauthorized"],
        "emittedErrors": ["delivery_failure: [401] Unauthorized"],
        "statuses": [401],
    }
    bad = [{"type": "track", "anonymousId": "n1", "event": "Product Added", "properties": {}}]
    refused_run = segment_node(collector, WRITE_KEY, bad, tmp_path)
    assert refused_run["statuses"] == [400]
    assert refused_run["callbackErrors"] == ["[400] Bad Request"]
    assert refused(collector, "segment") == {"invalid": 1.0, "unauthorized": 1.0}
    assert rejects_of(collector) == [
        "batch[0].properties.product_id is required for 'Product Added'"
    ]
    rows = landed_after_stop(collector)
    assert sorted((r["event_type"], r["product_sku_hash"]) for r in rows) == [
        ("event_product", "SKU-5"),
        ("pageview", None),
    ]

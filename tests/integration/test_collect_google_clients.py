"""Google's trackers against a real collector (uvicorn in a child process): the `ga4mp` Measurement
Protocol library and the npm `universal-analytics` library, unchanged except for the host; a real
headless Chromium page sending GA4 hits the way gtag.js does (sendBeacon, fetch keepalive); and
`smallboat collect compact` landing what was acknowledged while the collector keeps running."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from ga4mp import GtagMP
from typer.testing import CliRunner

from smallboat.cli import app
from smallboat.collect.compaction import compact_events
from smallboat.collect.events import hash_url
from smallboat.collect.ga import ga4_session_id
from smallboat.collect.replay import read_browsing
from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.data.synth.generate import SynthConfig, synthesize
from smallboat.schema import BROWSING_EVENTS
from tests.browser import chromium

pytestmark = pytest.mark.slow

SECRET = "mp-secret"
ENV = {
    "SMALLBOAT_GA4_API_SECRETS": SECRET,
    "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
    "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",  # replayed files are old
}
JS = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture
def collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CollectorProcess]:
    home = tmp_path / "home"
    monkeypatch.setenv("SMALLBOAT_HOME", str(home))  # the CLI in this process: the same home
    with CollectorProcess(home, env=ENV, log_path=tmp_path / "collector.log") as c:
        yield c


def landed(home: Path) -> list[dict[str, Any]]:
    folder = Settings(home=home).table_landing_dir(BROWSING_EVENTS.name)
    return [
        r for p in sorted(folder.glob("collect-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def compact_cli() -> str:
    result = CliRunner().invoke(app, ["collect", "compact"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def rows_of(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            r["event_type"],
            r["product_action"] or "",
            r["product_sku_hash"] or "",
            r["session_id_hash"],
        )
        for r in rows
    )


def test_ga4mp_lands_its_events_and_sees_a_401_for_a_wrong_secret(
    collector: CollectorProcess,
) -> None:
    ga = GtagMP(api_secret=SECRET, measurement_id="G-TEST", client_id="1234567890.1700000000")
    ga._base_domain = f"{collector.url}/mp/collect"  # the host: the library's only knob for it
    events = [
        {"name": "page_view", "params": {"page_location": "https://shop.test/p/1"}},
        {"name": "view_item", "params": {"items": [{"item_id": "SKU-1", "price": 9.5}]}},
        {"name": "add_to_cart", "params": {"items": [{"item_id": "SKU-1", "quantity": 1}]}},
        {
            "name": "purchase",
            "params": {
                "transaction_id": "T-1",
                "items": [{"item_id": "SKU-1"}, {"item_id": "SKU-2"}],
            },
        },
        {"name": "level_up", "params": {"level": 3}},
    ]
    ga.send(events)
    session = ga4_session_id(
        "1234567890.1700000000", str(ga.store.get_session_parameter("session_id"))
    )

    wrong = GtagMP(api_secret="not-the-secret", measurement_id="G-TEST", client_id="x")
    wrong._base_domain = f"{collector.url}/mp/collect"
    with pytest.raises(urllib.error.HTTPError) as caught:
        wrong.send([{"name": "page_view", "params": {}}])
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["detail"] == (
        "api_secret is not one of this collector's secrets"
    )

    assert "closed its active segment first" in compact_cli()  # the collector still runs
    assert rows_of(landed(collector.home)) == [
        ("event_product", "add", "SKU-1", session),
        ("event_product", "detail", "SKU-1", session),
        ("event_product", "purchase", "SKU-1", session),
        ("event_product", "purchase", "SKU-2", session),
        ("pageview", "", "", session),
    ]
    status = CliRunner().invoke(app, ["collect", "status"], terminal_width=200)
    assert status.exit_code == 0, status.output
    assert "ignored hits: ga4mp / custom event: 1" in status.output
    assert "refused hits: ga4mp / unauthorized: 1" in status.output
    assert "pending compaction: 0 segment(s)" in status.output


def send_ua(collector: CollectorProcess, tmp_path: Path, calls: list[Any], cid: str) -> Any:
    node = shutil.which("node")
    assert node is not None, "node is not on PATH: `make system-deps` installs it"
    script = tmp_path / "calls.json"
    script.write_text(json.dumps(calls))
    done = subprocess.run(
        [node, str(JS / "ua_send.js"), collector.url, str(script), cid],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_universal_analytics_npm_library_lands_its_hits(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    calls = [
        ["pageview", "/p/1", "https://shop.test", "Shoes"],
        [
            "event",
            {"ec": "shop", "ea": "detail", "pa": "detail", "pr1id": "SKU-1", "pr1nm": "Shoes"},
        ],
        ["event", {"ec": "shop", "ea": "add", "pa": "add", "pr1id": "SKU-1", "pr1qt": 1}],
        ["event", "video", "play"],  # no product action: acknowledged, ignored
        ["timing", "page", "load", 420],
        ["exception", "oops", False],
        ["pageview", {"dp": "/checkout", "pa": "checkout", "pr1id": "SKU-1"}],
        [
            "event",
            {
                "ec": "shop",
                "ea": "buy",
                "pa": "purchase",
                "ti": "T1",
                "pr1id": "SKU-1",
                "pr2id": "SKU-2",
            },
        ],
    ]
    answer = send_ua(collector, tmp_path, calls, "shopper-1")
    assert answer == {"error": None, "sent": 1}  # one /batch request of 8 hits
    bad = send_ua(
        collector, tmp_path, [["event", {"ec": "shop", "ea": "add", "pa": "add"}]], "shopper-2"
    )
    assert json.loads(bad["error"]) == {
        "error": "bad_request",
        "detail": "pr1id is required with pa=add: the product's SKU",
    }
    metrics = httpx.get(f"{collector.url}/metrics").text
    for reason in ("event without pa", "t=timing", "t=exception", "pa=checkout"):
        assert (
            f'smallboat_collect_hits_ignored_total{{protocol="ga",reason="{reason}"}} 1.0'
            in metrics
        )
    assert 'smallboat_collect_hits_refused_total{protocol="ga",reason="invalid"} 1.0' in metrics
    assert collector.stop() == 0
    compact_events(Settings(home=collector.home))
    rows = landed(collector.home)
    assert sorted(
        (r["event_type"], r["product_action"] or "", r["product_sku_hash"] or "") for r in rows
    ) == [
        ("event_product", "add", "SKU-1"),
        ("event_product", "detail", "SKU-1"),
        ("event_product", "purchase", "SKU-1"),
        ("event_product", "purchase", "SKU-2"),
        ("pageview", "", ""),
        ("pageview", "", ""),
    ]
    assert len({r["session_id_hash"] for r in rows}) == 1  # cut from the client id
    urls = {r["hashed_url"] for r in rows if r["event_type"] == "pageview"}
    assert urls == {hash_url("https://shop.test/p/1"), hash_url("/checkout")}


GTAG_PAGE = """<!doctype html><title>shop</title><script>
// What gtag.js does when its transport_url is the collector: shared parameters in the query,
// one event per body line, sent by navigator.sendBeacon or by a keepalive fetch.
const base = "{url}/g/collect?v=2&tid=G-TEST&cid=111.222&sid=1700000000&_p=42&dl=" +
  encodeURIComponent(location.href);
navigator.sendBeacon(base + "&_s=1&en=page_view");
const lines = ["en=view_item&pr1=idSKU-1~nmShoes~pr9.99", "en=scroll&epn.percent_scrolled=90",
               "en=add_to_cart&pr1=idSKU-1~qt1", "en=purchase&pr1=idSKU-1~qt1&pr2=idSKU-2~qt2"];
navigator.sendBeacon(base + "&_s=2", lines.slice(0, 3).join("\\n"));
fetch(base + "&_s=3", {{method: "POST", body: lines[3], keepalive: true, mode: "no-cors",
                       credentials: "include"}})
  .then(() => {{ document.title = "sent"; }}, (e) => {{ document.title = "failed " + e; }});
</script>"""


@pytest.fixture
def shop_page(tmp_path: Path, collector: CollectorProcess) -> Iterator[str]:
    """A local page (its own origin, like a shop's) that sends GA4 hits to the collector."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(GTAG_PAGE.format(url=collector.url))
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def test_a_browser_sends_gtag_style_hits_that_land(
    collector: CollectorProcess, shop_page: str
) -> None:
    with chromium() as driver:
        driver.get(shop_page)
        deadline = time.monotonic() + 20
        while driver.title != "sent" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert driver.title == "sent"
        while httpx.get(f"{collector.url}/readyz").json()["records"] < 5:
            assert time.monotonic() < deadline, "the beacons did not all arrive"
            time.sleep(0.1)
    compact_cli()
    session = ga4_session_id("111.222", "1700000000")
    assert rows_of(landed(collector.home)) == [
        ("event_product", "add", "SKU-1", session),
        ("event_product", "detail", "SKU-1", session),
        ("event_product", "purchase", "SKU-1", session),
        ("event_product", "purchase", "SKU-2", session),
        ("pageview", "", "", session),
    ]
    assert {r["hashed_url"] for r in landed(collector.home)} == {hash_url(shop_page)}


def test_compact_lands_what_was_acknowledged_while_the_collector_runs_exactly_once(
    collector: CollectorProcess,
) -> None:
    sent = 0
    for round_ in range(3):
        for i in range(5):
            hit = {"v": "1", "t": "pageview", "cid": "c", "z": f"{round_}-{i}"}
            assert httpx.get(f"{collector.url}/collect", params=hit).status_code == 200
            sent += 1
        assert len(landed(collector.home)) == sent - 5  # not yet
        compact_cli()
        assert len(landed(collector.home)) == sent
    assert "nothing to compact" in compact_cli()
    # a retry of an acknowledged hit (same cache buster) lands nothing new
    httpx.get(
        f"{collector.url}/collect", params={"v": "1", "t": "pageview", "cid": "c", "z": "0-0"}
    )
    assert collector.stop() == 0
    compact_events(Settings(home=collector.home))
    ids = [r["server_timestamp_epoch_ms"] for r in landed(collector.home)]
    assert len(ids) == sent


def test_replay_as_ga4_lands_the_file(collector: CollectorProcess, tmp_path: Path) -> None:
    synthesize(SynthConfig(sessions=40, seed=5), tmp_path / "data")
    path = tmp_path / "data" / "browsing_train.csv"
    sent = read_browsing(path).to_pylist()
    result = CliRunner().invoke(
        app,
        ["replay", str(path), "--url", collector.url, "--as", "ga4", "--rate", "4000"],
        terminal_width=120,
    )
    assert result.exit_code == 0, result.output
    compact_cli()
    expected = Counter(
        (
            ga4_session_id(r["session_id_hash"], r["session_id_hash"]),
            r["event_type"],
            r["product_action"],
            r["product_sku_hash"],
            r["server_timestamp_epoch_ms"],
            None if r["hashed_url"] is None else hash_url(r["hashed_url"]),
        )
        for r in sent
    )
    columns = BROWSING_EVENTS.column_names
    assert Counter(tuple(r[c] for c in columns) for r in landed(collector.home)) == expected

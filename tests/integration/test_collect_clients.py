"""Real clients against a real collector (uvicorn in a child process): Segment's official Python
library, unchanged, and `smallboat replay` in each protocol; what lands is what they sent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import segment.analytics as analytics
from typer.testing import CliRunner

from smallboat.cli import app
from smallboat.collect.compaction import compact_events
from smallboat.collect.events import hash_url
from smallboat.collect.replay import read_browsing
from smallboat.collect.server import CollectorProcess
from smallboat.collect.sessions import session_id_for
from smallboat.config import Settings
from smallboat.data.synth.generate import SynthConfig, synthesize
from smallboat.schema import BROWSING_EVENTS

pytestmark = pytest.mark.slow

WRITE_KEY = "test-write-key"
ENV = {
    "SMALLBOAT_WRITE_KEYS": f"other-key,{WRITE_KEY}",
    "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
    "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    with CollectorProcess(tmp_path / "home", env=ENV, log_path=tmp_path / "collector.log") as c:
        yield c


def landed_after_stop(collector: CollectorProcess) -> list[dict[str, Any]]:
    """Stop the collector, compact its log, and read what landed."""
    assert collector.stop() == 0
    settings = Settings(home=collector.home)
    compact_events(settings)
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    return [
        r for p in sorted(folder.glob("collect-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


@pytest.fixture
def segment_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Exception]]:
    """Segment's module-level client, configured the documented way; yields its errors."""
    errors: list[Exception] = []
    monkeypatch.setattr(analytics, "write_key", WRITE_KEY)
    monkeypatch.setattr(analytics, "on_error", lambda error, batch: errors.append(error))
    monkeypatch.setattr(analytics, "default_client", None)
    yield errors
    analytics.shutdown()


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segments_python_library_works_unchanged(
    collector: CollectorProcess,
    segment_client: list[Exception],
    monkeypatch: pytest.MonkeyPatch,
    gzip: bool,
) -> None:
    monkeypatch.setattr(analytics, "host", collector.url)
    monkeypatch.setattr(analytics, "gzip", gzip)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    later = t0 + timedelta(minutes=45)  # past the 30-minute gap: a new session
    shopper = "anon-42"
    analytics.page(
        anonymous_id=shopper, name="Home", properties={"url": "https://shop.test/"}, timestamp=t0
    )
    analytics.track(
        anonymous_id=shopper,
        event="Product Viewed",
        properties={"product_id": "SKU-1", "price": 19.5},
        timestamp=t0 + timedelta(seconds=5),
    )
    analytics.track(
        anonymous_id=shopper,
        event="Product Added",
        properties={"product_id": "SKU-1"},
        timestamp=t0 + timedelta(seconds=9),
    )
    analytics.track(
        user_id="user-7",
        event="Product Removed",
        properties={"sku": "SKU-9", "session_id": "given-session"},
        timestamp=t0 + timedelta(seconds=11),
    )
    analytics.track(
        anonymous_id=shopper,
        event="Order Completed",
        properties={"order_id": "o-1", "products": [{"product_id": "SKU-1"}, {"sku": "SKU-2"}]},
        timestamp=later,
    )
    analytics.identify(user_id="user-7", traits={"plan": "pro"})
    analytics.track(anonymous_id=shopper, event="Newsletter Signed Up")
    analytics.flush()
    assert segment_client == []
    assert httpx.get(f"{collector.url}/readyz").json()["records"] == 6

    ms = int(t0.timestamp() * 1000)
    first, second = session_id_for(shopper, ms), session_id_for(shopper, ms + 45 * 60_000)
    rows = landed_after_stop(collector)
    got = sorted(
        (
            r["server_timestamp_epoch_ms"] - ms,
            r["session_id_hash"],
            r["event_type"],
            r["product_action"],
            r["product_sku_hash"],
            r["hashed_url"],
        )
        for r in rows
    )
    assert got == [
        (0, first, "pageview", None, None, hash_url("https://shop.test/")),
        (5_000, first, "event_product", "detail", "SKU-1", None),
        (9_000, first, "event_product", "add", "SKU-1", None),
        (11_000, "given-session", "event_product", "remove", "SKU-9", None),
        (45 * 60_000, second, "event_product", "purchase", "SKU-1", None),
        (45 * 60_000, second, "event_product", "purchase", "SKU-2", None),
    ]


def test_segments_library_sees_a_401_for_a_wrong_write_key(
    collector: CollectorProcess, segment_client: list[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics, "host", collector.url)
    monkeypatch.setattr(analytics, "write_key", "not-the-key")
    analytics.track(anonymous_id="a", event="Product Added", properties={"product_id": "P"})
    analytics.flush()
    assert [getattr(e, "status", None) for e in segment_client] == [401]
    assert httpx.get(f"{collector.url}/readyz").json()["records"] == 0


@pytest.fixture(scope="module")
def browsing_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay-data")
    synthesize(SynthConfig(sessions=150, seed=3), out)
    return out / "browsing_train.csv"


def expected_rows(path: Path, *, rehash_url: bool) -> Counter[tuple[Any, ...]]:
    rows = read_browsing(path).to_pylist()
    if rehash_url:
        for r in rows:
            r["hashed_url"] = None if r["hashed_url"] is None else hash_url(r["hashed_url"])
    return Counter(tuple(r[c] for c in BROWSING_EVENTS.column_names) for r in rows)


@pytest.mark.parametrize("protocol", ["ga", "segment", "json", "snowplow"])
def test_replay_lands_the_file_with_its_sessions_and_times(
    collector: CollectorProcess, browsing_file: Path, protocol: str
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "replay",
            str(browsing_file),
            "--format",
            "coveo",
            "--url",
            collector.url,
            "--as",
            protocol,
            "--rate",
            "4000",
            "--write-key",
            WRITE_KEY,
        ],
        terminal_width=120,
    )
    assert result.exit_code == 0, result.output
    expected = expected_rows(browsing_file, rehash_url=protocol != "json")
    total = sum(expected.values())
    assert f"acknowledged {total:,}" in " ".join(result.output.split())
    landed = Counter(
        tuple(r[c] for c in BROWSING_EVENTS.column_names) for r in landed_after_stop(collector)
    )
    assert landed == expected

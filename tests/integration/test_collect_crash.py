"""SIGKILL the collector while clients send, and the compactor while it lands: every
acknowledged event reaches the warehouse exactly once, with its content intact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.parquet as pq
import pytest

from smallboat.collect.compaction import compact_events
from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS
from smallboat.warehouse.transform import run_transform

pytestmark = pytest.mark.slow

BASE_MS = 1_600_000_000_000
BATCH = 10
ACTIONS = ("detail", "add", "remove", "purchase")
ENV = {"SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500", "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0"}


def make_event(i: int) -> dict[str, Any]:
    """Event i: unique by its SKU (or URL for pageviews), so landed rows map back to it."""
    base = {
        "message_id": f"m{i}",
        "session_id_hash": f"session-{i % 37}",
        "server_timestamp_epoch_ms": BASE_MS + i * 1000,
        "hashed_url": f"url-{i:06d}",
    }
    if i % 3 == 0:
        return {**base, "event_type": "pageview"}
    return {
        **base,
        "event_type": "event_product",
        "product_action": ACTIONS[i % 4],
        "product_sku_hash": f"sku-{i:06d}",
    }


def canonical(event: dict[str, Any]) -> dict[str, Any]:
    return {c: event.get(c) for c in BROWSING_EVENTS.column_names}


@dataclass
class Sender:
    """A client thread posting batches of JSON events until the collector stops answering."""

    url: str
    numbers: list[int]
    acked: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> Sender:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for start in range(0, len(self.numbers), BATCH):
                batch = self.numbers[start : start + BATCH]
                try:
                    answer = client.post(f"{self.url}/collect", json=[make_event(i) for i in batch])
                except httpx.TransportError:
                    self.in_flight = batch  # unknown: maybe logged, never acknowledged
                    return
                assert answer.status_code == 200, answer.text
                self.acked.extend(batch)


def send(url: str, numbers: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(numbers), BATCH):
            batch = numbers[start : start + BATCH]
            answer = client.post(f"{url}/collect", json=[make_event(i) for i in batch])
            assert answer.status_code == 200, answer.text


def landed_by_key(settings: Settings) -> Counter[str]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    rows = [r for p in folder.glob("collect-*.parquet") for r in pq.read_table(p).to_pylist()]
    return Counter(r["product_sku_hash"] or r["hashed_url"] for r in rows)


def key_of(i: int) -> str:
    event = make_event(i)
    return str(event.get("product_sku_hash") or event["hashed_url"])


def test_sigkill_while_clients_send_loses_no_acknowledged_event(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    numbers = list(range(40_000))
    collector = CollectorProcess(home, env=ENV, log_path=tmp_path / "collector.log").start()
    senders = [Sender(collector.url, numbers[k::4]).start() for k in range(4)]
    time.sleep(1.0)
    collector.kill()
    for s in senders:
        assert s.thread is not None
        s.thread.join(15)
    acked = [i for s in senders for i in s.acked]
    in_flight = [i for s in senders for i in s.in_flight]
    assert len(acked) > 500, "the clients barely sent anything before the kill"
    assert in_flight, "no request was cut by the kill"

    # The clients retry what was in flight (same message ids), plus one acknowledged batch.
    with CollectorProcess(home, env=ENV, log_path=tmp_path / "collector.log") as again:
        send(again.url, in_flight + acked[:BATCH])
    report = compact_events(settings)
    assert report.duplicates >= BATCH

    landed = landed_by_key(settings)
    assert max(landed.values()) == 1, "an event landed twice"
    expected = {key_of(i) for i in acked + in_flight}
    assert set(landed) == expected, "an acknowledged event is missing, or a stranger landed"

    # Content, as the warehouse sees it: dbt's staging view over the landing files.
    run_transform(settings, select="stg_landing__browsing_events")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        columns = ", ".join(BROWSING_EVENTS.column_names)
        rows = con.sql(f"select {columns} from stg_landing__browsing_events").fetchall()
    assert sorted(rows, key=str) == sorted(
        (tuple(canonical(make_event(i)).values()) for i in acked + in_flight), key=str
    )


@pytest.fixture(scope="module")
def closed_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A collector home whose log holds many small closed segments, with retried batches."""
    root = tmp_path_factory.mktemp("compaction-crash")
    home = root / "home"
    env = {**ENV, "SMALLBOAT_COLLECT_SEGMENT_BYTES": "6000"}
    numbers = list(range(600))
    with CollectorProcess(home, env=env) as collector:
        send(collector.url, numbers)
        send(collector.url, numbers[200:260] + numbers[0:30])  # retries, in later segments
    segments = list((home / "collect" / "log").glob("*.wal"))
    assert len(segments) > 10
    return home, numbers


CRASHING_COMPACTOR = """
import os, signal
from smallboat.collect.compaction import compact_events
from smallboat.config import Settings

seen = []
def hook(step, segment):
    if step == {step!r}:
        seen.append(segment.name)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGKILL)

compact_events(Settings(), hook=hook)
raise SystemExit("the compactor was not killed")
"""


@pytest.mark.parametrize("step", ["read", "landed", "committed", "deleted"])
def test_sigkill_during_compaction_then_again_lands_everything_once(
    closed_log: tuple[Path, list[int]], tmp_path: Path, step: str
) -> None:
    source_home, numbers = closed_log
    home = tmp_path / "home"
    shutil.copytree(source_home, home)
    env = {**os.environ, "SMALLBOAT_HOME": str(home)}
    killed = subprocess.run(
        [sys.executable, "-c", CRASHING_COMPACTOR.format(step=step)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    settings = Settings(home=home)
    partial = landed_by_key(settings)
    assert partial and max(partial.values()) == 1

    compact_events(settings)
    landed = landed_by_key(settings)
    assert max(landed.values()) == 1
    assert set(landed) == {key_of(i) for i in numbers}
    assert not list((home / "collect" / "log").glob("*.wal"))

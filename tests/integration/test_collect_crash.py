"""SIGKILL the collector while clients send, and the compactor while it lands: every
acknowledged event reaches the warehouse exactly once, with its content intact.

The clients of the first test speak every protocol at once (one per client thread, each request
encoded as `smallboat replay --as <protocol>` sends it): canonical JSON, Segment batches,
Snowplow tp2 batches, Universal Analytics and GA4 hits."""

from __future__ import annotations

import base64
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
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smallboat.collect.compaction import compact_events
from smallboat.collect.events import hash_url
from smallboat.collect.ga import ga4_session_id
from smallboat.collect.replay_requests import Protocol, Request, requests_of
from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS
from smallboat.warehouse.transform import run_transform

pytestmark = pytest.mark.slow

BASE_MS = 1_600_000_000_000
BATCH = 10
ACTIONS = ("detail", "add", "remove", "purchase")
ENV = {
    "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
    "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
    "SMALLBOAT_WRITE_KEYS": "crash-key",
}
MIX: tuple[Protocol, ...] = ("json", "segment", "snowplow", "ga", "ga4")
"""The protocols of the clients (client k speaks MIX[k])."""
HEADERS = {
    "json": {"Content-Type": "application/json"},
    "segment": {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(b"crash-key:").decode(),
    },
    "snowplow": {"Content-Type": "application/json"},
    "ga": {},
    "ga4": {},
}


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


def expected_row(i: int, protocol: str) -> dict[str, Any]:
    """Event i as it lands when sent in `protocol`: URLs other than JSON's are hashed, and a
    GA4 session id is derived from the client and session ids."""
    row = canonical(make_event(i))
    if protocol != "json":
        row["hashed_url"] = hash_url(row["hashed_url"])
    if protocol == "ga4":
        session = row["session_id_hash"]
        row["session_id_hash"] = ga4_session_id(session, session)
    return row


def row_key(row: dict[str, Any]) -> str:
    return str(row["product_sku_hash"] or row["hashed_url"])


@dataclass
class Sender:
    """A client thread sending events in one protocol until the collector stops answering."""

    url: str
    protocol: Protocol
    numbers: list[int]
    acked: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    retry: list[tuple[Request, list[int]]] = field(default_factory=list)
    """The cut request and one acknowledged one: what a client sends again after a restart."""
    thread: threading.Thread | None = None

    def start(self) -> Sender:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def requests(self) -> list[tuple[Request, list[int]]]:
        """The protocol's requests (as `smallboat replay` encodes them) and their events."""
        table = pa.Table.from_pylist(
            [canonical(make_event(i)) for i in self.numbers], schema=BROWSING_EVENTS.arrow_schema
        )
        out, start = [], 0
        for request in requests_of(
            table, protocol=self.protocol, run=self.protocol, batch_size=BATCH
        ):
            out.append((request, self.numbers[start : start + request.events]))
            start += request.events
        assert start == len(self.numbers)
        return out

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for request, numbers in self.requests():
                try:
                    answer = exchange(client, self.url, self.protocol, request)
                except httpx.TransportError:
                    self.in_flight = numbers  # unknown: maybe logged, never acknowledged
                    self.retry.insert(0, (request, numbers))
                    return
                assert answer.status_code in (200, 204), answer.text
                if not self.acked:
                    self.retry.append((request, numbers))
                self.acked.extend(numbers)


def exchange(client: httpx.Client, url: str, protocol: str, request: Request) -> httpx.Response:
    return client.request(
        request.method, f"{url}{request.path}", content=request.body, headers=HEADERS[protocol]
    )


def send(url: str, numbers: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        for start in range(0, len(numbers), BATCH):
            batch = numbers[start : start + BATCH]
            answer = client.post(f"{url}/collect", json=[make_event(i) for i in batch])
            assert answer.status_code == 200, answer.text


def landed_by_key(settings: Settings) -> Counter[str]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    rows = [r for p in folder.glob("collect-*.parquet") for r in pq.read_table(p).to_pylist()]
    return Counter(row_key(r) for r in rows)


def key_of(i: int) -> str:
    event = make_event(i)
    return str(event.get("product_sku_hash") or event["hashed_url"])


def test_sigkill_while_clients_send_loses_no_acknowledged_event(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    numbers = list(range(40_000))
    collector = CollectorProcess(home, env=ENV, log_path=tmp_path / "collector.log").start()
    senders = [
        Sender(collector.url, protocol, numbers[k :: len(MIX)]).start()
        for k, protocol in enumerate(MIX)
    ]
    deadline = time.monotonic() + 30
    while not all(s.acked for s in senders) and time.monotonic() < deadline:
        time.sleep(0.05)  # every protocol flowing, then kill mid-traffic
    time.sleep(0.5)
    collector.kill()
    for s in senders:
        assert s.thread is not None
        s.thread.join(15)
    for s in senders:
        assert s.acked, f"the {s.protocol} client sent nothing before the kill"
    assert any(s.in_flight for s in senders), "no request was cut by the kill"

    # The clients retry what was in flight (same message ids), plus one acknowledged request.
    restarted = CollectorProcess(home, env=ENV, log_path=tmp_path / "collector.log")
    with restarted as again, httpx.Client(timeout=10) as client:
        for s in senders:
            for request, _ in s.retry:
                answer = exchange(client, again.url, s.protocol, request)
                assert answer.status_code in (200, 204), answer.text
    report = compact_events(settings)
    assert report.duplicates >= sum(len(s.retry[-1][1]) for s in senders)

    expected_rows = [expected_row(i, s.protocol) for s in senders for i in s.acked + s.in_flight]
    landed = landed_by_key(settings)
    assert max(landed.values()) == 1, "an event landed twice"
    expected = {row_key(r) for r in expected_rows}
    assert set(landed) == expected, "an acknowledged event is missing, or a stranger landed"

    # Content, as the warehouse sees it: dbt's staging view over the landing files.
    run_transform(settings, select="stg_landing__browsing_events")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        columns = ", ".join(BROWSING_EVENTS.column_names)
        rows = con.sql(f"select {columns} from stg_landing__browsing_events").fetchall()
    assert sorted(rows, key=str) == sorted((tuple(r.values()) for r in expected_rows), key=str)


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

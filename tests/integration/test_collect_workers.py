"""`smallboat collect serve --workers 2`: two processes share the port, each writes its own log
slot (`main-w0`, `main-w1`). One worker is SIGKILLed while clients send (uvicorn starts another,
which takes the freed slot); the clients retry a cut request as the trackers' libraries do.
`smallboat collect compact` run while it serves (each worker rolls its active segment on request),
beside another compactor and the workers' own background passes, lands every acknowledged event
exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from smallboat.collect.compaction import compact_events
from smallboat.collect.control import read_control
from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS
from tests.compactors import compact_beside_another

pytestmark = pytest.mark.slow

ENV = {
    "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
    "SMALLBOAT_COLLECT_COMPACT_SECONDS": "1",
}
BATCH = 20
CLIENTS = 6


def event(i: int) -> dict[str, Any]:
    return {
        "message_id": f"m{i}",
        "session_id_hash": f"session-{i % 41}",
        "server_timestamp_epoch_ms": 1_600_000_000_000 + i,
        "event_type": "event_product",
        "product_action": "add",
        "product_sku_hash": f"sku-{i:06d}",
    }


@dataclass
class Client:
    """Sends its events in batches; retries a batch on a connection error or a 5xx (the same
    message ids, as Segment's and RudderStack's libraries do) until it is acknowledged."""

    url: str
    numbers: list[int]
    acked: list[int] = field(default_factory=list)
    retries: int = 0
    thread: threading.Thread | None = None

    def start(self) -> Client:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        client = httpx.Client(timeout=10)  # keep-alive: each connection stays with one worker
        for start in range(0, len(self.numbers), BATCH):
            batch = self.numbers[start : start + BATCH]
            body = [event(i) for i in batch]
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = client.post(f"{self.url}/collect", json=body)
                    if answer.status_code < 500:
                        assert answer.status_code == 200, answer.text
                        break
                except httpx.TransportError:
                    client.close()
                    client = httpx.Client(timeout=10)
                self.retries += 1
                assert time.monotonic() < deadline, "the collector never took the batch again"
                time.sleep(0.05)
            self.acked.extend(batch)
        client.close()


def worker_pids(settings: Settings) -> dict[str, int]:
    found = {}
    for slot in ("main-w0", "main-w1"):
        control = read_control(settings, slot)
        if control is not None:
            found[slot] = control.pid
    return found


def landed(settings: Settings) -> tuple[Counter[str], set[str]]:
    """Landed SKUs (one per event) and the slots whose landing files hold them."""
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    keys: Counter[str] = Counter()
    slots = set()
    for path in folder.glob("collect-*.parquet"):
        rows = pq.read_table(path).to_pylist()
        keys.update(str(r["product_sku_hash"]) for r in rows)
        if rows:
            slots.add(path.name.removeprefix("collect-")[: len("main-wN")])
    return keys, slots


def test_two_workers_lose_nothing_when_one_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    log_path = tmp_path / "collector.log"
    collector = CollectorProcess(home, env=ENV, args=["--workers", "2"], log_path=log_path)
    with collector:
        deadline = time.monotonic() + 30
        while len(worker_pids(settings)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = worker_pids(settings)
        assert len(pids) == 2, f"both workers publish their slot; see {log_path}"
        numbers = list(range(12_000))
        clients = [Client(collector.url, numbers[k::CLIENTS]).start() for k in range(CLIENTS)]
        while sum(len(c.acked) for c in clients) < 3_000:
            time.sleep(0.02)
        os.kill(pids["main-w0"], signal.SIGKILL)  # mid-stream
        for c in clients:
            assert c.thread is not None
            c.thread.join(120)
            assert not c.thread.is_alive()
        acked = sorted(i for c in clients for i in c.acked)
        assert acked == numbers  # every client got every batch acknowledged in the end
        assert sum(c.retries for c in clients) > 0, "the kill cut no request"
        deadline = time.monotonic() + 30  # uvicorn starts a new worker in the freed slot
        while worker_pids(settings)["main-w0"] == pids["main-w0"]:
            assert time.monotonic() < deadline, "no new worker took the freed slot main-w0"
            time.sleep(0.05)
        restarted = worker_pids(settings)["main-w0"]

        # Compactors at once while it serves: the CLI (rolling each worker), one more, and the
        # workers' background passes.
        cli = compact_beside_another(settings)
        assert cli.returncode == 0, cli.stderr
        keys, slots = landed(settings)
        assert keys == Counter(f"sku-{i:06d}" for i in numbers)  # all acknowledged, once each
        assert slots == {"main-w0", "main-w1"}, "both workers took traffic"
        status = subprocess.run(
            [sys.executable, "-m", "smallboat.cli", "collect", "status"],
            env={**os.environ, "SMALLBOAT_HOME": str(home), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert f"replica main-w0: running (pid {restarted}" in status.stdout
        assert f"replica main-w1: running (pid {pids['main-w1']}" in status.stdout
    compact_events(settings)  # the logs closed by the stop: nothing new, nothing twice
    keys, _ = landed(settings)
    assert keys == Counter(f"sku-{i:06d}" for i in numbers)

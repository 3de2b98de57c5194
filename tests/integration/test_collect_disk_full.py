"""A full disk under a running collector: writes fail (503) and readiness says so; once space
returns the collector takes events again WITHOUT a restart; `smallboat collect compact` then
lands every acknowledged event exactly once. The collector's home is a 4 MiB tmpfs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS

pytestmark = pytest.mark.slow

BASE_MS = 1_600_000_000_000
BATCH = 20
ENV = {
    "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
    "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
    "SMALLBOAT_LOG_MIN_FREE_BYTES": str(256 << 10),
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def make_event(i: int) -> dict[str, Any]:
    """Event i, unique by its SKU; a long URL so the disk fills in a few hundred requests."""
    return {
        "message_id": f"m{i}",
        "session_id_hash": f"session-{i % 37}",
        "server_timestamp_epoch_ms": BASE_MS + i * 1000,
        "hashed_url": f"url-{i:06d}-" + "x" * 200,
        "event_type": "event_product",
        "product_action": "detail",
        "product_sku_hash": f"sku-{i:06d}",
    }


def send(client: httpx.Client, url: str, start: int) -> int:
    """Send events start..start+BATCH; the status code."""
    events = [make_event(i) for i in range(start, start + BATCH)]
    return client.post(f"{url}/collect", json=events).status_code


def test_a_full_disk_is_not_ready_then_recovers_and_every_acknowledged_event_lands_once(
    small_disk: Path, tmp_path: Path
) -> None:
    home = small_disk / "home"
    ballast = small_disk / "ballast"
    collector = CollectorProcess(home, env=ENV, log_path=tmp_path / "collector.log").start()
    acked: list[int] = []
    try:
        ballast.write_bytes(b"\1" * (2 << 20))  # the disk fills sooner
        with httpx.Client(timeout=10) as client:
            n, status = 0, 200
            while status == 200:
                status = send(client, collector.url, n)
                if status == 200:
                    acked.extend(range(n, n + BATCH))
                n += BATCH
                assert n < 100_000, "a 4 MiB disk never filled"
            assert status == 503, f"a full disk answered {status}"
            assert acked, "the disk was full before the first event"
            ready = client.get(f"{collector.url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"] == "unavailable"
            assert send(client, collector.url, n) == 503  # still refused
            n += BATCH

            ballast.unlink()  # space returns; no restart
            deadline = time.monotonic() + 15
            while client.get(f"{collector.url}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the collector did not recover"
                time.sleep(0.1)
            for _ in range(5):
                assert send(client, collector.url, n) == 200
                acked.extend(range(n, n + BATCH))
                n += BATCH
        sent = n

        env = {**os.environ, **ENV, "SMALLBOAT_HOME": str(home)}
        compacted = subprocess.run(
            [sys.executable, "-m", "smallboat.cli", "collect", "compact"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert compacted.returncode == 0, compacted.stdout + compacted.stderr
    finally:
        assert collector.stop() == 0

    folder = Settings(home=home).table_landing_dir(BROWSING_EVENTS.name)
    landed = Counter(
        int(row["product_sku_hash"][4:])
        for path in folder.glob("collect-*.parquet")
        for row in pq.read_table(path, columns=["product_sku_hash"]).to_pylist()
    )
    assert max(landed.values()) == 1, "an event landed twice"
    missing = set(acked) - set(landed)
    assert not missing, f"{len(missing)} acknowledged event(s) lost, e.g. {sorted(missing)[:5]}"
    assert set(landed) <= set(range(sent))

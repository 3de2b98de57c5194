"""Four flipped bytes in the middle of a collector's log segment (a bad sector, a bit flip): a
restart does not truncate the segment, `smallboat collect compact` lands every intact event once,
sets the segment aside unchanged and exits 1 naming the file and byte range, and
`smallboat collect status` lists it."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.data.log.segments import SEGMENT_MAGIC
from smallboat.schema import BROWSING_EVENTS

pytestmark = pytest.mark.slow

N = 200
ENV = {"SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500", "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0"}


def make_event(i: int) -> dict[str, Any]:
    return {
        "message_id": f"m{i}",
        "session_id_hash": f"session-{i % 7}",
        "server_timestamp_epoch_ms": 1_600_000_000_000 + i * 1000,
        "hashed_url": f"url-{i:06d}",
        "event_type": "event_product",
        "product_action": "detail",
        "product_sku_hash": f"sku-{i:06d}",
    }


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "SMALLBOAT_HOME": str(home), "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "smallboat.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_flipped_bytes_mid_segment_land_every_intact_event_and_fail_compaction(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with CollectorProcess(home, env=ENV) as collector, httpx.Client(timeout=10) as client:
        for start in range(0, N, 20):
            events = [make_event(i) for i in range(start, start + 20)]
            assert client.post(f"{collector.url}/collect", json=events).status_code == 200
    log_dir = home / "collect" / "log"
    [segment] = [p for p in log_dir.glob("*.wal") if p.stat().st_size > len(SEGMENT_MAGIC)]

    # Frame 100 (parsed here from the format: magic, u32 length, u32 crc, payload).
    data = bytearray(segment.read_bytes())
    pos, bounds = len(SEGMENT_MAGIC), []
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 2)
        bounds.append((pos, pos + 10 + length))
        pos += 10 + length
    assert len(bounds) == N
    start, end = bounds[N // 2]
    lost = json.loads(bytes(data[start + 10 : end]))["message_id"]
    for i in range(start + 20, start + 24):
        data[i] ^= 0xFF
    segment.write_bytes(bytes(data))
    damaged = bytes(data)

    with CollectorProcess(home, env=ENV):  # a restart must not truncate it
        pass
    assert segment.read_bytes() == damaged

    compacted = cli(home, "collect", "compact")
    assert compacted.returncode == 1, compacted.stdout + compacted.stderr
    # The log's own warning lines may precede it; the error itself is one line.
    [error] = [line for line in compacted.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in compacted.stderr
    assert f"log segment {segment.name} is corrupt at bytes {start}-{end}" in error
    assert f"{N - 1} intact record(s) were landed" in error

    quarantined = log_dir / "quarantine" / segment.name
    assert quarantined.read_bytes() == damaged and not segment.exists()
    folder = Settings(home=home).table_landing_dir(BROWSING_EVENTS.name)
    landed = sorted(
        row["product_sku_hash"]
        for path in folder.glob("collect-*.parquet")
        for row in pq.read_table(path).to_pylist()
    )
    lost_sku = f"sku-{int(lost.removeprefix('json:m')):06d}"  # message ids are namespaced
    assert landed == sorted(f"sku-{i:06d}" for i in range(N) if f"sku-{i:06d}" != lost_sku)

    status = cli(home, "collect", "status")
    assert status.returncode == 0, status.stderr
    assert (
        f"quarantined: {quarantined}: corrupt at bytes {start}-{end}; {N - 1} intact record(s) "
        "recovered"
    ) in status.stdout.splitlines()

    again = cli(home, "collect", "compact")  # reported once; nothing lands twice
    assert again.returncode == 0, again.stderr

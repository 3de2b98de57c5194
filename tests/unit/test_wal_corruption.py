"""Corruption is never a torn tail: bad bytes that a valid frame follows are reported, the
segment is set aside whole, and every intact record around them still lands exactly once."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from smallboat.config import Settings
from smallboat.data.log.compact import CompactionSpec, CorruptSegmentError, compact
from smallboat.data.log.predictions import (
    PredictionLog,
    compact_predictions,
    prediction_row,
    quarantined_predictions,
)
from smallboat.data.log.segments import (
    QUARANTINE_DIR,
    SEGMENT_MAGIC,
    list_segments,
    quarantined_segments,
    scan_segment,
)
from smallboat.data.log.wal import WriteAheadLog
from smallboat.schema import BROWSING_EVENTS
from tests.landing_data import browsing_row

N = 200
SPEC = CompactionSpec(
    table=BROWSING_EVENTS,
    to_row=lambda r: {c: r[c] for c in BROWSING_EVENTS.column_names},
    key=lambda r: str(r["id"]),
    prefix="test",
)


def event(n: int) -> dict[str, Any]:
    return {"id": f"e{n:04d}"} | browsing_row(f"s{n % 7}", 1_700_000_000_000 + n, "add", f"k{n}")


def frames(path: Path) -> list[tuple[int, int]]:
    """(start, end) of each frame, parsed here from the format's header (magic, length, crc)."""
    data = path.read_bytes()
    out, pos = [], len(SEGMENT_MAGIC)
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 2)
        out.append((pos, pos + 10 + length))
        pos += 10 + length
    return out


def write_segment(folder: Path, n: int = N) -> Path:
    """A closed log of one segment holding `n` events, one acknowledged write each."""
    with WriteAheadLog.open(folder) as wal:
        for i in range(n):
            wal.write([event(i)])
        segment = wal.active
    assert segment is not None
    return segment.path


def flip(path: Path, at: int, count: int = 4) -> None:
    data = bytearray(path.read_bytes())
    for i in range(at, at + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def landed_ids(settings: Settings) -> list[str]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    return sorted(r["message_id"] for p in folder.glob("test-*.parquet") for r in _rows(p))


def _rows(path: Path) -> list[dict[str, Any]]:
    # The landing row has no id column: the event's sku carries its number.
    return [
        {"message_id": f"e{int(r['product_sku_hash'][1:]):04d}"}
        for r in pq.read_table(path).to_pylist()
    ]


def test_four_flipped_bytes_mid_segment_are_corruption_not_a_torn_tail(
    settings: Settings,
) -> None:
    folder = settings.home_dir / "log"
    path = write_segment(folder)
    start, end = frames(path)[N // 2]
    flip(path, start + 12)  # inside record 100's payload
    damaged = path.read_bytes()

    scan = scan_segment(path)
    assert scan.corrupt == ((start, end),)
    assert scan.torn_bytes == 0
    assert [r["id"] for r in scan.records] == [f"e{i:04d}" for i in range(N) if i != N // 2]

    # Reopening the log (what a collector restart does) must not truncate it.
    with WriteAheadLog.open(folder) as wal:
        assert wal.recovered_bytes == 0
    assert path.read_bytes() == damaged

    with pytest.raises(CorruptSegmentError) as raised:
        compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    message = str(raised.value)
    assert "\n" not in message
    assert path.name in message and f"bytes {start}-{end}" in message
    report = raised.value.report
    assert report.rows_landed == N - 1
    assert landed_ids(settings) == [f"e{i:04d}" for i in range(N) if i != N // 2]

    # Set aside whole and unchanged, never deleted; listed with its byte range.
    moved = folder / QUARANTINE_DIR / path.name
    assert not path.exists() and moved.read_bytes() == damaged
    [listed] = quarantined_segments(folder)
    assert (listed.path, listed.ranges, listed.records) == (moved, ((start, end),), N - 1)

    # The next pass lands nothing again and does not fail: the corruption was reported once.
    again = compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    assert again.rows_landed == 0
    assert landed_ids(settings) == [f"e{i:04d}" for i in range(N) if i != N // 2]


def test_a_changed_payload_that_still_parses_is_caught_by_the_crc_alone(
    settings: Settings,
) -> None:
    """The fixture the escaped bug needed: the JSON stays valid, only the CRC can tell."""
    folder = settings.home_dir / "log"
    path = write_segment(folder, n=5)
    start, end = frames(path)[2]
    data = path.read_bytes()
    payload = data[start + 10 : end]
    assert b'"id":"e0002"' in payload
    changed = payload.replace(b'"id":"e0002"', b'"id":"e0009"')
    json.loads(changed)  # still a valid record: magic, length and JSON all pass
    path.write_bytes(data[: start + 10] + changed + data[end:])

    scan = scan_segment(path)
    assert [r["id"] for r in scan.records] == ["e0000", "e0001", "e0003", "e0004"]
    assert scan.corrupt == ((start, end),)

    with pytest.raises(CorruptSegmentError, match=f"bytes {start}-{end}"):
        compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    assert landed_ids(settings) == ["e0000", "e0001", "e0003", "e0004"]


def test_a_bad_tail_in_a_closed_segment_is_corruption_but_torn_in_the_last(
    settings: Settings,
) -> None:
    folder = settings.home_dir / "log"
    first = write_segment(folder, n=3)
    second = write_segment(folder, n=0)
    assert [s.path for s in list_segments(folder)] == [first, second]
    with first.open("ab") as f:
        f.write(b"\x00" * 100)  # no valid frame follows: a tail, but not in the last segment
    size = first.stat().st_size
    with pytest.raises(CorruptSegmentError, match=f"bytes {size - 100}-{size}"):
        compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    assert landed_ids(settings) == ["e0000", "e0001", "e0002"]
    assert [q.path.name for q in quarantined_segments(folder)] == [first.name]

    # The same tail on the last segment of a log nobody writes: a torn write, not reported.
    third = write_segment(folder, n=2)
    with third.open("ab") as f:
        f.write(b"\x00" * 100)
    report = compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    assert report.rows_landed == 0  # e0000, e0001 landed from the first segment already
    assert not third.exists()
    assert len(quarantined_segments(folder)) == 1


def test_a_corrupt_prediction_log_segment_is_landed_around_and_quarantined(
    settings: Settings,
) -> None:
    log = PredictionLog.open(settings, "host-1", segment_seconds=3600)
    rows = [
        prediction_row(
            request_id=f"r{i}",
            route="/predict",
            replica="host-1",
            session_id=f"s{i}",
            predicted_at_ms=1_700_000_000_000 + i,
            model_version="1",
            probability=0.5,
            latency_ms=1.0,
            summary=None,
        )
        for i in range(30)
    ]
    for row in rows:
        log.record([row])
        log.flush()
    assert log.wal is not None and log.wal.active is not None
    path = log.wal.active.path
    log.close()
    start, end = frames(path)[10]
    flip(path, start + 40)

    with pytest.raises(CorruptSegmentError, match=f"{path.name} is corrupt at bytes {start}-{end}"):
        compact_predictions(settings)
    folder = settings.table_landing_dir("predictions")
    landed = sorted(
        r["request_id"] for p in folder.glob("*.parquet") for r in pq.read_table(p).to_pylist()
    )
    assert landed == sorted(f"r{i}" for i in range(30) if i != 10)
    [listed] = quarantined_predictions(settings)
    assert listed.path.name == path.name and listed.ranges == ((start, end),)

"""Compaction of log segments into landing Parquet: exactly once, whatever step a crash hits."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from smallboat.config import Settings
from smallboat.data.log.compact import CompactionSpec, compact, open_state
from smallboat.data.log.segments import Segment, list_segments
from smallboat.data.log.wal import WriteAheadLog
from smallboat.schema import BROWSING_EVENTS
from tests.landing_data import browsing_row

STEPS = ("read", "landed", "committed", "deleted")


def event(key: str, n: int) -> dict[str, Any]:
    return {"id": key} | browsing_row(f"s{n % 3}", 1_700_000_000_000 + n, "add", f"sku-{key}")


def remember(con: sqlite3.Connection, records: Sequence[Mapping[str, Any]]) -> None:
    con.execute("create table if not exists seen (n integer)")
    con.execute("insert into seen values (?)", (len(records),))


SPEC = CompactionSpec(
    table=BROWSING_EVENTS,
    to_row=lambda r: {c: r[c] for c in BROWSING_EVENTS.column_names},
    key=lambda r: str(r["id"]),
    prefix="test",
    on_commit=remember,
)

# Three segments; keys repeat within segment 1 and across segments (a client retrying).
SEGMENTS: list[list[str]] = [["a", "b", "a", "c"], ["d", "b", "e"], ["e", "f", "d", "g"]]
EXPECTED_KEYS = ["a", "b", "c", "d", "e", "f", "g"]


def write_log(folder: Path) -> list[Segment]:
    with WriteAheadLog.open(folder) as wal:
        n = 0
        for keys in SEGMENTS:
            for key in keys:
                wal.write([event(key, n)])
                n += 1
            wal.roll().result()
    segments = [s for s in list_segments(folder) if s.path.stat().st_size > 8]
    assert len(segments) == 3
    return segments


def landed(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    return {p.name: pq.read_table(p).to_pylist() for p in sorted(folder.glob("test-*.parquet"))}


def landed_keys(settings: Settings) -> list[str]:
    rows = [r for rs in landed(settings).values() for r in rs]
    return sorted(r["product_sku_hash"].removeprefix("sku-") for r in rows)


def test_each_key_lands_once_from_the_first_segment_that_held_it(settings: Settings) -> None:
    folder = settings.home_dir / "log"
    segments = write_log(folder)
    report = compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    assert [s.records for s in report.segments][:3] == [4, 3, 4]
    assert [s.rows_landed for s in report.segments][:3] == [3, 2, 2]
    assert report.duplicates == 4
    assert landed_keys(settings) == EXPECTED_KEYS
    files = landed(settings)
    # d and e land with segment 2 (first seen there), so segment 3 keeps only f and g.
    third = files[f"test-{segments[2].name}.parquet"]
    assert [r["product_sku_hash"] for r in third] == ["sku-f", "sku-g"]
    assert third[0]["server_timestamp_epoch_ms"] == 1_700_000_000_008
    assert not any(s.path.exists() for s in segments)
    again = compact(folder, settings.home_dir / "state.sqlite", SPEC, settings=settings)
    assert again.records == 0
    assert landed_keys(settings) == EXPECTED_KEYS


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("segment_index", [0, 1])
def test_a_crash_at_any_step_is_repaired_by_running_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, segment_index: int
) -> None:
    clean_settings = _home(tmp_path / "clean", monkeypatch)
    write_log(clean_settings.home_dir / "log")
    compact(
        clean_settings.home_dir / "log",
        clean_settings.home_dir / "state.sqlite",
        SPEC,
        settings=clean_settings,
    )
    expected = {name.split("-", 2)[0]: rows for name, rows in landed(clean_settings).items()}
    assert expected

    settings = _home(tmp_path / "crashed", monkeypatch)
    folder, state = settings.home_dir / "log", settings.home_dir / "state.sqlite"
    segments = write_log(folder)

    def crash(at: str, segment: Segment) -> None:
        if at == step and segment == segments[segment_index]:
            raise Crash(f"crash after {at} of {segment.name}")

    with pytest.raises(Crash):
        compact(folder, state, SPEC, settings=settings, hook=crash)
    compact(folder, state, SPEC, settings=settings)

    assert landed_keys(settings) == EXPECTED_KEYS
    rows_by_position = [rows for _, rows in sorted(landed(settings).items())]
    assert rows_by_position == [rows for _, rows in sorted(landed(clean_settings).items())]
    assert not any(s.path.exists() for s in segments)
    with closing(open_state(state)) as con:
        # the three segments and the empty one the log closed with, each done once
        assert con.execute("select count(*), sum(records) from segments").fetchone() == (4, 11)
        # on_commit ran once per segment, in the transaction that marked it done
        assert con.execute("select count(*), sum(n) from seen").fetchone() == (4, 7)


def test_keys_past_the_dedup_window_are_forgotten(settings: Settings) -> None:
    folder, state = settings.home_dir / "log", settings.home_dir / "state.sqlite"
    spec = CompactionSpec(
        table=SPEC.table, to_row=SPEC.to_row, key=SPEC.key, prefix="test", dedup_days=0.0
    )
    with WriteAheadLog.open(folder) as wal:
        wal.write([event("a", 0)])
    compact(folder, state, spec, settings=settings)
    with closing(open_state(state)) as con:
        assert con.execute("select count(*) from messages").fetchone() == (1,)
    time.sleep(0.01)  # the second segment is compacted strictly later than the first
    with WriteAheadLog.open(folder) as wal:
        wal.write([event("b", 1)])
    compact(folder, state, spec, settings=settings)
    with closing(open_state(state)) as con:
        # a's key was pruned when b's segment committed (window 0 days); b's is pruned next time
        assert [k for (k,) in con.execute("select message_id from messages")] == ["b"]


def _home(root: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SMALLBOAT_HOME", str(root))
    s = Settings()
    s.ensure_home()
    return s

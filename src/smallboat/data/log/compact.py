"""Compaction: closed write-ahead-log segments become landing Parquet, each record exactly once.

For each closed segment, oldest first, under the log's compaction lock:

1. read the segment's records (closed segments never change, so every read gives the same list);
2. drop records whose key (a message id) was landed by ANOTHER segment, according to the state
   database, and repeats of a key within the segment (the first one stays);
3. land the rest as `landing/<table>/<prefix>-<segment name>.parquet` with `land_batches`:
   atomic, and replacing a file of that name, so landing twice leaves one file;
4. in one SQLite transaction: record the kept keys with the segment, mark the segment done (and
   let the caller record its own state, `on_commit`);
5. delete the segment file.

A corrupt segment (`smallboat.data.log.segments`: bad bytes that a valid frame follows, or a bad
tail anywhere but in the last segment of a log whose writer is not running) goes through steps
1-4 with every valid frame it holds, before and after the bad bytes; step 5 moves it, unchanged,
to the log's `quarantine/` folder instead of deleting it. The pass compacts the other segments as
usual and then raises CorruptSegmentError naming each file and its byte ranges, so a command
that compacts exits non-zero.

A crash anywhere is repaired by running compaction again. Before step 4 the segment is not done
and no key of it is recorded, so the retry computes its rows again and replaces the same file:
the same rows, or fewer when another log sharing the state (a replica's) committed one of its
keys in between, and then the replaced file no longer holds that key. After step 4 the retry
only finishes step 5. Nothing is landed twice and nothing acknowledged is skipped.

Several logs may share one state database (the collector's replicas, each with its own log, so a
retried event that two replicas acknowledged lands once): step 2 then checks every log's landed
keys, and passes hold the state's lock, so two compactors never both land the same key.

Keys are kept for `dedup_days` after their segment was compacted: a retry arriving later than
that lands again.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from smallboat.config import Settings
from smallboat.data.land.atomic import land_batches
from smallboat.data.log.segments import (
    QuarantinedSegment,
    Segment,
    SegmentScan,
    closed_segments,
    compaction_lock,
    describe_ranges,
    list_segments,
    quarantine_segment,
    scan_segment,
    state_lock,
    writer_is_live,
)
from smallboat.durable import fsync_dir
from smallboat.errors import DataError
from smallboat.schema import Table

log = logging.getLogger(__name__)

Record = Mapping[str, Any]
Hook = Callable[[str, Segment], None]
"""Called after each step of a segment ('read', 'landed', 'committed', then 'deleted' or
'quarantined'): tests use it to crash the compactor at a given point."""

_SCHEMA = """
create table if not exists segments (
    name text primary key,
    records integer not null,
    rows_landed integer not null,
    duplicates integer not null,
    landed_file text,
    compacted_at_ms integer not null,
    keys_pruned integer not null default 0
);
create table if not exists messages (
    message_id text primary key,
    segment text not null
);
create index if not exists messages_by_segment on messages (segment);
"""


@dataclass(frozen=True)
class CompactionSpec:
    """How a log's records become rows of a landing table.

    `to_row` maps a record to the table's columns; `key` gives the record's deduplication key;
    landing files are named `<prefix>-<segment name>`. `on_commit(con, records)` runs inside the
    transaction that marks a segment done, with the records that were landed, for state that must
    change exactly when the segment is done.
    """

    table: Table
    to_row: Callable[[Record], Mapping[str, Any]]
    key: Callable[[Record], str]
    prefix: str
    on_commit: Callable[[sqlite3.Connection, Sequence[Record]], None] | None = None
    dedup_days: float = 7.0
    namespace: str = ""
    """Put before a segment's name in the state database: several logs (replicas) sharing one
    state name their segments apart (`a/<segment>`); empty for a log with a state of its own."""

    def state_name(self, segment: Segment) -> str:
        """The segment's name in the state database."""
        return f"{self.namespace}{segment.name}"


@dataclass
class SegmentResult:
    segment: str
    records: int
    rows_landed: int
    duplicates: int
    landed_file: Path | None


@dataclass
class CompactionReport:
    """What one compaction pass did."""

    segments: list[SegmentResult] = field(default_factory=list)
    seconds: float = 0.0
    writer_live: bool = False
    """Whether a writer held the log: its active segment was left for a later pass."""
    rolled: bool = False
    """Whether the running writer closed its active segment on request before this pass, so
    everything it had acknowledged was compacted."""
    quarantined: list[QuarantinedSegment] = field(default_factory=list)
    """Corrupt segments this pass compacted (their valid frames) and set aside."""

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)

    @property
    def rows_landed(self) -> int:
        return sum(s.rows_landed for s in self.segments)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.segments)

    def render(self) -> str:
        if self.rolled:
            live = " (the running collector closed its active segment first)"
        elif self.writer_live:
            live = " (its writer is running: the active segment lands once it rolls)"
        else:
            live = ""
        if not self.segments:
            return f"nothing to compact: no closed log segments{live}"
        quarantined = (
            f", {len(self.quarantined)} corrupt segment(s) quarantined" if self.quarantined else ""
        )
        return (
            f"compacted {len(self.segments)} segment(s): {self.records:,} records, "
            f"{self.rows_landed:,} rows landed, {self.duplicates:,} duplicate(s) dropped"
            f"{quarantined}, in {self.seconds:.2f} s{live}"
        )


class CorruptSegmentError(DataError):
    """A compaction pass found corrupt segments: it landed their valid frames and quarantined
    them; `report` is the whole pass (the other segments were compacted as usual)."""

    def __init__(self, report: CompactionReport) -> None:
        self.report = report
        first = report.quarantined[0]
        more = len(report.quarantined) - 1
        others = f" (and {more} more corrupt segment(s))" if more else ""
        super().__init__(
            f"log segment {first.path.name} is corrupt at {describe_ranges(first.ranges)}: its "
            f"{first.records:,} intact record(s) were landed and the file was moved, unchanged, "
            f"to {first.path}{others}; inspect it (the rest of the log was compacted), then "
            "delete it from the quarantine"
        )


def open_state(path: Path) -> sqlite3.Connection:
    """The compaction state database (created on first use); commits are fsync'd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    con.execute("pragma journal_mode = wal")
    con.execute("pragma synchronous = full")
    con.executescript(_SCHEMA)
    return con


@contextmanager
def _transaction(con: sqlite3.Connection, begin: str = "begin immediate") -> Iterator[None]:
    con.execute(begin)
    try:
        yield
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def done_segments(con: sqlite3.Connection) -> set[str]:
    return {name for (name,) in con.execute("select name from segments")}


def compact(
    log_dir: Path,
    state_path: Path,
    spec: CompactionSpec,
    *,
    settings: Settings,
    segments: Sequence[Segment] | None = None,
    hook: Hook | None = None,
) -> CompactionReport:
    """Compact the closed segments of `log_dir` (or the given ones) into landing Parquet.

    Safe to call from several processes and threads at once, also for several logs sharing
    one state database (the collector's replicas): a pass holds the state's lock
    (`segments.state_lock`), so a key two logs hold is checked and recorded by one pass at a
    time, and the log's compaction lock, so a state rebuild never reads a half-deleted log.
    """
    started = time.perf_counter()
    report = CompactionReport()
    with (
        state_lock(state_path),
        compaction_lock(log_dir),
        closing(open_state(state_path)) as con,
    ):
        report.writer_live = writer_is_live(log_dir)
        todo = sorted(closed_segments(log_dir) if segments is None else segments)
        listing = list_segments(log_dir)
        # Only the last segment of a log nobody writes can end in a torn write.
        may_be_torn = None if report.writer_live or not listing else listing[-1].name
        done = done_segments(con)
        for segment in todo:
            if not segment.path.exists():
                continue  # compacted and deleted (or quarantined) by an earlier pass
            if spec.state_name(segment) in done:
                # A pass that crashed between commit and delete (or quarantine).
                scan = scan_segment(segment.path)
                bad = scan.bad_ranges(tail_is_torn=segment.name == may_be_torn)
                _finish(segment, scan, bad, report, hook)
                continue
            report.segments.append(
                _compact_segment(
                    segment, con, spec, settings, hook, report, segment.name == may_be_torn
                )
            )
    report.seconds = time.perf_counter() - started
    if report.quarantined:
        raise CorruptSegmentError(report)
    return report


def _compact_segment(
    segment: Segment,
    con: sqlite3.Connection,
    spec: CompactionSpec,
    settings: Settings,
    hook: Hook | None,
    report: CompactionReport,
    tail_is_torn: bool,
) -> SegmentResult:
    scan = scan_segment(segment.path)
    bad = scan.bad_ranges(tail_is_torn=tail_is_torn)
    if bad:
        log.error(
            "%s is corrupt at %s: landing its %d intact records, then quarantining it",
            segment.path,
            describe_ranges(bad),
            len(scan.records),
        )
    elif scan.torn_bytes:
        log.warning(
            "%s: ignoring a torn tail of %d bytes (never acknowledged)",
            segment.path,
            scan.torn_bytes,
        )
    _step(hook, "read", segment)
    keys = [spec.key(r) for r in scan.records]
    name = spec.state_name(segment)
    landed_elsewhere = _keys_of_other_segments(con, set(keys), name)
    kept: list[Record] = []
    kept_keys: list[str] = []
    seen: set[str] = set()
    for key, record in zip(keys, scan.records, strict=True):
        if key in landed_elsewhere or key in seen:
            continue
        seen.add(key)
        kept.append(record)
        kept_keys.append(key)
    path: Path | None = None
    if kept:
        rows = [spec.to_row(r) for r in kept]
        batch = pa.RecordBatch.from_pylist(rows, schema=spec.table.arrow_schema)
        path = land_batches(
            spec.table, [batch], settings=settings, name=f"{spec.prefix}-{segment.name}"
        )
    _step(hook, "landed", segment)
    now_ms = int(time.time() * 1000)
    with _transaction(con):
        con.executemany(
            "insert or ignore into messages (message_id, segment) values (?, ?)",
            ((k, name) for k in kept_keys),
        )
        con.execute(
            "insert into segments values (?, ?, ?, ?, ?, ?, 0)",
            (
                name,
                len(scan.records),
                len(kept),
                len(scan.records) - len(kept),
                None if path is None else path.name,
                now_ms,
            ),
        )
        _prune(con, now_ms - int(spec.dedup_days * 86_400_000))
        if spec.on_commit is not None:
            spec.on_commit(con, kept)
    _step(hook, "committed", segment)
    _finish(segment, scan, bad, report, hook)
    log.info(
        "compacted %s: %d records, %d landed, %d duplicates",
        segment.name,
        len(scan.records),
        len(kept),
        len(scan.records) - len(kept),
    )
    return SegmentResult(name, len(scan.records), len(kept), len(scan.records) - len(kept), path)


def _keys_of_other_segments(con: sqlite3.Connection, keys: set[str], segment: str) -> set[str]:
    """The keys among `keys` that the state records for a segment other than `segment`."""
    if not keys:
        return set()
    # One transaction for the temporary rows: in autocommit mode each insert was a transaction
    # of its own (3.2 s of the 9 s a 100,000-record segment took). It writes only the temp
    # database and reads `messages`; the segment's own transaction comes after.
    with _transaction(con, "begin"):
        con.execute("create temp table if not exists candidate_keys (k text primary key)")
        con.execute("delete from candidate_keys")
        con.executemany("insert into candidate_keys values (?)", ((k,) for k in keys))
        rows = con.execute(
            "select m.message_id from messages as m join candidate_keys as c "
            "on m.message_id = c.k where m.segment <> ?",
            (segment,),
        )
        return {k for (k,) in rows}


def _prune(con: sqlite3.Connection, before_ms: int) -> None:
    """Forget the keys of segments compacted before `before_ms` (past the dedup window)."""
    expired = con.execute(
        "select name from segments where keys_pruned = 0 and compacted_at_ms < ?", (before_ms,)
    ).fetchall()
    con.executemany("delete from messages where segment = ?", expired)
    con.executemany("update segments set keys_pruned = 1 where name = ?", expired)


def _finish(
    segment: Segment,
    scan: SegmentScan,
    bad: list[tuple[int, int]],
    report: CompactionReport,
    hook: Hook | None,
) -> None:
    """Delete a compacted segment, or set it aside when it is corrupt."""
    if not bad:
        _delete(segment, hook)
        return
    report.quarantined.append(quarantine_segment(segment, bad, len(scan.records)))
    _step(hook, "quarantined", segment)


def _delete(segment: Segment, hook: Hook | None) -> None:
    segment.path.unlink(missing_ok=True)
    fsync_dir(segment.path.parent)
    _step(hook, "deleted", segment)


def _step(hook: Hook | None, step: str, segment: Segment) -> None:
    if hook is not None:
        hook(step, segment)


def compact_each(passes: Iterable[Callable[[], CompactionReport]]) -> CompactionReport:
    """Run several logs' compaction passes (one per replica) into one report. A corrupt segment
    in one log does not stop the others: they are compacted all the same, then the
    CorruptSegmentError of the whole lot is raised."""
    total = CompactionReport()
    for run in passes:
        try:
            report = run()
        except CorruptSegmentError as exc:
            report = exc.report
        total.segments.extend(report.segments)
        total.quarantined.extend(report.quarantined)
        total.seconds += report.seconds
        total.writer_live = total.writer_live or report.writer_live
    if total.quarantined:
        raise CorruptSegmentError(total)
    return total

"""The prediction log: every answer of the prediction service, durable, landed like events.

Each serving process (a "replica", named host-port) owns one write-ahead log under
`<home>/predictions/<replica>/log`. `PredictionLog.record` buffers rows and returns at once; a
flusher thread writes the buffer to the log (one fsync) ten times a second. The request never
waits for a disk, and a log that is failing, or that is behind by more than `max_pending` rows,
drops rows and counts them instead of slowing or failing a prediction. `compact_predictions`
lands every replica's closed segments as
`landing/predictions/predictions-<replica>-<segment>.parquet` (the generic protocol of
`smallboat.data.log.compact`: exactly once, crash-safe), where dbt reads them. A corrupt segment
is landed as far as it is intact, set aside in its log's `quarantine/` and reported: the pass
compacts every replica, then raises CorruptSegmentError.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.data.log.compact import (
    CompactionReport,
    CompactionSpec,
    compact,
    compact_each,
)
from smallboat.data.log.segments import QuarantinedSegment, quarantined_segments
from smallboat.data.log.wal import WriteAheadLog
from smallboat.errors import SmallboatError
from smallboat.schema import PREDICTIONS

log = logging.getLogger(__name__)

LANDING_PREFIX = "predictions"
_ENCODE_CHUNK = 16
"""Rows JSON-encoded per log append by the flusher (about 0.2 ms of GIL each)."""
_COLUMNS = PREDICTIONS.column_names


def predictions_dir(settings: Settings) -> Path:
    """One folder per serving replica, each with its `log/` and compaction `state.sqlite`."""
    return settings.home_dir / "predictions"


def _replica_dir(settings: Settings, replica: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in replica)
    return predictions_dir(settings) / safe


def new_prediction_id() -> str:
    return uuid.uuid4().hex


_EMPTY_SUMMARY: dict[str, Any] = {
    "n_events": 0,
    "n_pageview": 0,
    "n_detail": 0,
    "n_add": 0,
    "n_remove": 0,
    "duration_s": 0.0,
    "events_after_add": None,
    "event_time_ms": None,
    "events_used": 0,
    "oov_skus": 0,
    "sku_events": 0,
    "last_price": "unknown",
    "last_category": "unknown",
}


def prediction_row(
    *,
    request_id: str,
    route: str,
    replica: str,
    session_id: str | None,
    predicted_at_ms: int,
    model_version: str,
    probability: float | None,
    latency_ms: float,
    summary: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One log row: who asked, which model answered what, how fast, and the prefix's summary
    (`features.summary`; None for a session with nothing to predict from)."""
    return {
        "prediction_id": new_prediction_id(),
        "request_id": request_id,
        "route": route,
        "replica": replica,
        "session_id_hash": session_id,
        "predicted_at_ms": predicted_at_ms,
        "model_version": model_version,
        "purchase_probability": probability,
        "latency_ms": latency_ms,
        **{
            name: (summary or _EMPTY_SUMMARY).get(name, _EMPTY_SUMMARY[name])
            for name in _EMPTY_SUMMARY
        },
    }


def _to_row(record: Mapping[str, Any]) -> dict[str, Any]:
    return {name: record.get(name) for name in _COLUMNS}


def _key(record: Mapping[str, Any]) -> str:
    key = record["prediction_id"]
    assert isinstance(key, str), f"prediction record without an id: {record!r}"
    return key


def _compaction_spec(replica_dir: Path) -> CompactionSpec:
    return CompactionSpec(
        table=PREDICTIONS,
        to_row=_to_row,
        key=_key,
        prefix=f"{LANDING_PREFIX}-{replica_dir.name}",
        dedup_days=1.0,
    )


class PredictionLog:
    """The writing end of one replica's prediction log (see the module docstring).

    `record` appends to an in-memory buffer (a lock and a list append: microseconds, on the
    request's thread); a flusher thread hands the buffer to the write-ahead log every
    `flush_seconds` and waits for its fsync. The event loop never encodes JSON and never waits
    for a disk, and the log costs one fsync per flush instead of one per request (measured with
    bench/serve.py: one fsync per request added 0.34 ms to p50 at 300 requests/s). What a crash
    can lose is the buffer: at most `flush_seconds` of predictions; `close` flushes.
    """

    def __init__(
        self,
        wal: WriteAheadLog | None,
        replica: str,
        *,
        max_pending: int,
        flush_seconds: float = 0.1,
    ) -> None:
        self.wal = wal
        self.replica = replica
        self.max_pending = max_pending
        self.flush_seconds = flush_seconds
        self.written = 0
        self.dropped = 0
        self._buffer: list[Mapping[str, Any]] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if wal is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"prediction-log-{replica}", daemon=True
            )
            self._flusher.start()

    @classmethod
    def open(
        cls,
        settings: Settings,
        replica: str,
        *,
        segment_seconds: float = 10.0,
        max_pending: int = 100_000,
        flush_seconds: float = 0.1,
    ) -> PredictionLog:
        """Open the replica's log; when it cannot be opened (another live process holds it, an
        unwritable home), predictions are served all the same and the log counts them dropped."""
        folder = _replica_dir(settings, replica) / "log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            wal = WriteAheadLog.open(folder, segment_seconds=segment_seconds)
        except (OSError, SmallboatError) as exc:
            log.error("the prediction log at %s is off: %s", folder, exc)
            return cls(None, replica, max_pending=max_pending)
        return cls(wal, replica, max_pending=max_pending, flush_seconds=flush_seconds)

    @property
    def enabled(self) -> bool:
        return self.wal is not None

    def readiness_problem(self, min_free_bytes: int) -> str | None:
        """Why the log cannot take rows now (its write-ahead log failed and has not recovered
        yet, or its disk has fewer than `min_free_bytes` free); None when it can, or when it is
        off (then every row is counted as dropped, by design)."""
        wal = self.wal
        if wal is None:
            return None
        problem = wal.readiness_problem(min_free_bytes)
        return None if problem is None else str(problem)

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Buffer rows for the log; never blocks on the disk and never raises."""
        if not rows:
            return
        with self._lock:
            pending = len(self._buffer) + self._in_flight
            if self.wal is None or pending + len(rows) > self.max_pending:
                self.dropped += len(rows)
                return
            self._buffer.extend(rows)

    def flush(self) -> None:
        """Write what is buffered and wait for it to be on disk (or counted as dropped)."""
        with self._lock:
            rows, self._buffer = self._buffer, []
            self._in_flight += len(rows)
        if not rows:
            return
        ok = False
        try:
            assert self.wal is not None
            # Encoded in small appends with a GIL release between them, so a burst of rows
            # never holds the event loop for more than ~0.2 ms; the log's writer still commits
            # the appends pending together with one fsync.
            pending = []
            for start in range(0, len(rows), _ENCODE_CHUNK):
                pending.append(self.wal.append(rows[start : start + _ENCODE_CHUNK]))
                time.sleep(0)
            for future in pending:
                future.result()
            ok = True
        except Exception as exc:  # a failed disk or a row that is not JSON: counted, not raised
            log.error("prediction log write of %d rows failed: %s", len(rows), exc)
        with self._lock:
            self._in_flight -= len(rows)
            if ok:
                self.written += len(rows)
            else:
                self.dropped += len(rows)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def close(self) -> None:
        """Stop the flusher, write what is left, close the log."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self.wal is not None:
            self.flush()
            self.wal.close()
            self.wal = None


def compact_predictions(settings: Settings) -> CompactionReport:
    """Land the closed segments of every replica's prediction log (of all of them when no
    service is running); one report for the lot."""
    root = predictions_dir(settings)
    if not root.is_dir():
        return CompactionReport()
    return compact_each(
        partial(
            compact,
            replica_dir / "log",
            replica_dir / "state.sqlite",
            _compaction_spec(replica_dir),
            settings=settings,
        )
        for replica_dir in sorted(p for p in root.iterdir() if (p / "log").is_dir())
    )


def quarantined_predictions(settings: Settings) -> list[QuarantinedSegment]:
    """The corrupt prediction-log segments set aside, every replica's."""
    root = predictions_dir(settings)
    if not root.is_dir():
        return []
    return [
        q
        for replica_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for q in quarantined_segments(replica_dir / "log")
    ]

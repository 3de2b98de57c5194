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
from smallboat.data.log.wal import WriteAheadLog, frame
from smallboat.errors import SmallboatError
from smallboat.schema import PREDICTIONS

log = logging.getLogger(__name__)

LANDING_PREFIX = "predictions"
_ENCODE_CHUNK = 16
"""Most rows `record` encodes on the caller's thread; the flusher releases the GIL after
encoding as many of a longer batch's."""
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


def _encoded(rows: Sequence[Mapping[str, Any]]) -> tuple[list[bytes], int]:
    """The frames of the rows that are JSON, and how many were not (logged, not raised)."""
    frames = []
    for row in rows:
        try:
            frames.append(frame(row))
        except (TypeError, ValueError) as exc:
            log.error("a prediction log row is not JSON, dropped: %s", exc)
    return frames, len(rows) - len(frames)


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

    `record` encodes a request's rows and appends them to an in-memory buffer (a few
    microseconds a row, on the request's thread); a flusher thread hands the buffer to the
    write-ahead log every `flush_seconds` and waits for its fsync. The event loop never waits
    for a disk, and the log costs one fsync per flush instead of one per request (measured with
    bench/serve.py: one fsync per request added 0.34 ms to p50 at 300 requests/s). Encoding on
    the request's thread rather than the flusher's keeps the flusher off the GIL: a flusher
    encoding 100 rows every 0.1 s took the GIL from the loop often enough to show in p99 at one
    client. What a crash can lose is the buffer: at most `flush_seconds` of predictions;
    `close` flushes.
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
        self._buffer: list[bytes | Mapping[str, Any]] = []  # frames, or rows to encode
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
        """Buffer rows for the log; never blocks on the disk and never raises. Up to
        `_ENCODE_CHUNK` rows (a request's answers) are encoded here, on the caller's thread
        (~3 us a row), so the flusher holds the GIL for next to nothing while the event loop
        serves; a longer batch's rows are left for the flusher to encode."""
        if not rows:
            return
        entries: Sequence[bytes | Mapping[str, Any]] = rows
        if len(rows) <= _ENCODE_CHUNK and self.wal is not None:
            entries, refused = _encoded(rows)
            if refused:
                with self._lock:
                    self.dropped += refused
        with self._lock:
            pending = len(self._buffer) + self._in_flight
            if self.wal is None or pending + len(entries) > self.max_pending:
                self.dropped += len(entries)
                return
            self._buffer.extend(entries)

    def flush(self) -> None:
        """Write what is buffered and wait for it to be on disk (or counted as dropped)."""
        with self._lock:
            entries, self._buffer = self._buffer, []
            self._in_flight += len(entries)
        if not entries:
            return
        ok = False
        frames: list[bytes] = []
        try:
            assert self.wal is not None
            encoded = 0
            for entry in entries:
                if isinstance(entry, bytes):
                    frames.append(entry)
                    continue
                # A long batch's rows: a GIL release every few rows, so encoding a burst
                # never holds the event loop for more than ~0.1 ms at a time.
                chunk, _ = _encoded([entry])
                frames += chunk
                encoded += 1
                if encoded % _ENCODE_CHUNK == 0:
                    time.sleep(0)
            if frames:
                self.wal.append_frames(b"".join(frames), len(frames)).result()
            ok = True
        except Exception as exc:  # a failed disk: counted, not raised
            log.error("prediction log write of %d rows failed: %s", len(frames), exc)
        with self._lock:
            self._in_flight -= len(entries)
            self.dropped += len(entries) - len(frames)  # rows that were not JSON
            if ok:
                self.written += len(frames)
            else:
                self.dropped += len(frames)

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

"""The prediction log: every answer of the prediction service, durable, landed like events.

Each serving process (a "replica", named host-port) owns one write-ahead log under
`<home>/predictions/<replica>/log`. `PredictionLog.record` hands rows to the log's writer thread
and returns at once: the request never waits for a disk, and a log that is failing, or that is
behind by more than `max_pending` rows, drops rows and counts them instead of slowing or failing a
prediction. `compact_predictions` lands every replica's closed segments as
`landing/predictions/predictions-<replica>-<segment>.parquet` (the generic protocol of
`smallboat.data.compact`: exactly once, crash-safe), where dbt reads them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.data.compact import CompactionReport, CompactionSpec, compact
from smallboat.data.wal import WriteAheadLog
from smallboat.errors import SmallboatError
from smallboat.schema import PREDICTIONS

log = logging.getLogger(__name__)

LANDING_PREFIX = "predictions"
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
    """The writing end of one replica's prediction log (see the module docstring)."""

    def __init__(self, wal: WriteAheadLog | None, replica: str, *, max_pending: int) -> None:
        self.wal = wal
        self.replica = replica
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self._pending = 0
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        settings: Settings,
        replica: str,
        *,
        segment_seconds: float = 10.0,
        max_pending: int = 100_000,
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
        return cls(wal, replica, max_pending=max_pending)

    @property
    def enabled(self) -> bool:
        return self.wal is not None

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue rows for the log; never blocks on the disk and never raises."""
        if not rows:
            return
        with self._lock:
            if self.wal is None or self._pending + len(rows) > self.max_pending:
                self.dropped += len(rows)
                return
            self._pending += len(rows)
        try:
            future = self.wal.append(rows)
        except Exception:  # a row that is not JSON: a bug, but never the caller's failure
            log.exception("a prediction log row could not be encoded")
            self._settle(len(rows), ok=False)
            return
        n = len(rows)

        def settle(done: Future[int]) -> None:
            self._settle(n, ok=_succeeded(done))

        future.add_done_callback(settle)

    def _settle(self, n: int, *, ok: bool) -> None:
        with self._lock:
            self._pending -= n
            if ok:
                self.written += n
            else:
                self.dropped += n

    def close(self) -> None:
        if self.wal is not None:
            self.wal.close()
            self.wal = None


def _succeeded(future: Future[int]) -> bool:
    exc = future.exception()
    if exc is not None:
        log.error("prediction log write failed: %s", exc)
        return False
    return True


def compact_predictions(settings: Settings) -> CompactionReport:
    """Land the closed segments of every replica's prediction log (of all of them when no
    service is running); one report for the lot."""
    total = CompactionReport()
    root = predictions_dir(settings)
    if not root.is_dir():
        return total
    for replica_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        log_dir = replica_dir / "log"
        if not log_dir.is_dir():
            continue
        report = compact(
            log_dir,
            replica_dir / "state.sqlite",
            _compaction_spec(replica_dir),
            settings=settings,
        )
        total.segments.extend(report.segments)
        total.seconds += report.seconds
        total.writer_live = total.writer_live or report.writer_live
    return total

"""The collector's write path: resolve sessions, append to the write-ahead log, compact.

`EventStore.open` takes the writer lock of its replica's log (SMALLBOAT_COLLECT_REPLICA), rebuilds
the session tracker from what the log and the compaction state remember, and starts a background
process that compacts the closed segments of every replica's log every `collect_compact_seconds`
(`collect.compactor`: a process of its own, at a lower priority, so a pass neither holds the
request path's GIL nor takes its CPU).
`log(hits)` returns once the hits are fsync'd: the HTTP handlers answer 2xx only after it
returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import closing

from smallboat.collect.compaction import log_dir, state_path
from smallboat.collect.compactor import BackgroundCompactor
from smallboat.collect.events import EventRecord, Hit, TimePolicy, now_ms
from smallboat.collect.models import Ready
from smallboat.collect.sessions import SessionTracker, load_clients
from smallboat.config import Settings
from smallboat.data.log.compact import open_state
from smallboat.data.log.segments import compaction_lock, scan_segment
from smallboat.data.log.wal import WriteAheadLog

log = logging.getLogger(__name__)

COMPACTOR_CHECK_SECONDS = 5.0
"""How often the request path looks whether the background compactor is still alive (a
`waitpid` without waiting; `ready` looks every time)."""


class EventStore:
    """The open collector state of one SMALLBOAT_HOME (one per process; see `open`)."""

    def __init__(self, settings: Settings, wal: WriteAheadLog, tracker: SessionTracker) -> None:
        self.settings = settings
        self.wal = wal
        self.tracker = tracker
        self.time_policy = TimePolicy.from_days(settings.collect_max_event_age_days)
        self.compactor: BackgroundCompactor | None = None
        self.compactor_restarts = 0
        self._compactor_checked = time.monotonic()

    @classmethod
    def open(cls, settings: Settings, *, background_compaction: bool = True) -> EventStore:
        """Open the log for writing and rebuild session state; raises SmallboatError when another
        collector holds the log."""
        settings.ensure_home()
        wal = WriteAheadLog.open(
            log_dir(settings),
            segment_bytes=settings.collect_segment_bytes,
            segment_seconds=settings.collect_segment_seconds,
        )
        try:
            tracker = _rebuild_tracker(settings, wal)
        except BaseException:
            wal.close()
            raise
        store = cls(settings, wal, tracker)
        if background_compaction and settings.collect_compact_seconds > 0:
            try:
                store.compactor = BackgroundCompactor.start(settings)
            except BaseException:
                wal.close()
                raise
        return store

    def resolve(self, hits: Sequence[Hit], received_ms: int) -> list[EventRecord]:
        """The log records of `hits`: each gets its session (the client's, or a derived one).
        (A dict display and the hit unpacked, not `EventRecord(...)` and attribute reads: a
        third of the cost, on every logged row.)"""
        assign = self.tracker.assign
        records: list[EventRecord] = []
        for message_id, event_type, action, sku, ts, url, session, client, source in hits:
            start: int | None = None
            if session is None:
                assert client is not None, f"hit {message_id} has no session or client"
                session, start = assign(client, ts, received_ms)
            records.append(
                {
                    "message_id": message_id,
                    "session_id_hash": session,
                    "event_type": event_type,
                    "product_action": action,
                    "product_sku_hash": sku,
                    "server_timestamp_epoch_ms": ts,
                    "hashed_url": url,
                    "received_at_ms": received_ms,
                    "client_id": client,
                    "session_start_ms": start,
                    "source": source,
                }
            )
        return records

    async def log(self, hits: Sequence[Hit], received_ms: int) -> int:
        """Log `hits` durably; returns how many rows were logged."""
        if not hits:
            return 0
        await self.wal.append_async(self.resolve(hits, received_ms))
        if time.monotonic() - self._compactor_checked >= COMPACTOR_CHECK_SECONDS:
            self.supervise()
        return len(hits)

    def supervise(self) -> None:
        """Start a new background compactor if the running one died (killed by the kernel's
        out-of-memory killer, say): the log keeps everything it acknowledged, and the new one
        lands it. Checked at most every `COMPACTOR_CHECK_SECONDS` by `log`, and by `ready`."""
        self._compactor_checked = time.monotonic()
        dead = self.compactor
        if dead is None or dead.alive():
            return
        log.error(
            "background compaction (pid %d) ended with exit status %s; starting a new one",
            dead.pid,
            dead.returncode,
        )
        self.compactor = None
        self.compactor = BackgroundCompactor.start(self.settings)
        self.compactor_restarts += 1

    def ready(self) -> Ready:
        """The log's counters; raises LogWriteError when the log cannot write now (a failed
        write it has not recovered from yet) or its disk is nearly full."""
        refused = self.wal.readiness_problem(self.settings.log_min_free_bytes)
        if refused is not None:
            raise refused
        self.supervise()
        stats = self.wal.stats
        return Ready(
            active_segment=None if stats.active is None else stats.active.name,
            closed_segments=len(self.wal.closed_segments()),
            appends=stats.appends,
            records=stats.records,
            group_commits=stats.groups,
            tracked_clients=len(self.tracker),
            compactor_restarts=self.compactor_restarts,
        )

    def close(self) -> None:
        """Stop background compaction (after its current pass) and close the log."""
        if self.compactor is not None:
            self.compactor.stop()
            self.compactor = None
        self.wal.close()


def _rebuild_tracker(settings: Settings, wal: WriteAheadLog) -> SessionTracker:
    """Session state from the segments not yet compacted and the state's `clients` table.

    Runs under the compaction lock, so no segment is compacted (and deleted) half-way through.
    """
    started = time.perf_counter()
    tracker = SessionTracker(max_clients=settings.collect_max_clients)
    now = now_ms()
    with compaction_lock(log_dir(settings)):
        observed = 0
        for segment in wal.closed_segments():
            observed += tracker.observe_records(scan_segment(segment.path).records)
        with closing(open_state(state_path(settings))) as con:
            observed += load_clients(con, tracker, since_ms=now - tracker.idle_ms)
    tracker.finish_rebuild(now)
    log.info(
        "session state rebuilt: %d clients from %d observations in %.2f s",
        len(tracker),
        observed,
        time.perf_counter() - started,
    )
    return tracker

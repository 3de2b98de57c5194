"""The collector's log compacted into `landing/browsing_events/collect-<segment>.parquet`.

The generic protocol is `smallboat.data.log.compact`; this module supplies the collector's parts:
the record -> row mapping, the message id as deduplication key, and the client session state
written in the same transaction (`sessions.record_clients`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from smallboat.collect.events import record_key, record_to_row
from smallboat.collect.sessions import record_clients
from smallboat.config import Settings
from smallboat.data.log.compact import CompactionReport, CompactionSpec, Hook, compact
from smallboat.data.log.segments import Segment
from smallboat.schema import BROWSING_EVENTS

LANDING_PREFIX = "collect"
"""Landing files of collected events are `collect-<segment name>.parquet`."""

EVENT_COMPACTION = CompactionSpec(
    table=BROWSING_EVENTS,
    to_row=record_to_row,
    key=record_key,
    prefix=LANDING_PREFIX,
    on_commit=record_clients,
)


def log_dir(settings: Settings) -> Path:
    """The collector's write-ahead log folder."""
    return settings.collect_dir / "log"


def state_path(settings: Settings) -> Path:
    """The collector's compaction state (landed message ids, done segments, client sessions)."""
    return settings.collect_dir / "state.sqlite"


def compact_events(
    settings: Settings,
    *,
    segments: Sequence[Segment] | None = None,
    hook: Hook | None = None,
) -> CompactionReport:
    """Land the collector's closed log segments (all of them when no collector is running)."""
    return compact(
        log_dir(settings),
        state_path(settings),
        EVENT_COMPACTION,
        settings=settings,
        segments=segments,
        hook=hook,
    )

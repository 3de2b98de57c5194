"""The collector's logs compacted into `landing/browsing_events/collect-*.parquet`.

The generic protocol is `smallboat.data.log.compact`; this module supplies the collector's parts:
the record -> row mapping, the message id as deduplication key, the client session state written
in the same transaction (`sessions.record_clients`), and the replicas.

Replicas: several collectors on one home (`SMALLBOAT_COLLECT_REPLICA`, or the worker slots of
`smallboat collect serve --workers N`) each write their own log, `collect/replicas/<id>/log`;
the default replica (empty id) writes `collect/log`. Every log is landed against ONE state
database, so an event that a client retried to another replica (the same message id) lands once,
and every pass holds that state's lock, so any number of compactors (each collector's background
pass, `smallboat collect compact`) may run at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from smallboat.collect.events import record_key, record_to_row
from smallboat.collect.sessions import record_clients
from smallboat.config import Settings
from smallboat.data.log.compact import (
    CompactionReport,
    CompactionSpec,
    Hook,
    compact,
    compact_each,
)
from smallboat.data.log.segments import Segment
from smallboat.schema import BROWSING_EVENTS

LANDING_PREFIX = "collect"
"""Landing files of collected events are `collect-<segment name>.parquet` (the default replica's)
and `collect-<replica>-<segment name>.parquet`."""
REPLICAS_DIR = "replicas"

EVENT_COMPACTION = CompactionSpec(
    table=BROWSING_EVENTS,
    to_row=record_to_row,
    key=record_key,
    prefix=LANDING_PREFIX,
    on_commit=record_clients,
)


def replicas_dir(settings: Settings) -> Path:
    """Where the named replicas' folders are (`<id>/log`, `<id>/server.json`)."""
    return settings.collect_dir / REPLICAS_DIR


def replica_dir(settings: Settings, replica: str | None = None) -> Path:
    """The folder of a replica's log and control file (default: this process's replica)."""
    name = settings.collect_replica if replica is None else replica
    return settings.collect_dir if not name else replicas_dir(settings) / name


def log_dir(settings: Settings, replica: str | None = None) -> Path:
    """A replica's write-ahead log folder (default: this process's replica)."""
    return replica_dir(settings, replica) / "log"


def replicas(settings: Settings) -> list[str]:
    """Every replica with a log on this home ("" is the default one), in name order."""
    found = [""] if log_dir(settings, "").is_dir() else []
    root = replicas_dir(settings)
    if root.is_dir():
        found += sorted(p.name for p in root.iterdir() if (p / "log").is_dir())
    return found


def state_path(settings: Settings) -> Path:
    """The collector's compaction state (landed message ids, done segments, client sessions),
    shared by every replica."""
    return settings.collect_dir / "state.sqlite"


def replica_spec(replica: str) -> CompactionSpec:
    """How a replica's segments are named in the state and in landing."""
    if not replica:
        return EVENT_COMPACTION
    return dataclasses.replace(
        EVENT_COMPACTION, prefix=f"{LANDING_PREFIX}-{replica}", namespace=f"{replica}/"
    )


def compact_events(
    settings: Settings,
    *,
    replica: str | None = None,
    segments: Sequence[Segment] | None = None,
    hook: Hook | None = None,
) -> CompactionReport:
    """Land the closed log segments of every replica (or of `replica` alone, or only the given
    `segments` of `replica`, default this process's): a replica whose collector is running keeps
    its active segment.

    A corrupt segment of one replica does not stop the others: they are compacted, then the
    CorruptSegmentError of the whole pass is raised."""
    if replica is not None or segments is not None:
        names = [settings.collect_replica if replica is None else replica]
    else:
        names = replicas(settings)
    return compact_each(
        partial(
            compact,
            log_dir(settings, name),
            state_path(settings),
            replica_spec(name),
            settings=settings,
            segments=segments,
            hook=hook,
        )
        for name in names
    )

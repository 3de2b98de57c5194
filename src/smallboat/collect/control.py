"""Talking to the running collectors from the CLI: compaction on demand and their status.

Every collector process started by `smallboat collect serve` (one per replica, or one per
worker slot with `--workers`) writes `server.json` beside its log (`collect/server.json` for the
default replica, `collect/replicas/<id>/server.json`): its pid, its URL and its admin token,
readable only by its user, and whether that URL is shared by several workers. It removes the
file when it stops.

`compact_now` asks each running replica to roll its active segment, then compacts every
replica's log: so it lands every event acknowledged up to the moment it runs, exactly once
(compaction's protocol, `smallboat.data.log.compact`, is unchanged; the roll only closes a
segment early). The request is the signal SIGUSR1 to the replica's pid, since workers sharing a
port cannot be told apart by URL; the collector answers by closing the segment (which it does
once every append queued before it is durable) and starting a newer one, and the CLI waits for
that newer segment. `collector_status` gathers what `smallboat collect status` shows, per
replica, including the corrupt log segments compaction set aside (the collector's and the
prediction logs').
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from smallboat.collect.compaction import (
    compact_events,
    log_dir,
    replica_dir,
    replicas,
    state_path,
)
from smallboat.collect.counters import KINDS, Snapshot
from smallboat.config import Settings
from smallboat.data.log.compact import CompactionReport, CorruptSegmentError
from smallboat.data.log.predictions import quarantined_predictions
from smallboat.data.log.segments import (
    SEGMENT_MAGIC,
    QuarantinedSegment,
    list_segments,
    quarantined_segments,
    writer_is_live,
)
from smallboat.durable import fsync_dir, process_start
from smallboat.errors import SmallboatError
from smallboat.schema import BROWSING_EVENTS

CONTROL_FILE = "server.json"
ADMIN_TIMEOUT_S = 30.0
"""How long the CLI waits for a collector's answer (a roll waits for the queued fsyncs)."""
ROLL_SIGNAL = signal.SIGUSR1
"""Asks a running collector to roll its log's active segment."""


@dataclass(frozen=True)
class Control:
    """How to reach one running collector process (a replica, or a worker slot)."""

    pid: int
    url: str
    token: str
    shared: bool = False
    """Whether worker processes share `url` (then a request reaches any one of them)."""
    started: int | None = None
    """The process's start time (`durable.process_start`): a signal goes to `pid` only while it
    names the same process, never to a later one that was given the same pid."""


def control_path(settings: Settings, replica: str | None = None) -> Path:
    """A replica's control file (default: this process's replica)."""
    return replica_dir(settings, replica) / CONTROL_FILE


def write_control(settings: Settings, control: Control) -> None:
    """Publish how to reach this collector (atomically; mode 0600: the token is a secret)."""
    path = control_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        body = {"pid": control.pid, "url": control.url, "token": control.token}
        json.dump({**body, "shared": control.shared, "started": control.started}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def remove_control(settings: Settings) -> None:
    """Remove the control file if it is this process's."""
    found = read_control(settings)
    if found is not None and found.pid == os.getpid():
        control_path(settings).unlink(missing_ok=True)


def read_control(settings: Settings, replica: str | None = None) -> Control | None:
    path = control_path(settings, replica)
    try:
        data = json.loads(path.read_text())
        return Control(
            pid=int(data["pid"]),
            url=str(data["url"]),
            token=str(data["token"]),
            shared=bool(data.get("shared", False)),
            started=None if data.get("started") is None else int(data["started"]),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SmallboatError(f"{path} is not a collector control file ({exc}); delete it") from None


def _admin(control: Control, method: str, path: str) -> dict[str, Any]:
    """Call an admin route of a running collector."""
    try:
        answer = httpx.request(
            method,
            f"{control.url}{path}",
            headers={"Authorization": f"Bearer {control.token}"},
            timeout=ADMIN_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise SmallboatError(f"the collector at {control.url} did not answer ({exc})") from None
    if answer.status_code != 200:
        raise SmallboatError(
            f"the collector at {control.url} answered {path} with {answer.status_code}: "
            f"{answer.text[:200]}"
        )
    result: dict[str, Any] = answer.json()
    return result


def roll_replica(settings: Settings, replica: str, *, timeout: float = ADMIN_TIMEOUT_S) -> bool:
    """Have the collector writing `replica`'s log close its active segment; returns whether one
    was running. Every event it acknowledged before this call is then in a closed segment.

    A collector publishes its control file before it acknowledges anything, and every start
    begins a new segment: so an active segment that holds records names a process whose control
    file is current. Right after a start (the log held, the pid not yet published) this waits."""
    folder = log_dir(settings, replica)
    deadline = time.monotonic() + timeout
    while True:
        if not writer_is_live(folder):
            return False  # nobody writes it: its whole log is closed
        listed = list_segments(folder)
        if not listed or _size(listed[-1].path) <= len(SEGMENT_MAGIC):
            return True  # its active segment holds nothing acknowledged
        active = listed[-1]
        control = read_control(settings, replica)
        if control is not None and _same_process(control):
            try:
                os.kill(control.pid, ROLL_SIGNAL)
                break
            except ProcessLookupError:
                pass  # a predecessor's file: the collector starting now has not replaced it yet
        if time.monotonic() > deadline:
            raise SmallboatError(
                f"a process holds the collector's log at {folder} but published no running pid "
                f"in {control_path(settings, replica)} within {timeout:.0f} s: it is not a "
                "`smallboat collect serve` this CLI can ask"
            )
        time.sleep(0.05)
    while time.monotonic() < deadline:
        newest = list_segments(folder)
        if (newest and newest[-1].id > active.id) or not writer_is_live(folder):
            return True
        time.sleep(0.01)
    raise SmallboatError(
        f"the collector of {folder} (pid {control.pid}) did not close its active segment "
        f"{active.name} within {timeout:.0f} s; see its log (`/readyz` says why it cannot write)"
    )


def _same_process(control: Control) -> bool:
    """Whether `control.pid` still names the collector that wrote `control` (a dead collector's
    pid may be reused by any process, which SIGUSR1 would end). Without a recorded start time
    (no /proc) the pid is trusted."""
    if control.started is None:
        return True
    return process_start(control.pid) == control.started


def compact_now(settings: Settings) -> CompactionReport:
    """Land every event acknowledged so far: each running replica rolls its active segment
    first, then every replica's log is compacted."""
    rolled = False
    for replica in replicas(settings):
        rolled = roll_replica(settings, replica) or rolled
    try:
        report = compact_events(settings)
    except CorruptSegmentError as exc:
        exc.report.rolled = rolled
        raise
    report.rolled = rolled
    return report


@dataclass
class ReplicaStatus:
    """One replica's log: segments, what awaits compaction, its running collector."""

    name: str
    """The replica id ("" for the default log `collect/log`)."""
    running: Control | None
    segments: int
    segment_bytes: int
    pending_segments: int
    pending_bytes: int
    records_logged: int | None = None

    def lines(self) -> list[str]:
        """`<who>: running (...)|not running` and its log's line."""
        who = f"replica {self.name}" if self.name else "collector"
        if self.running is None:
            state = "not running"
        else:
            logged = "" if self.records_logged is None else f"; {self.records_logged:,} rows logged"
            shared = ", a worker on a shared port" if self.running.shared else ""
            state = (
                f"running (pid {self.running.pid}, {self.running.url}{shared}{logged} since it "
                "started)"
            )
        prefix = f"replica {self.name} " if self.name else ""
        return [
            f"{who}: {state}",
            f"{prefix}log: {self.segments} segment(s), {self.segment_bytes:,} bytes; pending "
            f"compaction: {self.pending_segments} segment(s), {self.pending_bytes:,} bytes",
        ]


@dataclass
class CollectorStatus:
    """What `smallboat collect status` shows."""

    replicas: list[ReplicaStatus] = field(default_factory=list)
    compacted_segments: int = 0
    rows_landed: int = 0
    duplicates: int = 0
    landing_files: int = 0
    counters: Snapshot = field(default_factory=lambda: {kind: {} for kind in KINDS})
    """Ignored and refused hits since they started, summed over the running collectors that
    have a URL of their own (the workers of one port each count their own: see /metrics)."""
    quarantined: list[QuarantinedSegment] = field(default_factory=list)
    """Corrupt segments of the collector's logs and the prediction logs, set aside."""

    @property
    def pending_segments(self) -> int:
        return sum(r.pending_segments for r in self.replicas)

    @property
    def pending_bytes(self) -> int:
        return sum(r.pending_bytes for r in self.replicas)

    def lines(self) -> list[str]:
        shown = self.replicas or [ReplicaStatus("", None, 0, 0, 0, 0)]
        out = [line for r in shown for line in r.lines()]
        if len(shown) > 1:
            out.append(
                f"all replicas: pending compaction: {self.pending_segments} segment(s), "
                f"{self.pending_bytes:,} bytes"
            )
        out.append(
            f"landed: {self.compacted_segments} segment(s) compacted, {self.rows_landed:,} rows in "
            f"{self.landing_files} file(s), {self.duplicates:,} duplicate(s) dropped"
        )
        if not self.quarantined:
            out.append("quarantined: no corrupt log segment")
        for q in self.quarantined:
            out.append(f"quarantined: {q.describe()}")
        for kind in KINDS:
            counted = self.counters.get(kind, {})
            if not counted:
                out.append(f"{kind} hits: none")
                continue
            for protocol, reasons in counted.items():
                for reason, n in reasons.items():
                    out.append(f"{kind} hits: {protocol} / {reason}: {n:,}")
        return out


def replica_status(settings: Settings, replica: str) -> ReplicaStatus:
    """A replica's log segments, what awaits compaction, and its running collector."""
    folder = log_dir(settings, replica)
    segments = list_segments(folder)
    live = writer_is_live(folder)
    sizes = [_size(s.path) for s in segments]
    # A closed segment holding only its header has nothing to land; the active one holds
    # records that land after a roll.
    pending = [size for size in sizes if size > len(SEGMENT_MAGIC)]
    return ReplicaStatus(
        name=replica,
        running=read_control(settings, replica) if live else None,
        segments=len(segments),
        segment_bytes=sum(sizes),
        pending_segments=len(pending),
        pending_bytes=sum(pending),
    )


def collector_status(settings: Settings) -> CollectorStatus:
    """Every replica's log, what awaits compaction, what landed, and the running collectors'
    counters of ignored and refused hits."""
    status = CollectorStatus(
        replicas=[replica_status(settings, name) for name in replicas(settings)],
        quarantined=[
            q for name in replicas(settings) for q in quarantined_segments(log_dir(settings, name))
        ]
        + quarantined_predictions(settings),
    )
    if state_path(settings).exists():
        with closing(sqlite3.connect(state_path(settings))) as con:
            try:
                row = con.execute(
                    "select count(*), coalesce(sum(rows_landed), 0), coalesce(sum(duplicates), 0) "
                    "from segments"
                ).fetchall()[0]
            except sqlite3.OperationalError:
                row = (0, 0, 0)
        status.compacted_segments, status.rows_landed, status.duplicates = row
    landing = settings.table_landing_dir(BROWSING_EVENTS.name)
    status.landing_files = len(list(landing.glob("collect-*.parquet"))) if landing.is_dir() else 0
    for replica in status.replicas:
        if replica.running is None or replica.running.shared:
            continue
        answer = _admin(replica.running, "GET", "/admin/counters")
        replica.records_logged = answer["ready"]["records"]
        _add_counters(status.counters, answer["counters"])
    return status


def _add_counters(total: Snapshot, more: Snapshot) -> None:
    for kind, protocols in more.items():
        for protocol, reasons in protocols.items():
            counted = total.setdefault(kind, {}).setdefault(protocol, {})
            for reason, n in reasons.items():
                counted[reason] = counted.get(reason, 0) + n


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # compacted and deleted meanwhile

"""Talking to a running collector from the CLI: compaction on demand and its status.

A collector started by `smallboat collect serve` writes `<home>/collect/server.json` (its pid,
its URL on the loopback and its admin token; readable only by its user) and removes it when it
stops. `compact_now` asks that collector to roll its active segment (`POST /admin/roll`, which
answers once everything acknowledged before it is in a closed segment), then compacts: so it
lands every event acknowledged up to the moment it runs, exactly once (compaction's protocol,
`smallboat.data.log.compact`, is unchanged; the roll only closes a segment early).
`collector_status` gathers what `smallboat collect status` shows, including the corrupt log
segments compaction set aside (the collector's and the prediction logs').
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from smallboat.collect.compaction import compact_events, log_dir, state_path
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
from smallboat.durable import fsync_dir
from smallboat.errors import SmallboatError
from smallboat.schema import BROWSING_EVENTS

CONTROL_FILE = "server.json"
ADMIN_TIMEOUT_S = 30.0
"""How long the CLI waits for the collector's answer (a roll waits for the queued fsyncs)."""


@dataclass(frozen=True)
class Control:
    """How to reach the collector that runs on a home."""

    pid: int
    url: str
    token: str


def control_path(settings: Settings) -> Path:
    return settings.collect_dir / CONTROL_FILE


def write_control(settings: Settings, control: Control) -> None:
    """Publish how to reach this collector (atomically; mode 0600: the token is a secret)."""
    path = control_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": control.pid, "url": control.url, "token": control.token}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def remove_control(settings: Settings) -> None:
    """Remove the control file if it is this process's."""
    found = read_control(settings)
    if found is not None and found.pid == os.getpid():
        control_path(settings).unlink(missing_ok=True)


def read_control(settings: Settings) -> Control | None:
    path = control_path(settings)
    try:
        data = json.loads(path.read_text())
        return Control(pid=int(data["pid"]), url=str(data["url"]), token=str(data["token"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise SmallboatError(f"{path} is not a collector control file ({exc}); delete it") from None


def _admin(settings: Settings, method: str, path: str) -> dict[str, Any]:
    """Call an admin route of the collector running on this home."""
    control = read_control(settings)
    if control is None:
        raise SmallboatError(
            f"a process holds the collector's log at {log_dir(settings)} but published no "
            f"{CONTROL_FILE}: it is not a `smallboat collect serve` this CLI can ask"
        )
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


def compact_now(settings: Settings) -> CompactionReport:
    """Land every event acknowledged so far: roll a running collector's active segment first."""
    rolled = False
    if writer_is_live(log_dir(settings)):
        _admin(settings, "POST", "/admin/roll")
        rolled = True
    try:
        report = compact_events(settings)
    except CorruptSegmentError as exc:
        exc.report.rolled = rolled
        raise
    report.rolled = rolled
    return report


@dataclass
class CollectorStatus:
    """What `smallboat collect status` shows."""

    running: Control | None
    segments: int
    segment_bytes: int
    pending_segments: int
    pending_bytes: int
    compacted_segments: int = 0
    rows_landed: int = 0
    duplicates: int = 0
    landing_files: int = 0
    counters: Snapshot = field(default_factory=lambda: {kind: {} for kind in KINDS})
    records_logged: int | None = None
    quarantined: list[QuarantinedSegment] = field(default_factory=list)
    """Corrupt segments of the collector's log and the prediction logs, set aside."""

    def lines(self) -> list[str]:
        out = []
        if self.running is None:
            out.append("collector: not running")
        else:
            logged = "" if self.records_logged is None else f"; {self.records_logged:,} rows logged"
            out.append(
                f"collector: running (pid {self.running.pid}, {self.running.url}{logged} since "
                "it started)"
            )
        out.append(
            f"log: {self.segments} segment(s), {self.segment_bytes:,} bytes; pending compaction: "
            f"{self.pending_segments} segment(s), {self.pending_bytes:,} bytes"
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


def collector_status(settings: Settings) -> CollectorStatus:
    """The log's segments, what awaits compaction, what landed, and the running collector's
    counters of ignored and refused hits."""
    folder = log_dir(settings)
    segments = list_segments(folder)
    live = writer_is_live(folder)
    sizes = [_size(s.path) for s in segments]
    # A closed segment holding only its header has nothing to land.
    pending = [
        size for size in (sizes[:-1] if live and sizes else sizes) if size > len(SEGMENT_MAGIC)
    ]
    status = CollectorStatus(
        running=read_control(settings) if live else None,
        segments=len(segments),
        segment_bytes=sum(sizes),
        pending_segments=len(pending),
        pending_bytes=sum(pending),
        quarantined=quarantined_segments(folder) + quarantined_predictions(settings),
    )
    if live and segments and sizes[-1] > len(SEGMENT_MAGIC):
        status.pending_segments += 1  # the active segment holds records: it lands after a roll
        status.pending_bytes += sizes[-1]
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
    if status.running is not None:
        answer = _admin(settings, "GET", "/admin/counters")
        status.counters = answer["counters"]
        status.records_logged = answer["ready"]["records"]
    return status


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # compacted and deleted meanwhile

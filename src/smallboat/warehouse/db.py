"""The DuckDB warehouse file: where it is, how a build replaces it whole, and how readers open it.

`settings.warehouse_path` (`<home>/warehouse.duckdb`) is the *live* warehouse: always one complete
build that passed the quality gate, or nothing. `smallboat transform` never writes it in place: dbt
builds into `warehouse.building.duckdb` beside it (a copy of the live file when only a selection is
rebuilt), the gate runs there, and only a build that passed is stamped with its record (the
`_smallboat_build` table) and renamed over the live file, an atomic swap. A build that is killed,
fails its gate or cannot run leaves the live file untouched; readers keep reading the last good
build while a new one runs (no writer ever holds a lock on the live file).

Readers open the live file through `connect` (read-only; a lock held by another process is a
one-line error), and `build_warnings` says what they should warn about: a file without a build
record (made by an older smallboat, which wrote in place, or by hand: it may be a torn build), a
build running now, or a newer attempt that was interrupted or failed.

On Spark (`SMALLBOAT_DBT_TARGET=spark`) the warehouse is the live build's Parquet folders
(`warehouse/spark.py`: per-build schemas, swapped in by an atomic pointer), and `connect` gives
readers an in-memory DuckDB connection whose views read them, with the same build record, so every
reader (TrainFlow's prepare, next-item, monitoring, the summary) reads Spark's output unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from smallboat.config import Settings
from smallboat.durable import process_alive
from smallboat.errors import SmallboatError
from smallboat.warehouse.spark import (
    SPARK_TARGET,
    spark_live,
    spark_live_path,
    spark_unnamed_builds,
)

logger = logging.getLogger(__name__)

BUILD_TABLE = "_smallboat_build"
"""One row in `main`: the build that made this file (started_at, finished_at, select, record)."""


def building_path(settings: Settings) -> Path:
    """Where `smallboat transform` builds the next warehouse before swapping it in."""
    live = settings.warehouse_path
    return live.with_name(f"{live.stem}.building{live.suffix}")


def build_lock_path(settings: Settings) -> Path:
    """The lock a running transform holds; it names the builder's pid and start time."""
    live = settings.warehouse_path
    return live.with_name(f"{live.stem}.building.lock")


def _building_exists(settings: Settings) -> bool:
    """Whether a build that is not (yet) live is on disk: the building file on DuckDB, a build
    folder that live.json names neither as live nor as the one before on Spark."""
    if settings.dbt_target != SPARK_TARGET:
        return building_path(settings).exists()
    return bool(spark_unnamed_builds(settings))


def connect(settings: Settings, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the live warehouse; read-only connections need a finished build there already.

    A DuckDB file has one writer at a time, and within one process every connection to it must use
    the same configuration: readers (summary, training, monitoring, tests) pass read_only=True and
    close the connection (use it as a context manager). Transforms never open the live file for
    writing, so a reader is never locked out by a build that is running.
    """
    if settings.dbt_target == SPARK_TARGET:
        return _connect_spark(settings, read_only=read_only)
    path = settings.warehouse_path
    if read_only and not path.exists():
        raise SmallboatError(
            f"no warehouse at {path}: run `smallboat data load`, then `smallboat transform`"
        )
    return open_file(settings, path, read_only=read_only)


def open_file(settings: Settings, path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open one DuckDB file with the settings' thread and memory limits; a lock held by another
    process is a one-line SmallboatError instead of DuckDB's IOException."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "threads": settings.threads,
        "memory_limit": settings.memory_limit,
    }
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        text = " ".join(str(exc).split())
        if "lock" not in text.lower():
            raise SmallboatError(f"cannot open the warehouse at {path}: {text}") from None
        holder = re.search(r"lock is held in (.+?) \(PID (\d+)\)", text)
        who = f" (PID {holder.group(2)}, {holder.group(1)})" if holder else ""
        raise SmallboatError(
            f"the warehouse at {path} is locked for writing by another process{who}: wait "
            "for it to finish or stop it, then retry (smallboat itself never writes this file "
            "in place)"
        ) from None


def _connect_spark(settings: Settings, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection reading the live Spark build: one view per mart folder
    (`read_parquet` over its part files), and its build record as `_smallboat_build`. The folder
    is resolved once, here: a build swapped in later is seen by the next connection, never mixed
    into this one."""
    if not read_only:
        raise SmallboatError(
            "the Spark warehouse is written only by `smallboat transform` (dbt on Spark): "
            "open it read-only"
        )
    live = spark_live(settings)
    if live is None:
        raise SmallboatError(
            f"no Spark warehouse build at {spark_live_path(settings)}: run `smallboat data load`, "
            "then `SMALLBOAT_DBT_TARGET=spark smallboat transform`"
        )
    folder = Path(live["location"])
    if not folder.is_dir():
        raise SmallboatError(
            f"the live Spark build {folder} named by {spark_live_path(settings)} is missing: "
            "run `smallboat transform` to rebuild it"
        )
    con = duckdb.connect(
        ":memory:", config={"threads": settings.threads, "memory_limit": settings.memory_limit}
    )
    try:
        for mart in sorted(p for p in folder.iterdir() if p.is_dir()):
            if not any(mart.glob("*.parquet")):
                continue  # a table Spark did not finish writing is not a mart
            glob = str(mart / "*.parquet").replace("'", "''")
            con.execute(f"create view main.\"{mart.name}\" as select * from read_parquet('{glob}')")
        con.execute(
            f"create table main.{BUILD_TABLE} (started_at varchar not null, "
            "finished_at varchar not null, select_nodes varchar, record varchar not null)"
        )
        con.execute(
            f"insert into main.{BUILD_TABLE} values (?, ?, ?, ?)",
            [live["started_at"], live["finished_at"], live.get("select"), live["record"]],
        )
    except BaseException:
        con.close()
        raise
    return con


def _has_build_record(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "select 1 from information_schema.tables where table_schema = 'main' and table_name = ?",
        [BUILD_TABLE],
    ).fetchall()
    return bool(rows)


def live_build(settings: Settings) -> dict[str, Any] | None:
    """The record of the build the live warehouse holds: started_at, finished_at, select and
    `record` (the quality record, `TransformResult.to_dict()`); None for a file without one."""
    with connect(settings, read_only=True) as con:
        if not _has_build_record(con):
            return None
        rows = con.execute(
            f"select started_at, finished_at, select_nodes, record from main.{BUILD_TABLE}"
        ).fetchall()
    if not rows:
        return None
    [(started_at, finished_at, select, record)] = rows
    return {
        "started_at": started_at,
        "finished_at": finished_at,
        "select": select,
        "record": json.loads(record),
    }


def stamp_build(
    con: duckdb.DuckDBPyConnection, *, started_at: datetime, select: str | None, record: str
) -> None:
    """Write the build record into a finished build (replacing the copied one of a selection)."""
    con.execute(
        f"create or replace table main.{BUILD_TABLE} ("
        "started_at varchar not null, finished_at varchar not null, "
        "select_nodes varchar, record varchar not null)"
    )
    # ISO 8601 text, as in the quality record (a TIMESTAMPTZ would need pytz to read back)
    con.execute(
        f"insert into main.{BUILD_TABLE} values (?, ?, ?, ?)",
        [started_at.isoformat(), datetime.now(UTC).isoformat(), select, record],
    )


@dataclass(frozen=True)
class BuildStatus:
    """What readers may want to warn about beside the live warehouse."""

    running_pid: int | None
    """A transform building right now (its lock is held by this live process), else None."""
    interrupted_at: str | None
    """When an unfinished build started that is not running any more (killed), else None."""
    last_failed_at: str | None
    """When the last recorded transform started, if it failed (its gate or dbt itself)."""

    def warnings(self, live_started_at: object) -> list[str]:
        """One line per thing worth saying, naming which build the reader is looking at."""
        showing = f"the live warehouse is the build started at {live_started_at}"
        lines = []
        if self.running_pid is not None:
            lines.append(
                f"a transform (pid {self.running_pid}) is building a new warehouse; {showing}"
            )
        if self.interrupted_at is not None:
            lines.append(
                f"the transform started at {self.interrupted_at} did not finish (killed?); "
                f"{showing}; the next `smallboat transform` cleans up"
            )
        if self.last_failed_at is not None:
            lines.append(
                f"the last transform (started at {self.last_failed_at}) failed; {showing} "
                "(see quality/latest.json)"
            )
        return lines


def build_warnings(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[str]:
    """What a reader holding a connection to the live warehouse should warn about, one line each:
    `build_status`'s lines, and a file without a build record."""
    if not _has_build_record(con):
        return [
            f"the warehouse at {settings.warehouse_path} holds no record of a finished "
            "`smallboat transform` (an older smallboat built it in place, or it was made by "
            "hand): it may be a torn build; run `smallboat transform` to rebuild it",
            *build_status(settings).warnings("(unrecorded)"),
        ]
    rows = con.execute(f"select started_at from main.{BUILD_TABLE}").fetchall()
    return build_status(settings).warnings(rows[0][0] if rows else None)


def build_status(settings: Settings) -> BuildStatus:
    """A running, interrupted or failed build beside the live warehouse (from files only)."""
    running, interrupted = None, None
    lock = build_lock_path(settings)
    building = _building_exists(settings)
    if building or lock.exists():
        holder = _read_lock(lock)
        pid = holder.get("pid")
        if isinstance(pid, int) and process_alive(pid) and building:
            running = pid
        elif building:
            interrupted = str(holder.get("started_at", "an unknown time"))
    failed = None
    latest = settings.quality_dir / "latest.json"
    with contextlib.suppress(OSError, ValueError):
        invocation = json.loads(latest.read_text()).get("invocation", {})
        if invocation.get("success") is False:
            failed = str(invocation.get("started_at"))
    return BuildStatus(running_pid=running, interrupted_at=interrupted, last_failed_at=failed)


def _read_lock(lock: Path) -> dict[str, Any]:
    try:
        value = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@contextlib.contextmanager
def build_lock(settings: Settings) -> Iterator[None]:
    """Hold the warehouse's build lock (one transform at a time per home), or raise one line
    naming the transform that holds it. The kernel drops the lock when its holder dies."""
    import fcntl

    lock = build_lock_path(settings)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_lock(lock)
            raise SmallboatError(
                f"another `smallboat transform` (pid {holder.get('pid', '?')}, started "
                f"{holder.get('started_at', '?')}) is building the warehouse of "
                f"{settings.home_dir}: wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        stamp = {"pid": os.getpid(), "started_at": datetime.now(UTC).isoformat()}
        os.write(fd, json.dumps(stamp).encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def remove_file(path: Path) -> None:
    """Remove a DuckDB file with its write-ahead log and spill folder, if present."""
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(path.with_name(path.name + ".tmp"), ignore_errors=True)

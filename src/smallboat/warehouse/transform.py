"""`smallboat transform`: build the warehouse with the packaged dbt project, tests included.

`dbt build` runs every model and, right after it, the model's tests: an error-severity test that
fails stops everything downstream of it, a warn-severity one is only recorded. This module runs dbt
in-process through `dbtRunner`, turns its results into a `TransformResult`, records them in
`<home>/quality/` and raises `QualityGateError` when the gate failed.

dbt is configured entirely from here, never from the current directory: the project and profiles
are the packaged `warehouse/dbt/` folder (read-only), target and log paths live under
`<home>/dbt/`, and the profile reads SMALLBOAT_HOME / SMALLBOAT_THREADS / SMALLBOAT_MEMORY_LIMIT,
which are set from the settings for the duration of the run.

A build is one visible unit (`warehouse/db.py`): on DuckDB, dbt writes `warehouse.building.duckdb`
(the profile's path is SMALLBOAT_WAREHOUSE_PATH, set here), never the live file; only a build whose
gate passed is stamped with its record and renamed over `warehouse.duckdb`. A killed or failed
build leaves the live warehouse as it was, and readers keep reading it while a build runs. One
transform runs per home at a time (a file lock; a second one is refused in one line).

On Spark (target `spark`, dbt-spark in session mode: a local PySpark in this process), dbt writes
the marts as Parquet into schemas named for this build under `<home>/spark/builds/`, and only a
build whose gate passed is named live (`warehouse/spark.py`: `live.json`, replaced atomically); a
failed build's folders are removed. A Spark build is always whole: `select` is refused there.

In-process behaviour, checked by the tests: `run_transform` may be called any number of times in
one process (a second build reuses the home's partial parse, ~2 s of overhead instead of ~5).
dbt-duckdb would keep the file open after a build by default; the profile sets `keep_open: false`
so that, once this returns, the file can be stamped and swapped. dbt is not thread-safe, so builds
are serialised by a lock. dbt creates a multiprocessing spawn context; a script that calls this
should keep the usual `if __name__ == "__main__":` guard (STACK.md).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from smallboat import schema
from smallboat.config import Settings
from smallboat.durable import fsync_path
from smallboat.errors import QualityGateError, SmallboatError
from smallboat.warehouse.db import (
    build_lock,
    building_path,
    open_file,
    remove_file,
    stamp_build,
)
from smallboat.warehouse.quality import NodeResult, TransformResult
from smallboat.warehouse.spark import (
    SPARK_TARGET,
    build_environment,
    remove_spark_build,
    spark_builds_dir,
    spark_schema,
    spark_unnamed_builds,
    swap_in_spark,
)

logger = logging.getLogger(__name__)

DBT_PROJECT_DIR = Path(__file__).resolve().parent / "dbt"
"""The packaged dbt project; also its profiles directory."""

EMPTY_LANDING_FILE = "empty.parquet"
"""Written into a landing folder that has no Parquet yet, so the source glob always matches (a
name without a leading `_`: Spark skips those)."""

FAILURE_SAMPLE_ROWS = 3

# dbt keeps process-wide state (flags, adapter factory, event manager): one build at a time.
_DBT_LOCK = threading.Lock()


def run_transform(
    settings: Settings,
    *,
    select: str | None = None,
    vars: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> TransformResult:
    """Run `dbt build` on the landing files of `settings.home_dir` and enforce the quality gate.

    `select` is a dbt node selection ('intent_examples+', 'sessions sku_features'); `vars` override
    the project's vars (split fractions, distribution bounds; see dbt_project.yml). Every model and
    test result is written to `settings.quality_dir/latest.json` (and a timestamped copy) before
    anything is raised. On DuckDB the live warehouse is replaced, whole, only by a build that
    passed; otherwise it stays the last build that did.

    Raises QualityGateError listing each failed test with its failing row count (and each errored
    model) when an error-severity test failed or a model errored; SmallboatError when dbt could not
    run at all (a broken profile or project) or another transform of this home is running.
    """
    settings.ensure_home()
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    with _DBT_LOCK, build_lock(settings):
        return _build(settings, select=select, vars=dict(vars or {}), progress=progress)


def _build(
    settings: Settings, *, select: str | None, vars: dict[str, Any], progress: bool
) -> TransformResult:
    """One build under the home's build lock: dbt into the building file, record, gate, swap."""
    on_duckdb = settings.dbt_target == "duckdb"
    on_spark = settings.dbt_target == SPARK_TARGET
    if on_spark and select:
        raise SmallboatError(
            f"--select {select!r}: the spark target builds the whole warehouse (its marts are "
            "swapped in together); run `smallboat transform` without --select"
        )
    prepare_landing(settings)
    args = _dbt_args(settings, select=select, vars=vars)
    building = building_path(settings)
    if on_duckdb:
        _start_building_file(settings, copy_live=select is not None)

    started_at = datetime.now(UTC)
    spark_build = spark_schema(started_at)
    extra_env: dict[str, str] = {}
    if on_spark:
        for leftover in spark_unnamed_builds(settings):  # a build that was killed
            logger.warning("removing %s, left by a transform that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        extra_env = build_environment(settings, spark_build)
    clock = time.perf_counter()
    with _dbt_environment(settings, building, extra_env):
        from dbt.cli.main import dbtRunner  # heavy import (~1 s): only when a build is asked for

        logger.info("dbt %s", " ".join(args))
        with _NodeProgress(enabled=progress) as shown:
            outcome = dbtRunner(callbacks=[_log_dbt_event, shown.on_event]).invoke(args)
    elapsed = time.perf_counter() - clock

    record = TransformResult(
        nodes=(),
        started_at=started_at,
        elapsed_seconds=elapsed,
        target=settings.dbt_target,
        select=select,
        vars=vars,
    )
    run_results = getattr(outcome.result, "results", None)
    if run_results is None:
        error = (
            f"dbt build could not run on project {DBT_PROJECT_DIR} with target "
            f"{settings.dbt_target!r}: {outcome.exception or 'no results returned'} "
            f"(dbt's log: {settings.dbt_target_dir / 'logs' / 'dbt.log'})"
        )
        replace(record, error=error).write(settings.quality_dir)
        remove_file(building)
        if on_spark:
            remove_spark_build(settings, spark_build)
        raise SmallboatError(error)
    nodes = _with_failure_samples(
        settings, tuple(_node_result(r) for r in run_results), building if on_duckdb else None
    )
    result = replace(record, nodes=nodes)
    if result.success and not outcome.success:  # a failure dbt reports without a failing node
        result = replace(result, error=f"dbt build failed: {outcome.exception or 'see dbt.log'}")
    if not result.success:
        result = result.write(settings.quality_dir)
        remove_file(building)  # the live warehouse stays the last build that passed
        if on_spark:
            remove_spark_build(settings, spark_build)
        if result.error is not None:
            raise SmallboatError(result.error)
        raise QualityGateError(result.gate_message())
    if on_duckdb:
        try:
            _swap_in(settings, result)
        except (OSError, duckdb.Error) as exc:  # a full disk, say: the live file stays as it was
            error = (
                f"the build passed its gate but could not replace {settings.warehouse_path}: {exc}"
            )
            replace(result, error=error).write(settings.quality_dir)
            remove_file(building)
            raise SmallboatError(error) from None
    if on_spark:
        try:
            record_text = json.dumps(replace(result, results_path=None).to_dict(), default=str)
            swap_in_spark(
                settings,
                schema=spark_build,
                started_at=started_at,
                select=select,
                record=record_text,
            )
        except OSError as exc:  # a full disk, say: live.json stays as it was
            error = f"the build passed its gate but could not be named live: {exc}"
            replace(result, error=error).write(settings.quality_dir)
            remove_spark_build(settings, spark_build)
            raise SmallboatError(error) from None
    return result.write(settings.quality_dir)


def _start_building_file(settings: Settings, *, copy_live: bool) -> None:
    """An empty building file (a full build), or a copy of the live warehouse (a selection
    rebuilds only part of it); whatever a killed build left there is dropped first."""
    building = building_path(settings)
    if building.exists():
        logger.warning("dropping %s, left by a transform that did not finish", building)
    remove_file(building)
    tmp = building.with_name(building.name + ".copy")
    tmp.unlink(missing_ok=True)
    live = settings.warehouse_path
    if copy_live and live.exists():
        shutil.copyfile(live, tmp)
        tmp.replace(building)


def _swap_in(settings: Settings, result: TransformResult) -> None:
    """Stamp the passed build with its record and rename it over the live warehouse, atomically.

    The build is checkpointed (no write-ahead log left beside it) and fsync'd before the rename,
    and the folder after it, so a crash at any moment leaves either the old or the new warehouse.
    """
    building = building_path(settings)
    record = json.dumps(replace(result, results_path=None).to_dict(), default=str)
    with open_file(settings, building, read_only=False) as con:
        stamp_build(con, started_at=result.started_at, select=result.select, record=record)
        con.execute("checkpoint")
    wal = building.with_name(building.name + ".wal")
    if wal.exists():
        raise SmallboatError(f"{building} kept a write-ahead log after its checkpoint: not swapped")
    fsync_path(building)
    live = settings.warehouse_path
    stale_wal = live.with_name(live.name + ".wal")
    if stale_wal.exists():  # it belongs to the file being replaced and must not replay on the new
        logger.warning("removing %s, a write-ahead log of the replaced warehouse", stale_wal)
        stale_wal.unlink()
    os.replace(building, live)
    fsync_path(live.parent)


def prepare_landing(settings: Settings) -> list[Path]:
    """Give every canonical landing folder at least one Parquet file; return the files written.

    A source may have no file for a table (OTTO has no search log, REES46 no catalog). dbt reads
    `landing/<table>/*.parquet`, and a glob that matches nothing is an error, so an empty file with
    the canonical schema stands in. It is harmless once real files arrive (zero rows).
    """
    written = []
    for name, table in schema.LANDING_TABLES.items():
        folder = settings.table_landing_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        # Spark skips files whose names start with `_` or `.`: a folder holding only such files
        # (an older smallboat's `_empty.parquet`) gets a placeholder every engine reads.
        if any(not p.name.startswith(("_", ".")) for p in folder.glob("*.parquet")):
            continue
        path = folder / EMPTY_LANDING_FILE
        tmp = folder / f"{EMPTY_LANDING_FILE}.tmp"
        pq.write_table(table.empty(), tmp)
        tmp.replace(path)
        written.append(path)
    return written


def _dbt_args(settings: Settings, *, select: str | None, vars: dict[str, Any]) -> list[str]:
    """The `dbt build` command line, with absolute paths (dbt resolves relative ones from cwd)."""
    args = [
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(settings.dbt_target_dir / "target"),
        "--log-path",
        str(settings.dbt_target_dir / "logs"),
        "--target",
        settings.dbt_target,
        # The console belongs to the CLI (run_transform logs each node via `logging`); dbt's own
        # log, with every node's outcome, goes to <home>/dbt/logs/dbt.log.
        "--log-level",
        "none",
        "--log-level-file",
        "info",
        "--no-use-colors",
    ]
    if vars:
        args += ["--vars", json.dumps(vars)]
    if select:
        # "buildable": a test runs when every model it reads is selected or upstream of the
        # selection; dbt's default ("eager") would also run a test of an unselected mart that was
        # never built, and fail on the missing table.
        args += ["--select", *select.split(), "--indirect-selection", "buildable"]
    return args


@contextmanager
def _dbt_environment(
    settings: Settings, warehouse_file: Path, extra: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Set the variables the profile and sources read, and restore the old values afterwards."""
    wanted = {
        "SMALLBOAT_HOME": str(settings.home_dir),
        "SMALLBOAT_WAREHOUSE_PATH": str(warehouse_file),
        "SMALLBOAT_THREADS": str(settings.threads),
        "SMALLBOAT_MEMORY_LIMIT": settings.memory_limit,
        "SMALLBOAT_DBT_TARGET": settings.dbt_target,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **(extra or {}),
    }
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _NodeProgress:
    """A live line for long builds: nodes finished so far, the ones running, elapsed time."""

    def __init__(self, *, enabled: bool) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("dbt build: {task.completed} nodes done"),
            TextColumn("[dim]{task.fields[running]}"),
            TimeElapsedColumn(),
            disable=not enabled,
            transient=True,
        )
        self._task = self._progress.add_task("dbt", total=None, running="")
        self._running: list[str] = []

    def __enter__(self) -> _NodeProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def on_event(self, event: Any) -> None:
        name = event.info.name
        if name not in {"NodeStart", "NodeFinished"}:
            return
        node = getattr(getattr(event.data, "node_info", None), "node_name", "") or ""
        if name == "NodeStart":
            self._running.append(node)
        else:
            if node in self._running:
                self._running.remove(node)
            self._progress.advance(self._task)
        more = f" (+{len(self._running) - 1})" if len(self._running) > 1 else ""
        running = f"{self._running[0]}{more}" if self._running else ""
        self._progress.update(self._task, running=running)


def _log_dbt_event(event: Any) -> None:
    """Pass dbt's per-node result lines to `logging` (dbt's console output is switched off)."""
    if event.info.name in {"LogModelResult", "LogTestResult", "LogNodeResult"}:
        logger.info("dbt: %s", event.info.msg)


def _node_result(run_result: Any) -> NodeResult:
    """Flatten one dbt RunResult into the fields the quality record keeps."""
    node = run_result.node
    resource_type = str(node.resource_type)
    is_test = resource_type in {"test", "unit_test"}
    severity = getattr(node.config, "severity", None) if is_test else None
    attached = getattr(node, "attached_node", None)
    return NodeResult(
        unique_id=node.unique_id,
        name=node.name,
        resource_type=resource_type,
        status=str(run_result.status),
        severity=str(severity).lower() if severity else None,
        failures=run_result.failures if is_test else None,
        message=run_result.message,
        execution_seconds=round(float(run_result.execution_time or 0.0), 3),
        tested_model=attached.rsplit(".", 1)[-1] if attached else None,
        failures_relation=getattr(node, "relation_name", None) if is_test else None,
    )


def _with_failure_samples(
    settings: Settings, nodes: tuple[NodeResult, ...], building: Path | None
) -> tuple[NodeResult, ...]:
    """Attach a few stored failing rows to each failed or warned test.

    The project stores every test's failing rows (store_failures) in the audit schema, so the gate
    can say *what* failed (the unknown value, the measured share), not only how many rows. They are
    read from the building DuckDB file, or on Spark from the audit tables' Parquet folders (`None`
    for `building`); other targets get none. A sample that cannot be read never hides the gate's
    verdict: the test is reported without one.
    """
    wanted = [
        n
        for n in nodes
        if n.is_test and n.failures_relation and n.status in {"fail", "warn"} and n.failures
    ]
    on_spark = settings.dbt_target == SPARK_TARGET
    if not wanted or not (on_spark or (building is not None and building.exists())):
        return nodes
    samples: dict[str, list[dict[str, Any]]] = {}
    try:
        con = (
            duckdb.connect(":memory:")
            if on_spark or building is None
            else open_file(settings, building, read_only=True)
        )
        with con:
            for n in wanted:
                try:
                    relation = str(n.failures_relation)
                    if on_spark:  # schema.table -> <builds>/<schema>/<table>/*.parquet
                        folder, _, table = relation.replace("`", "").rpartition(".")
                        files = spark_builds_dir(settings) / folder / table / "*.parquet"
                        relation = f"read_parquet('{files}')"
                    query = f"select * from {relation} limit {FAILURE_SAMPLE_ROWS}"
                    samples[n.unique_id] = con.sql(query).to_arrow_table().to_pylist()
                except Exception as exc:  # a sample is a courtesy: never let it mask the verdict
                    logger.debug("no failure sample for %s: %s", n.name, exc)
    except Exception as exc:
        logger.debug("could not open the warehouse for failure samples: %s", exc)
        return nodes
    return tuple(
        replace(n, failure_sample=samples[n.unique_id]) if n.unique_id in samples else n
        for n in nodes
    )

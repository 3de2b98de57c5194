"""The Spark target's warehouse on disk: each build's folders, and the pointer to the live one.

`smallboat transform` with `SMALLBOAT_DBT_TARGET=spark` (dbt-spark in session mode: a local PySpark
in the transform's process) keeps the DuckDB target's promise with folders and a pointer instead of
a file and a rename. Each build writes schemas of its own under `<home>/spark/builds/`
(`smallboat_<started>/<mart>/part-*.parquet`, and its test-failure audit schema beside it; the
project's `spark__create_schema` puts them there), and only a build that passed its gate is named by
`<home>/spark/live.json` (its schema, folder and build record), replaced atomically: a folder cannot
be renamed over a non-empty one atomically, so the pointer is what is swapped. The build before it
is kept for readers that opened it before the swap; older, failed and killed builds are removed.
Readers open it through `warehouse.db.connect`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.durable import fsync_path
from smallboat.errors import SmallboatError

SPARK_TARGET = "spark"
"""The profiles.yml target whose marts are Parquet folders under `<home>/spark/builds/`."""
SPARK_SCHEMA_PREFIX = "smallboat_"
SPARK_AUDIT_SUFFIX = "_dbt_test__audit"
"""dbt's suffix for the schema holding the failing rows of each test (store_failures)."""

LOG_CONFIG = Path(__file__).resolve().parent / "dbt" / "spark" / "log4j2.properties"
"""Spark's log4j2 setup for the spark target: warnings to <home>/dbt/logs/spark.log, none on the
console (the CLI's)."""


def spark_dir(settings: Settings) -> Path:
    """Everything the Spark target keeps: `builds/`, `warehouse/` (Spark's), `live.json`."""
    return settings.home_dir / "spark"


def spark_builds_dir(settings: Settings) -> Path:
    """The folder holding each Spark build's schemas, one folder per schema."""
    return spark_dir(settings) / "builds"


def spark_live_path(settings: Settings) -> Path:
    """The pointer to the live Spark build (written only after a build passed its gate)."""
    return spark_dir(settings) / "live.json"


def spark_schema(started_at: datetime) -> str:
    """The schema a Spark build started at `started_at` writes its marts to."""
    return f"{SPARK_SCHEMA_PREFIX}{started_at.strftime('%Y%m%dt%H%M%S%f')}"


def spark_live(settings: Settings) -> dict[str, Any] | None:
    """live.json: schema, location, previous (the schema live before), started_at, finished_at,
    select and record (the quality record as JSON text); None when no build passed yet."""
    try:
        value = json.loads(spark_live_path(settings).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SmallboatError(
            f"cannot read the Spark warehouse pointer {spark_live_path(settings)}: {exc}"
        ) from None
    return value if isinstance(value, dict) else None


def spark_unnamed_builds(settings: Settings) -> list[Path]:
    """Build folders live.json names neither as live nor as the build before: a build running
    now, or one that was killed."""
    builds = spark_builds_dir(settings)
    if not builds.is_dir():
        return []
    live = spark_live(settings) or {}
    named = {s for s in (live.get("schema"), live.get("previous")) if s}
    return sorted(p for p in builds.iterdir() if _spark_build_of(p.name) not in named)


def _spark_build_of(folder: str) -> str:
    """The build schema a folder belongs to (its own name, or the name its audit schema adds to)."""
    return folder.removesuffix(SPARK_AUDIT_SUFFIX)


def swap_in_spark(
    settings: Settings, *, schema: str, started_at: datetime, select: str | None, record: str
) -> None:
    """Name the passed build `schema` in live.json (tmp, fsync, rename, fsync the folder), keep the
    build it replaces for readers that opened it, and remove every older build.

    Spark's local writer does not fsync: every file and folder of the build is fsync'd first, so a
    crash at any moment leaves live.json naming the old build or a complete new one."""
    for name in (schema, schema + SPARK_AUDIT_SUFFIX):
        for walked, _, files in os.walk(spark_builds_dir(settings) / name, topdown=False):
            for file in files:
                fsync_path(Path(walked) / file)
            fsync_path(Path(walked))
    fsync_path(spark_builds_dir(settings))
    previous = (spark_live(settings) or {}).get("schema")
    pointer = {
        "schema": schema,
        "location": str(spark_builds_dir(settings) / schema),
        "previous": previous,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "select": select,
        "record": record,
    }
    live = spark_live_path(settings)
    tmp = live.with_name(live.name + ".tmp")
    tmp.write_text(json.dumps(pointer, indent=2))
    fsync_path(tmp)
    os.replace(tmp, live)
    fsync_path(live.parent)
    for folder in spark_unnamed_builds(settings):
        shutil.rmtree(folder, ignore_errors=True)


def remove_spark_build(settings: Settings, schema: str) -> None:
    """Remove the folders of one Spark build (its marts and its audit schema)."""
    for name in (schema, schema + SPARK_AUDIT_SUFFIX):
        shutil.rmtree(spark_builds_dir(settings) / name, ignore_errors=True)


def build_environment(settings: Settings, build: str) -> dict[str, str]:
    """What the spark target of profiles.yml reads: this build's schema (`build`), the folder its
    schemas go to (macros/spark_build_location.sql), the driver's heap (SMALLBOAT_MEMORY_LIMIT in
    the JVM's spelling) and the JVM options: C1-only JIT and the serial collector (a build is many
    short queries on small data: about a third less time here), Spark's log in <home>/dbt/logs."""
    builds = spark_builds_dir(settings)
    builds.mkdir(parents=True, exist_ok=True)
    logs = settings.dbt_target_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    java = [
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={LOG_CONFIG}",
        f"-Dsmallboat.spark.log={logs / 'spark.log'}",
    ]
    return {
        "SMALLBOAT_SPARK_SCHEMA": build,
        "SMALLBOAT_SPARK_BUILDS_DIR": str(builds),
        "SMALLBOAT_SPARK_DRIVER_MEMORY": spark_memory(settings.memory_limit),
        "SMALLBOAT_SPARK_JAVA_OPTIONS": " ".join(java),
    }


def spark_memory(limit: str) -> str:
    """SMALLBOAT_MEMORY_LIMIT ('3GB', '512MB', '1.5GiB') as a JVM heap size ('3072m')."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", limit, flags=re.IGNORECASE)
    if not found:
        raise SmallboatError(
            f"SMALLBOAT_MEMORY_LIMIT {limit!r} is not a size like 3GB or 512MB (the Spark "
            "driver's heap is set from it)"
        )
    power = "kmgt".find(found.group(2).lower()) + 1 if found.group(2) else 0
    megabytes = int(float(found.group(1)) * 1024**power / 1024**2)
    if megabytes < 256:
        raise SmallboatError(
            f"SMALLBOAT_MEMORY_LIMIT {limit!r} is below the 256 MB a Spark driver needs"
        )
    return f"{megabytes}m"

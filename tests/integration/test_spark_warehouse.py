"""The dbt project on Apache Spark gives the same warehouse as on DuckDB.

One small synthetic sample (3,000 sessions: the fewest that give the prepare step intent examples
of both labels in every split) is built twice by the real `run_transform`:
on DuckDB (the default target) and on Spark (target `spark`: dbt-spark in session mode, a local
PySpark in this process, one Spark session for the whole module). Every model builds and every
test of the quality gate runs on both; every training mart is then compared row for row, and
TrainFlow's prepare step gives the same arrays from either warehouse. A second Spark build that
fails its gate shows that the Spark target keeps the transform's promise: the live build stays
the last one that passed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from smallboat import schema
from smallboat.config import Settings
from smallboat.errors import QualityGateError, SmallboatError
from smallboat.features import FeatureSpec
from smallboat.model.prepare import prepare_intent_data
from smallboat.warehouse.db import connect
from smallboat.warehouse.spark import spark_builds_dir, spark_live, spark_live_path, spark_memory
from smallboat.warehouse.transform import prepare_landing, run_transform
from tests.synthetic_home import synthetic_home

pytestmark = pytest.mark.slow

SESSIONS = 3_000
FLOAT_TOLERANCE = 1e-9
"""Relative tolerance for floating-point values (averages, vectors) between the two engines."""

MART_KEYS: dict[str, tuple[str, ...]] = {
    "session_events": ("session_id_hash", "event_index"),
    "sessions": ("session_id_hash",),
    "intent_examples": ("session_id_hash", "k"),
    "next_item_examples": ("session_id_hash", "detail_position"),
    "sku_features": ("product_sku_hash",),
}
"""Each compared mart and its key (unique: the quality gate tests that)."""


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same loaded sample built on DuckDB and on Spark; the settings of each, and timings."""
    root = tmp_path_factory.mktemp("spark_warehouse")
    with synthetic_home(root, sessions=SESSIONS, seed=23) as (settings, _):
        duck = settings.model_copy(update={"dbt_target": "duckdb"})
        spark = settings.model_copy(update={"dbt_target": "spark", "memory_limit": "1GB"})
        clock = time.perf_counter()
        duck_result = run_transform(duck)
        duck_seconds = time.perf_counter() - clock
        clock = time.perf_counter()
        spark_result = run_transform(spark)
        spark_seconds = time.perf_counter() - clock
        print(f"\ndbt build: DuckDB {duck_seconds:.1f} s, Spark {spark_seconds:.1f} s")
        yield {
            "duckdb": duck,
            "spark": spark,
            "results": {"duckdb": duck_result, "spark": spark_result},
        }


def _rows(settings: Settings, mart: str) -> list[dict[str, Any]]:
    """A mart's rows, sorted on its key and then on every column (a full key)."""
    with connect(settings, read_only=True) as con:
        rows: list[dict[str, Any]] = con.sql(f"select * from {mart}").to_arrow_table().to_pylist()
    columns = MART_KEYS[mart] + tuple(sorted(rows[0])) if rows else ()
    return sorted(rows, key=lambda row: tuple(_sort_key(row[c]) for c in columns))


def _sort_key(value: Any) -> tuple[int, str]:
    return (0, "") if value is None else (1, repr(_normalised(value)))


def _normalised(value: Any) -> Any:
    """One spelling per value across engines: integers of any width as int, floats as float,
    lists elementwise (Spark writes 32-bit counters where DuckDB writes 64-bit ones)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _normalised(a), _normalised(b)
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(b, float) and isinstance(a, int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b)


def _differences(
    mart: str, left: list[dict[str, Any]], right: list[dict[str, Any]], shown: int = 5
) -> list[str]:
    """What differs between two sorted row lists: columns, row counts, and the first rows that
    differ (each with its key and the differing columns)."""
    problems = []
    if left and right and set(left[0]) != set(right[0]):
        problems.append(f"{mart}: columns {sorted(left[0])} (DuckDB) != {sorted(right[0])} (Spark)")
        return problems
    if len(left) != len(right):
        problems.append(f"{mart}: {len(left)} rows on DuckDB, {len(right)} on Spark")
    for duck_row, spark_row in zip(left, right, strict=False):
        differing = [c for c in duck_row if not _same(duck_row[c], spark_row[c])]
        if differing:
            key = {c: duck_row[c] for c in MART_KEYS[mart]}
            detail = ", ".join(f"{c}: {duck_row[c]!r} vs {spark_row[c]!r}" for c in differing)
            problems.append(f"{mart} row {key}: {detail}")
            if len(problems) >= shown:
                break
    return problems


def test_every_model_builds_and_every_gate_test_runs_on_both(homes: dict[str, Any]) -> None:
    duck, spark = homes["results"]["duckdb"], homes["results"]["spark"]
    assert duck.success and spark.success
    assert spark.target == "spark"
    # The same nodes ran on both engines, all of them: every model built, every test passed.
    assert {n.name: n.status for n in spark.nodes} == {n.name: n.status for n in duck.nodes}
    assert {n.status for n in spark.models} == {"success"}
    assert len(spark.tests) >= 90 and {n.status for n in spark.tests} == {"pass"}
    live = spark_live(homes["spark"])
    assert live is not None
    marts = Path(live["location"])
    assert marts.parent == spark_builds_dir(homes["spark"])
    for mart in MART_KEYS:
        assert any((marts / mart).glob("*.parquet")), f"{mart} has no Parquet output"
    # Nothing of Spark's lands outside the home (no spark-warehouse or metastore in the cwd).
    assert not (Path.cwd() / "spark-warehouse").exists()
    assert not (Path.cwd() / "metastore_db").exists()


@pytest.mark.parametrize("mart", sorted(MART_KEYS))
def test_every_mart_is_identical_row_for_row(homes: dict[str, Any], mart: str) -> None:
    duck_rows = _rows(homes["duckdb"], mart)
    spark_rows = _rows(homes["spark"], mart)
    assert duck_rows, f"{mart} is empty: the sample proves nothing"
    problems = _differences(mart, duck_rows, spark_rows)
    assert not problems, "the marts differ between DuckDB and Spark:\n" + "\n".join(problems)


def test_the_comparison_sees_a_single_changed_value(homes: dict[str, Any]) -> None:
    """The comparison above can fail: one value off by more than the tolerance is reported."""
    rows = _rows(homes["duckdb"], "sessions")
    changed = [dict(row) for row in rows]
    changed[len(changed) // 2]["n_events"] += 1
    problems = _differences("sessions", rows, changed)
    assert len(problems) == 1 and "n_events" in problems[0]
    assert _differences("sessions", rows, [dict(row) for row in rows]) == []


def test_prepare_gives_the_same_arrays_from_either_warehouse(homes: dict[str, Any]) -> None:
    spec = FeatureSpec()
    duck = prepare_intent_data(homes["duckdb"], spec)
    spark = prepare_intent_data(homes["spark"], spec)
    assert list(duck.vocab.skus) == list(spark.vocab.skus)
    for name in ("sku_token", "price_token", "category_token", "leaf_code"):
        np.testing.assert_array_equal(getattr(duck.vocab, name), getattr(spark.vocab, name))
    assert duck.vocab.top_categories == spark.vocab.top_categories
    for name, value in vars(duck.tokens).items():
        np.testing.assert_array_equal(value, getattr(spark.tokens, name), err_msg=name)
    assert duck.splits.keys() == spark.splits.keys()
    for split, ex in duck.splits.items():
        assert len(ex) > 0
        for name, value in vars(ex).items():
            np.testing.assert_array_equal(value, getattr(spark.splits[split], name), err_msg=name)


def test_a_failed_spark_gate_leaves_the_live_build_as_it_was(homes: dict[str, Any]) -> None:
    """The transform's swap on Spark: a build that fails its gate is never named live, its
    folders are removed, and the gate shows the failing rows read from its audit Parquet."""
    settings = homes["spark"]
    before = spark_live_path(settings).read_text()
    builds_before = sorted(p.name for p in spark_builds_dir(settings).iterdir())
    # Measure the distributions on this small sample, with an add share no shop has.
    strict = {"distribution_min_rows": 0, "add_share_max": 0.001}
    with pytest.raises(QualityGateError) as failed:
        run_transform(settings, vars=strict)
    message = str(failed.value)
    assert "sessions_add_share" in message and "metric_value=" in message, message
    assert spark_live_path(settings).read_text() == before
    assert sorted(p.name for p in spark_builds_dir(settings).iterdir()) == builds_before
    record = json.loads((settings.quality_dir / "latest.json").read_text())
    assert record["invocation"]["success"] is False
    assert record["invocation"]["target"] == "spark"
    # Readers still get the last build that passed, and are told that a later one failed.
    with connect(settings, read_only=True) as con:
        [(n,)] = con.sql("select count(*) from sessions").fetchall()
    assert n == SESSIONS


def test_a_spark_build_is_whole(homes: dict[str, Any]) -> None:
    with pytest.raises(SmallboatError, match="builds the whole warehouse"):
        run_transform(homes["spark"], select="sessions")


def test_the_memory_limit_becomes_the_driver_heap() -> None:
    assert spark_memory("3GB") == "3072m"
    assert spark_memory("1.5 GiB") == "1536m"
    assert spark_memory("512MB") == "512m"
    for bad in ("lots", "3 XB", "100MB"):
        with pytest.raises(SmallboatError, match="SMALLBOAT_MEMORY_LIMIT"):
            spark_memory(bad)


def test_a_folder_spark_cannot_see_into_gets_a_placeholder_it_can(tmp_path: Path) -> None:
    """Spark skips files named `_*` or `.*`: a landing folder holding only an older smallboat's
    `_empty.parquet` made Spark fail to infer the table's schema. It gets a visible one now."""
    settings = Settings(home=tmp_path / "home")
    folder = settings.table_landing_dir("predictions")
    folder.mkdir(parents=True)
    pq.write_table(schema.PREDICTIONS.empty(), folder / "_empty.parquet")
    written = prepare_landing(settings)
    assert folder / "empty.parquet" in written
    assert pq.read_schema(folder / "empty.parquet").equals(schema.PREDICTIONS.arrow_schema)

"""The packaged dbt project's static contract: schema.py columns, grains, keys, vars, profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML comes with dbt, its stubs do not

from smallboat import schema
from smallboat.data.synth import release
from smallboat.warehouse.transform import DBT_PROJECT_DIR

MODELS_DIR = DBT_PROJECT_DIR / "models"
MODEL_SQL = sorted(MODELS_DIR.rglob("*.sql"))
MARTS = (
    "session_events",
    "sessions",
    "intent_examples",
    "next_item_examples",
    "sku_features",
    "prediction_labels",
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _model_yml(name: str) -> dict[str, Any]:
    [path] = list(MODELS_DIR.rglob(f"{name}.yml"))
    [model] = _yaml(path)["models"]
    assert model["name"] == name
    return model


def _test_names(tests: list[Any]) -> set[str]:
    """Names of the generic tests in a data_tests list (`unique` or `{unique: {...}}`)."""
    return {t if isinstance(t, str) else next(iter(t)) for t in tests}


def test_project_has_the_expected_models() -> None:
    assert {p.stem for p in MODEL_SQL} == {
        "stg_landing__browsing_events",
        "stg_landing__search_events",
        "stg_landing__catalog",
        "stg_landing__predictions",
        *MARTS,
    }


@pytest.mark.parametrize("sql", MODEL_SQL, ids=lambda p: p.stem)
def test_every_model_has_its_yml_beside_it_stating_its_grain(sql: Path) -> None:
    yml = sql.with_suffix(".yml")
    assert yml.exists(), f"{sql.name} has no {yml.name} beside it"
    assert "Grain: one row per" in _model_yml(sql.stem)["description"]


@pytest.mark.parametrize("sql", MODEL_SQL, ids=lambda p: p.stem)
def test_every_model_ends_with_select_from_final(sql: Path) -> None:
    assert sql.read_text().strip().endswith("select * from final")


@pytest.mark.parametrize("mart", MARTS)
def test_every_mart_tests_its_key(mart: str) -> None:
    model = _model_yml(mart)
    column_tests = {c["name"]: _test_names(c.get("data_tests", [])) for c in model["columns"]}
    single_key = any({"unique", "not_null"} <= tests for tests in column_tests.values())
    model_tests = _test_names(model.get("data_tests", []))
    combined_key = bool({"unique_combination_of_columns", "index_runs_one_to_n"} & model_tests)
    assert single_key or combined_key, f"{mart} tests no key"


@pytest.mark.parametrize("table", sorted(schema.LANDING_TABLES))
def test_source_and_staging_columns_are_schema_columns(table: str) -> None:
    [source] = _yaml(MODELS_DIR / "staging" / "_landing__sources.yml")["sources"]
    [declared] = [t for t in source["tables"] if t["name"] == table]
    expected = schema.LANDING_TABLES[table].column_names
    assert [c["name"] for c in declared["columns"]] == expected
    staging = _model_yml(f"stg_landing__{table}")
    assert [c["name"] for c in staging["columns"]] == expected


def test_distribution_defaults_pass_the_coveo_statistics() -> None:
    """DESIGN.md section 3: the full Coveo release must pass every error AND warn bound."""
    project_vars = _yaml(DBT_PROJECT_DIR / "dbt_project.yml")["vars"]
    coveo = {
        "add_share": release.SESSIONS_WITH_ADD / release.SESSIONS,  # 4.35%
        "purchase_share": release.SESSIONS_WITH_PURCHASE / release.SESSIONS,  # 1.08%
        # collapsed length: each detail's pageview pair folds into it
        "avg_session_length": (release.BROWSING_ROWS - release.DETAILS) / release.SESSIONS,
        "median_session_length": release.SESSION_LENGTH_MEDIAN,
    }
    for metric, value in coveo.items():
        for suffix in ("", "_warn"):
            low = project_vars.get(f"{metric}{suffix}_min")
            high = project_vars.get(f"{metric}{suffix}_max")
            if low is None and high is None:
                continue
            assert low is None or low * 1.5 <= value, f"{metric}{suffix}_min={low} vs {value}"
            assert high is None or value * 1.5 <= high, f"{metric}{suffix}_max={high} vs {value}"
    assert project_vars["split_valid_fraction"] == project_vars["split_test_fraction"] == 0.1


def test_profiles_have_duckdb_and_snowflake_targets_from_env() -> None:
    outputs = _yaml(DBT_PROJECT_DIR / "profiles.yml")["smallboat"]["outputs"]
    assert outputs["duckdb"]["type"] == "duckdb"
    # the file is the one `smallboat transform` builds and swaps in (warehouse/db.py names it)
    assert outputs["duckdb"]["path"] == "{{ env_var('SMALLBOAT_WAREHOUSE_PATH') }}"
    snowflake = outputs["snowflake"]
    assert snowflake["type"] == "snowflake"
    for key in ("account", "user", "password", "role", "warehouse", "database", "schema"):
        assert "env_var('SNOWFLAKE_" in snowflake[key], key


def test_label_session_gap_is_the_schema_one() -> None:
    project = _yaml(DBT_PROJECT_DIR / "dbt_project.yml")
    assert project["vars"]["monitor_session_gap_ms"] == schema.SESSION_GAP_MS


def test_prediction_points_are_the_schema_ones() -> None:
    project = _yaml(DBT_PROJECT_DIR / "dbt_project.yml")
    assert tuple(project["vars"]["intent_prediction_points"]) == schema.INTENT_PREDICTION_POINTS


def _render_generic_test(name: str, **arguments: str) -> str:
    """The SQL of a generic test with its arguments filled in (the test is plain SQL plus them)."""
    text = (DBT_PROJECT_DIR / "tests" / "generic" / f"{name}.sql").read_text()
    body = text.split(f"{{% test {name}(", 1)[1].split("%}", 1)[1].split("{% endtest %}")[0]
    for key, value in arguments.items():
        body = body.replace("{{ " + key + " }}", value)
    assert "{{" not in body, body
    return body


@pytest.mark.parametrize(
    ("indexes", "n_failing"),
    [
        ([("a", 1), ("a", 2), ("a", 3), ("b", 1)], 0),
        ([("a", 1), ("a", 2), ("a", 2), ("b", 1)], 1),  # a repeat
        ([("a", 1), ("a", 3), ("b", 1)], 1),  # a gap
        ([("a", 2), ("a", 3), ("b", 1)], 1),  # not starting at 1
        ([("a", 1), ("a", None), ("b", 1)], 1),  # a null index
    ],
)
def test_index_runs_one_to_n_fails_on_broken_numbering(
    indexes: list[tuple[str, int | None]], n_failing: int
) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("create table t (g varchar, i integer)")
    con.executemany("insert into t values (?, ?)", indexes)
    sql = _render_generic_test("index_runs_one_to_n", model="t", group_column="g", index_column="i")
    assert len(con.sql(sql).fetchall()) == n_failing

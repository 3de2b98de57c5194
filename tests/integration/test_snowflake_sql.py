"""The dbt project's Snowflake SQL parses under Snowflake's dialect: `dbt compile --target
snowflake` with the real dbt-snowflake adapter (its own venv, `make snowflake-deps`: its certifi pin
conflicts with the main lock) renders every model and test without a connection, and sqlglot's
Snowflake parser reads each statement, so a dialect slip is caught before a user finds it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlglot
from sqlglot.errors import ParseError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = ROOT / "src" / "smallboat" / "warehouse" / "dbt"
SNOWFLAKE_DBT = ROOT / ".venv-snowflake" / "bin" / "dbt"
MARTS = {
    "session_events",
    "sessions",
    "intent_examples",
    "next_item_examples",
    "sku_features",
    "prediction_labels",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert SNOWFLAKE_DBT.is_file(), "run `make snowflake-deps` (dbt-snowflake's own venv)"
    work = tmp_path_factory.mktemp("snowflake")
    env = {
        **os.environ,
        "SMALLBOAT_HOME": str(work / "home"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # The profile reads these; compile opens no connection, so none is checked.
        "SNOWFLAKE_ACCOUNT": "acme-xy12345",
        "SNOWFLAKE_USER": "smallboat",
        "SNOWFLAKE_PASSWORD": "unused",
        "SNOWFLAKE_ROLE": "transformer",
        "SNOWFLAKE_WAREHOUSE": "transforming",
        "SNOWFLAKE_DATABASE": "analytics",
    }
    done = subprocess.run(
        [
            str(SNOWFLAKE_DBT), "compile", "--target", "snowflake",
            "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
            "--no-populate-cache", "--no-introspect", "--no-partial-parse",
        ],
        env=env, cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Registered adapter: snowflake=" in done.stdout
    return work / "target" / "compiled" / "smallboat"


def test_every_model_and_test_parses_as_snowflake(compiled: Path) -> None:
    files = sorted(compiled.rglob("*.sql"))
    models = {p.stem for p in (compiled / "models").rglob("*.sql") if p.parent.suffix != ".yml"}
    assert models >= MARTS
    # dbt-snowflake's own rendering, not DuckDB's: dbt.type_string() is TEXT there.
    staged = (compiled / "models" / "staging" / "stg_landing__browsing_events.sql").read_text()
    assert "as TEXT" in staged
    failures = []
    for path in files:
        try:
            sqlglot.parse(path.read_text(), read="snowflake")
        except ParseError as error:
            failures.append(f"{path.relative_to(compiled)}: {str(error).splitlines()[0]}")
    assert not failures, "\n".join(failures)
    assert len(files) > 50  # the models and every data test of the quality gate


def test_the_parser_catches_a_named_window() -> None:
    """The slip this test found in session_events: Snowflake has no WINDOW clause."""
    sql = "select rank() over w as r from t window w as (partition by a order by b)"
    sqlglot.parse(sql, read="duckdb")
    with pytest.raises(ParseError):
        sqlglot.parse(sql, read="snowflake")

"""synth -> load -> transform on real DuckDB and dbt: the oracle and the warehouse agree."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from smallboat.config import Settings
from smallboat.schema import ORACLE_FILE
from smallboat.warehouse.transform import run_transform
from tests.synthetic_home import synthetic_home


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    with synthetic_home(tmp_path_factory.mktemp("pipeline"), sessions=8_000, seed=5) as built:
        run_transform(built[0])
        yield built


def intent_examples(settings: Settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.sql(
            "select session_id_hash, k, prefix_length, label from intent_examples"
        ).to_df()


def test_oracle_and_intent_examples_hold_the_same_pairs(built: tuple[Settings, Path]) -> None:
    settings, data = built
    oracle = pd.read_parquet(data / ORACLE_FILE)
    examples = intent_examples(settings)
    assert len(examples) > 500
    key = ["session_id_hash", "k"]
    merged = oracle.merge(examples, on=key, how="outer", indicator=True, suffixes=("_o", "_w"))
    assert (merged._merge == "both").all(), merged[merged._merge != "both"].head()
    assert (merged.prefix_length_o == merged.prefix_length_w).all()
    assert (merged.label_o == merged.label_w).all()


def test_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "SMALLBOAT_HOME": str(tmp_path / "home")}
    cmd = [str(Path(sys.executable).parent / "smallboat"), "demo", "--sessions", "3000"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "intent_examples" in first.stdout
    # step 7: the served champion answered real sessions, and boto3 called it
    flat = " ".join(first.stdout.split())  # the console wraps long lines at spaces
    assert "P(purchase) after each click" in flat
    assert "invoke_endpoint(EndpointName='smallboat-intent') -> P(purchase) = 0." in flat
    # Running it again loads nothing twice: the files are recognised by their content hash.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "already" in second.stdout.lower()

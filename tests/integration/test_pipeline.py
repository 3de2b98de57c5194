"""synth -> load -> transform on real DuckDB and dbt: the oracle and the warehouse agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from smallboat.config import Settings
from smallboat.schema import ORACLE_FILE


@pytest.fixture(scope="module")
def built(built_home: tuple[Settings, Path]) -> tuple[Settings, Path]:
    """The session's synthetic home, loaded and built by `run_transform` (tests/integration/
    conftest.py; the served champion trains on a copy of it)."""
    return built_home


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


def test_demo_refuses_a_home_it_did_not_make(tmp_path: Path) -> None:
    """The demo starts its home over: it never wipes a home holding someone's warehouse. (The
    whole demo runs in tests/integration/test_closed_loop.py, whose tests all read its run.)"""
    home = tmp_path / "home"
    home.mkdir()
    (home / "warehouse.duckdb").write_bytes(b"")
    env = {**os.environ, "SMALLBOAT_HOME": str(home)}
    cmd = [str(Path(sys.executable).parent / "smallboat"), "demo", "--sessions", "3000"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "already holds a warehouse the demo did not make" in " ".join(run.stderr.split())
    assert (home / "warehouse.duckdb").exists()

"""The bundle's contract (`smallboat.bundle`): bundle.json written and read back, its errors, no
torch on the way; and the one digest of a dbt build both cards show."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from smallboat.bundle import (
    BUNDLE_FORMAT,
    META_FILE,
    BundleError,
    BundleMeta,
    read_current_meta,
    read_meta,
    write_meta,
)
from smallboat.warehouse.quality import NodeResult, TransformResult, transform_digest


def test_meta_round_trips_with_numpy_values_and_unknown_keys(tmp_path: Path) -> None:
    meta = BundleMeta.from_dict(
        {
            "format": BUNDLE_FORMAT,
            "model_name": "m",
            "sizes": {"n_sku": 12, "n_category": 3, "n_gap": 4},
            "metrics": {"roc_auc": np.float32(0.75), "n": np.int64(9)},
            "run_pathspec": "TrainFlow/7",
            "future_key": [1, 2],
        }
    )
    write_meta(tmp_path, meta)
    written = json.loads((tmp_path / META_FILE).read_text())
    keys = ["format", "model_name", "sizes", "metrics", "run_pathspec", "future_key"]
    assert list(written) == keys  # the fields in order, absent ones left out, unknown ones kept
    assert written["metrics"] == {"roc_auc": 0.75, "n": 9}
    again = read_meta(tmp_path)
    assert again.extra == {"future_key": [1, 2]}
    assert again.version == "TrainFlow/7"
    assert again.to_dict() == written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"has no bundle\.json: not a model bundle"),
        ("{not json", r"bundle\.json is not valid JSON: "),
        ("[1, 2]", r"bundle\.json holds list, expected a JSON object"),
        ('{"format": "1"}', r"bundle\.json: format: Input should be a valid integer"),
        ('{"format": 1, "sizes": {"n_sku": "many"}}', r"bundle\.json: sizes\.n_sku: "),
    ],
)
def test_a_bad_bundle_json_is_a_bundle_error_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / META_FILE).write_text(content)
    with pytest.raises(BundleError, match=message):
        read_meta(tmp_path)


def test_a_missing_folder_or_another_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a model bundle: it is not a directory"):
        read_meta(tmp_path / "gone")
    (tmp_path / META_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT + 1}))
    assert read_meta(tmp_path).format == BUNDLE_FORMAT + 1
    with pytest.raises(BundleError, match=f"bundle format {BUNDLE_FORMAT + 1}; this version reads"):
        read_current_meta(tmp_path)
    with pytest.raises(BundleError, match="has no sizes"):
        read_meta(tmp_path).require("sizes", tmp_path)


def test_reading_a_bundle_contract_does_not_import_torch() -> None:
    code = (
        "import sys, smallboat.bundle, smallboat.registry, smallboat.monitor.snapshot; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _node(name: str, kind: str, status: str, severity: str | None = None) -> NodeResult:
    failures = None if kind == "model" else (0 if status == "pass" else 2)
    return NodeResult(f"{kind}.{name}", name, kind, status, severity, failures, None, 0.1)


def test_one_digest_of_a_dbt_build_from_the_result_or_its_record(tmp_path: Path) -> None:
    result = TransformResult(
        nodes=(
            _node("stg_sessions", "model", "success"),
            _node("unique_session_id", "test", "pass", "error"),
            _node("few_purchases", "test", "warn", "warn"),
        ),
        started_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
        elapsed_seconds=1.23456,
        target="dev",
        select=None,
        vars={},
    ).write(tmp_path)
    digest = transform_digest(result)
    assert digest == {
        "headline": "dbt build at 2024-05-01T12:00:00+00:00: gate passed; 1 models success, "
        "1 tests pass, 1 tests warn.",
        "success": True,
        "elapsed_seconds": 1.23456,
        "summary": {"models_success": 1, "tests_pass": 1, "tests_warn": 1},
        "tests": [
            {"name": "unique_session_id", "status": "pass", "severity": "error", "failures": 0},
            {"name": "few_purchases", "status": "warn", "severity": "warn", "failures": 2},
        ],
        "warnings": ["few_purchases"],
        "results_path": str(tmp_path / "latest.json"),
    }
    recorded = json.loads((tmp_path / "latest.json").read_text())
    assert transform_digest(recorded) == {
        **digest,
        "elapsed_seconds": 1.235,  # the record keeps milliseconds
        "results_path": None,  # and does not say where it is
    }
    assert transform_digest({})["headline"] == "no transform results recorded"

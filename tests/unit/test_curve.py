"""model.curve: the measured learning curve's file (written per size by the bench) and where a
run's training-set size sits on it (the training card's text and table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smallboat.model import curve
from smallboat.model.curve import curve_rows, load_curve, position_text, write_point
from smallboat.model.report import learning_curve_components


def point(sessions: int, train: int, gap: float) -> dict[str, Any]:
    return {
        "sessions": sessions,
        "train_examples": train,
        "model_auc": 0.9 - gap,
        "oracle_auc": 0.9,
        "gap": gap,
        "count_baseline_auc": 0.7,
        "target_gap": 0.05 if sessions == 20_000 else None,
    }


def test_points_merge_by_size_and_stay_sorted(tmp_path: Path) -> None:
    path = tmp_path / "curve.json"
    write_point(point(50_000, 7_000, 0.03), path)
    write_point(point(20_000, 3_000, 0.08), path)
    again = write_point(point(50_000, 7_100, 0.02), path)  # a re-run replaces its size
    assert [(p["sessions"], p["gap"]) for p in again] == [(20_000, 0.08), (50_000, 0.02)]
    assert load_curve(path) == again == json.loads(path.read_text())


def test_a_missing_or_broken_file_is_an_empty_curve(tmp_path: Path) -> None:
    assert load_curve(tmp_path / "none.json") == []
    (tmp_path / "bad.json").write_text("{not json")
    assert load_curve(tmp_path / "bad.json") == []
    (tmp_path / "obj.json").write_text('{"a": 1}')
    assert load_curve(tmp_path / "obj.json") == []
    assert "No learning curve measured yet" in position_text(100, [])


def test_a_run_is_placed_between_the_measured_points() -> None:
    points = [point(20_000, 3_000, 0.08), point(50_000, 7_000, 0.03)]
    between = position_text(5_000, points)
    assert "5,000 intent examples" in between
    assert (
        "between 20,000 synthetic sessions (3,000 training examples: gap to the oracle 0.080"
        in (between)
    )
    assert "and 50,000 synthetic sessions" in between
    assert "fewer than the smallest measured point, 20,000" in position_text(100, points)
    assert "beyond the largest measured point, 50,000" in position_text(9_000, points)
    rows = curve_rows(points, 5_000)
    assert [r[0] for r in rows] == ["20,000", "this run", "50,000"]
    assert rows[0][4] == "0.080 (target <= 0.05)" and rows[2][4] == "0.030"
    assert [r[0] for r in curve_rows(points, 9_000)][-1] == "this run"


def test_the_card_places_the_run_on_the_curve_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(curve, "CURVE_FILE", tmp_path / "curve.json")
    report = {"row_counts": {"train": {"examples": 5_000}}}
    [alone] = learning_curve_components(report)
    assert "No learning curve measured yet" in json.dumps(alone.render())
    write_point(point(20_000, 3_000, 0.08))
    write_point(point(50_000, 7_000, 0.03))
    text, table = learning_curve_components(report)
    assert "between 20,000 synthetic sessions" in json.dumps(text.render())
    assert "this run" in json.dumps(table.render())

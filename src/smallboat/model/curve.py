"""The measured learning curve (issue 18): model vs oracle vs count baseline by data size.

Its points are data, kept in one file beside this module (`CURVE_FILE`): `bench/learning_curve.py`
writes one point per synthetic data size (merged by size, each size its own invocation), and every
TrainFlow card reads it to show where the run's training-set size sits on the curve. The size a
run and a point share is the number of training intent examples (prefixes at an add), which the
card knows without knowing how many sessions a shop has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CURVE_FILE = Path(__file__).resolve().parent / "learning_curve.json"
"""The curve's measured points: a JSON list, one object per size (see `write_point`)."""


def load_curve(path: Path | None = None) -> list[dict[str, Any]]:
    """The measured points by ascending size (of `CURVE_FILE` by default); [] when the file is
    missing or unreadable (the card then says so: a curve is evidence, never a reason for a run to
    fail)."""
    try:
        points = json.loads((path or CURVE_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(points, list):
        return []
    good = [
        p
        for p in points
        if isinstance(p, dict) and isinstance(p.get("train_examples"), int | float)
    ]
    return sorted(good, key=lambda p: (p["train_examples"], p.get("sessions", 0)))


def write_point(point: dict[str, Any], path: Path | None = None) -> list[dict[str, Any]]:
    """Add (or replace, for the same `sessions`) one measured point; the whole curve back."""
    path = path or CURVE_FILE
    kept = [p for p in load_curve(path) if p.get("sessions") != point["sessions"]]
    points = sorted([*kept, point], key=lambda p: (p["train_examples"], p.get("sessions", 0)))
    path.write_text(json.dumps(points, indent=2) + "\n")
    return points


def position_text(train_examples: int, points: list[dict[str, Any]]) -> str:
    """Where a run with `train_examples` training examples sits on the measured curve."""
    if not points:
        return "No learning curve measured yet (`bench/learning_curve.py` writes it)."
    lower = [p for p in points if p["train_examples"] <= train_examples]
    upper = [p for p in points if p["train_examples"] > train_examples]

    def at(p: dict[str, Any]) -> str:
        return (
            f"{int(p['sessions']):,} synthetic sessions ({int(p['train_examples']):,} training "
            f"examples: gap to the oracle {p['gap']:.3f} ROC-AUC)"
        )

    head = f"This run trained on {train_examples:,} intent examples: "
    if lower and upper:
        return head + f"between {at(lower[-1])} and {at(upper[0])} on the measured curve."
    if upper:
        return head + f"fewer than the smallest measured point, {at(upper[0])}."
    return head + f"at or beyond the largest measured point, {at(lower[-1])}."


def curve_rows(points: list[dict[str, Any]], train_examples: int) -> list[list[Any]]:
    """The curve as table rows, the run's own place marked between them."""
    rows: list[list[Any]] = []
    marked = False
    for p in points:
        if not marked and p["train_examples"] > train_examples:
            rows.append(["this run", f"{train_examples:,}", "", "", "", ""])
            marked = True
        target = p.get("target_gap")
        rows.append(
            [
                f"{int(p['sessions']):,}",
                f"{int(p['train_examples']):,}",
                f"{p['model_auc']:.3f}",
                f"{p['oracle_auc']:.3f}",
                f"{p['gap']:.3f}" + ("" if target is None else f" (target <= {target:g})"),
                f"{p['count_baseline_auc']:.3f}",
            ]
        )
    if not marked:
        rows.append(["this run", f"{train_examples:,}", "", "", "", ""])
    return rows


CURVE_HEADERS = [
    "synthetic sessions",
    "training examples",
    "model AUC",
    "oracle AUC",
    "gap",
    "count baseline AUC",
]

"""Live figures from the warehouse's `prediction_labels`: traffic, latency, the prediction
distribution, and quality per model version and time window from the delayed labels.

Quality is measured where the offline test measured it: on evaluation points only (the intent
task's population and prediction points, see the model's SQL), so a live ROC-AUC and the test
ROC-AUC of the same model answer the same question and can be compared, CI beside CI.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from smallboat.config import Settings
from smallboat.metrics.intent import binary_metrics, calibration, challenge_breakdown
from smallboat.metrics.uncertainty import bootstrap_intervals
from smallboat.warehouse.db import connect

LABELS_TABLE = "prediction_labels"
_TRAFFIC_STEPS_MS = (
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
    21_600_000,
    86_400_000,
    7 * 86_400_000,
)
"""Traffic bar widths: the first that draws the logged span in at most `_TRAFFIC_BARS` bars."""
_TRAFFIC_BARS = 40
PROBABILITY_EDGES = tuple(round(0.1 * i, 1) for i in range(11))


def read_predictions(settings: Settings) -> pd.DataFrame:
    """Every logged prediction with its delayed label (empty before the first transform)."""
    with connect(settings, read_only=True) as con:
        tables = {
            row[0] for row in con.sql("select table_name from information_schema.tables").fetchall()
        }
        if LABELS_TABLE not in tables:
            return pd.DataFrame()
        return con.sql(f"select * from {LABELS_TABLE}").df()


def traffic(frame: pd.DataFrame) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Predictions per bar of server time (bar width chosen from the span) with latency
    percentiles, and the latency percentiles over everything."""
    if frame.empty:
        return [], {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    at = frame["predicted_at_ms"].to_numpy(np.int64)
    span = int(at.max() - at.min()) + 1
    step = next((s for s in _TRAFFIC_STEPS_MS if span / s <= _TRAFFIC_BARS), _TRAFFIC_STEPS_MS[-1])
    start = at // step * step
    bars = []
    for window_start, group in frame.groupby(start, sort=True):
        bars.append(
            {
                "window_start_ms": int(window_start),
                "window_end_ms": int(window_start) + step,
                "predictions": len(group),
                "sessions": int(group["session_id_hash"].nunique()),
                **_percentiles(group["latency_ms"]),
            }
        )
    return bars, {"count": len(frame), **_percentiles(frame["latency_ms"])}


def _percentiles(latency: pd.Series) -> dict[str, float | None]:
    values = latency.to_numpy(np.float64)
    if not len(values):
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def prediction_histogram(frame: pd.DataFrame) -> dict[str, Any]:
    """The answered probabilities in ten bins of width 0.1 (1.0 falls in the last)."""
    prob = frame["purchase_probability"].dropna().to_numpy(np.float64) if len(frame) else []
    counts = np.bincount(np.minimum((np.asarray(prob) * 10).astype(np.int64), 9), minlength=10)
    return {
        "count": len(prob),
        "mean": float(np.mean(prob)) if len(prob) else None,
        "edges": list(PROBABILITY_EDGES),
        "counts": [int(c) for c in counts],
    }


def evaluation_points(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[frame["is_evaluation_point"].astype(bool)]


def labelled_points(frame: pd.DataFrame) -> pd.DataFrame:
    points = evaluation_points(frame)
    if points.empty:
        return points
    return points[points["label"].notna()]


def _quality(group: pd.DataFrame) -> dict[str, Any]:
    prob = group["purchase_probability"].to_numpy(np.float64)
    label = group["label"].to_numpy(np.int64)
    k = group["events_after_add"].to_numpy(np.int64)
    metrics = binary_metrics(prob, label)
    challenge = challenge_breakdown(prob, label, k) if len(prob) else None
    return {
        "n_labelled": int(metrics["n"]),
        "positives": int(metrics["positives"]),
        "roc_auc": metrics["roc_auc"],
        "challenge_score": None if challenge is None else challenge["score"],
        "challenge_max": None if challenge is None else challenge["max_attainable"],
        "positive_rate": metrics["positive_rate"],
        "mean_probability": metrics["mean_prob"],
    }


def live_quality(
    frame: pd.DataFrame, *, window_ms: int, n_bootstrap: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Per model version: quality over all its labelled evaluation points (ROC-AUC with a
    session-bootstrap CI, Challenge score, calibration), and per window of event time."""
    labelled = labelled_points(frame)
    points = evaluation_points(frame)
    pending = int(points["label"].isna().sum()) if len(points) else 0
    overall, windows = [], []
    if len(labelled):
        for version, group in labelled.groupby("model_version", sort=True):
            row = {"model_version": str(version), **_quality(group)}
            row["roc_auc_ci"] = _auc_ci(group, n_bootstrap, seed)
            cal = calibration(group["purchase_probability"], group["label"].astype(np.int64))
            row["calibration"] = [
                {
                    "bin_low": b["lower"],
                    "bin_high": b["upper"],
                    "count": b["n"],
                    "mean_probability": b["mean_predicted"],
                    "positive_rate": b["observed_rate"],
                }
                for b in cal["bins"]
                if b["n"]
            ]
            overall.append(row)
        start = labelled["event_time_ms"].to_numpy(np.int64) // window_ms * window_ms
        for (version, window_start), group in labelled.groupby(
            [labelled["model_version"], start], sort=True
        ):
            windows.append(
                {
                    "model_version": str(version),
                    "window_start_ms": int(window_start),
                    "window_end_ms": int(window_start) + window_ms,
                    **{
                        k: v
                        for k, v in _quality(group).items()
                        if k in ("n_labelled", "roc_auc", "challenge_score", "positive_rate")
                    },
                }
            )
    return {"overall": overall, "windows": windows, "pending": pending}


def _auc_ci(group: pd.DataFrame, n_bootstrap: int, seed: int) -> list[float] | None:
    if n_bootstrap <= 0 or group["label"].nunique() < 2:
        return None
    sessions = pd.factorize(group["session_id_hash"])[0]
    boot = bootstrap_intervals(
        group["purchase_probability"].to_numpy(np.float64),
        group["label"].to_numpy(np.int64),
        group["events_after_add"].to_numpy(np.int64),
        groups=sessions,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    low, high = boot["roc_auc"]["low"], boot["roc_auc"]["high"]
    return None if low is None or high is None else [float(low), float(high)]

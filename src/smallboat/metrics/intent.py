"""Evaluation metrics of the purchase-intent task: the Data Challenge's score and the usual rest.

Arrays in (one probability, label and prediction point per intent example), plain floats and
JSON-serialisable dicts out, so the flow can keep them as artifacts, draw them on the card and log
them to MLflow. A metric that is undefined on its input (a ranking metric over a single class, any
metric over no examples) is `None` with the reason beside it, never an exception and never NaN.

How sure a metric is (bootstrap intervals, paired comparisons, DeLong's test) lives in
`smallboat.metrics.uncertainty`; `intent_report` gathers both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from smallboat.errors import SmallboatError
from smallboat.metrics.checks import (
    THRESHOLD,
    predicted_right,
    prediction_points,
    probabilities_and_labels,
)
from smallboat.metrics.uncertainty import bootstrap_intervals
from smallboat.schema import INTENT_BUCKET_WEIGHTS, INTENT_PREDICTION_POINTS

CHALLENGE_MAX = float(sum(INTENT_BUCKET_WEIGHTS.values()))
"""4.5: the score of a perfect predictor when every prediction point has examples."""

LOG_LOSS_EPS = 1e-7
"""Probabilities are clipped to [eps, 1 - eps] for the log-loss: a confident miss costs ~16.1,
not infinity (float32 model outputs reach exactly 0 and 1)."""


# ---- the Challenge score -------------------------------------------------------------------


def challenge_breakdown(
    prob: npt.ArrayLike, label: npt.ArrayLike, k: npt.ArrayLike
) -> dict[str, Any]:
    """The Data Challenge's intent score with its parts (DESIGN.md section 4).

    Per prediction point k: accuracy of `prob >= 0.5` against the label, times the point's weight
    (1.0, 0.9, ... 0.5), summed; 4.5 at most. A point with no examples contributes 0 and its weight
    is left out of `max_attainable` (the Challenge's test set has every point; a small sample may
    not, and imputing one would invent data), so `normalised = score / max_attainable` in [0, 1]
    compares samples with different points present.

    Keys: score, max_attainable, max (4.5), normalised, buckets -> {"k0": {n, weight, accuracy,
    weighted}} (accuracy and weighted None for an empty point).
    """
    p, y = probabilities_and_labels(prob, label)
    kk = prediction_points(k, len(p))
    correct = predicted_right(p, y)
    score, attainable, buckets = 0.0, 0.0, {}
    for point, weight in INTENT_BUCKET_WEIGHTS.items():
        sel = kk == point
        n = int(sel.sum())
        acc = float(correct[sel].mean()) if n else None
        if acc is not None:
            score += weight * acc
            attainable += weight
        buckets[f"k{point}"] = {
            "n": n,
            "weight": weight,
            "accuracy": acc,
            "weighted": None if acc is None else weight * acc,
        }
    return {
        "score": score,
        "max_attainable": attainable,
        "max": CHALLENGE_MAX,
        "normalised": score / attainable if attainable else None,
        "buckets": buckets,
    }


def challenge_score(prob: npt.ArrayLike, label: npt.ArrayLike, k: npt.ArrayLike) -> float:
    """The Data Challenge's intent score (max 4.5; an empty prediction point contributes 0)."""
    return float(challenge_breakdown(prob, label, k)["score"])


# ---- point metrics -------------------------------------------------------------------------

_POINT_METRICS = (
    "accuracy",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "positive_rate",
    "mean_prob",
)


def roc_auc(prob: npt.ArrayLike, label: npt.ArrayLike) -> float | None:
    """ROC-AUC, a tie counting as half a correctly ordered pair; None unless both classes occur."""
    p, y = probabilities_and_labels(prob, label)
    if not 0 < y.sum() < len(y):
        return None
    # Imported here: sklearn.metrics costs ~0.7 s and data.synth imports this module.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def log_loss(prob: npt.ArrayLike, label: npt.ArrayLike) -> float | None:
    """Mean negative log-likelihood, probabilities clipped at LOG_LOSS_EPS; None for no examples."""
    p, y = probabilities_and_labels(prob, label)
    if not len(p):
        return None
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))


def binary_metrics(prob: npt.ArrayLike, label: npt.ArrayLike) -> dict[str, Any]:
    """n, positives and the metrics in `_POINT_METRICS`; `undefined` maps a None metric to why.

    accuracy thresholds at 0.5; roc_auc is `roc_auc`; pr_auc is average precision; log_loss is
    `log_loss`; brier is the mean squared error.
    """
    p, y = probabilities_and_labels(prob, label)
    n, pos = len(p), int(y.sum())
    out: dict[str, Any] = {"n": n, "positives": pos}
    if n == 0:
        out |= dict.fromkeys(_POINT_METRICS)
        out["undefined"] = dict.fromkeys(_POINT_METRICS, "no examples")
        return out
    out["accuracy"] = float(predicted_right(p, y).mean())
    out["roc_auc"] = out["pr_auc"] = None
    out["log_loss"] = log_loss(p, y)
    out["brier"] = float(np.mean((p - y) ** 2))
    out["positive_rate"] = pos / n
    out["mean_prob"] = float(p.mean())
    out["undefined"] = {}
    if 0 < pos < n:
        from sklearn.metrics import average_precision_score

        out["roc_auc"] = roc_auc(p, y)
        out["pr_auc"] = float(average_precision_score(y, p))
    else:
        reason = f"only one class among {n} examples (all {int(y[0])}); ranking needs both"
        out["undefined"] = {"roc_auc": reason, "pr_auc": reason}
    return out


# ---- calibration and curves ----------------------------------------------------------------


def calibration(prob: npt.ArrayLike, label: npt.ArrayLike, *, n_bins: int = 10) -> dict[str, Any]:
    """Reliability bins of equal width on [0, 1] and the expected calibration error.

    Bin i holds [i/n_bins, (i+1)/n_bins) (the last also holds 1.0); each reports n, the mean
    predicted probability and the observed positive rate (None when empty). ECE is the
    n-weighted mean of |mean predicted - observed| over the bins.
    """
    if n_bins < 1:
        raise SmallboatError(f"calibration: n_bins must be at least 1, got {n_bins}")
    p, y = probabilities_and_labels(prob, label)
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    bins, gap = [], 0.0
    for i in range(n_bins):
        c = int(count[i])
        mean_p = float(sum_p[i] / c) if c else None
        rate = float(sum_y[i] / c) if c else None
        if mean_p is not None and rate is not None:
            gap += c * abs(mean_p - rate)
        bins.append(
            {
                "lower": i / n_bins,
                "upper": (i + 1) / n_bins,
                "n": c,
                "mean_predicted": mean_p,
                "observed_rate": rate,
            }
        )
    return {"n_bins": n_bins, "bins": bins, "ece": gap / len(p) if len(p) else None}


def _thin(n: int, max_points: int) -> np.ndarray:
    """At most max_points indices spread evenly over range(n), first and last included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def curves(prob: npt.ArrayLike, label: npt.ArrayLike, *, max_points: int = 200) -> dict[str, Any]:
    """ROC and precision-recall curves for a chart, each thinned to at most max_points points.

    Keys: roc -> {fpr, tpr}, pr -> {recall, precision}, undefined (None, or why the lists are
    empty: a curve needs both classes).
    """
    if max_points < 2:
        raise SmallboatError(f"curves: max_points must be at least 2, got {max_points}")
    p, y = probabilities_and_labels(prob, label)
    pos = int(y.sum())
    if not 0 < pos < len(y):
        return {
            "roc": {"fpr": [], "tpr": []},
            "pr": {"recall": [], "precision": []},
            "undefined": f"{len(y)} examples with {pos} positives; curves need both classes",
        }
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)
    r, q = _thin(len(fpr), max_points), _thin(len(recall), max_points)
    return {
        "roc": {"fpr": fpr[r].tolist(), "tpr": tpr[r].tolist()},
        "pr": {"recall": recall[q].tolist(), "precision": precision[q].tolist()},
        "undefined": None,
    }


# ---- the report ----------------------------------------------------------------------------


def intent_report(
    prob: npt.ArrayLike,
    label: npt.ArrayLike,
    k: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    max_curve_points: int = 200,
) -> dict[str, Any]:
    """Everything the evaluate step, the card and monitoring show about one model, JSON-ready.

    Keys:
      n, threshold (0.5)
      challenge: `challenge_breakdown` (score, max_attainable, max, normalised, buckets)
      overall: `binary_metrics` over all examples (n, positives, accuracy, roc_auc, pr_auc,
        log_loss, brier, positive_rate, mean_prob, undefined)
      by_bucket: {"k0": binary_metrics, ..., "k10": ...} for every prediction point
      calibration: `calibration` (n_bins, bins, ece)
      curves: `curves` (roc {fpr, tpr}, pr {recall, precision}, undefined)
      bootstrap: `bootstrap_intervals`, or None when n_bootstrap is 0
    Pass session ids as groups so the bootstrap resamples sessions (see
    `smallboat.metrics.uncertainty`).
    """
    p, y = probabilities_and_labels(prob, label)
    kk = prediction_points(k, len(p))
    by_bucket = {
        f"k{point}": binary_metrics(p[kk == point], y[kk == point])
        for point in INTENT_PREDICTION_POINTS
    }
    boot = None
    if n_bootstrap:
        boot = bootstrap_intervals(
            p, y, kk, groups=groups, n_bootstrap=n_bootstrap, seed=seed, level=level
        )
    return {
        "n": len(p),
        "threshold": THRESHOLD,
        "challenge": challenge_breakdown(p, y, kk),
        "overall": binary_metrics(p, y),
        "by_bucket": by_bucket,
        "calibration": calibration(p, y, n_bins=n_bins),
        "curves": curves(p, y, max_points=max_curve_points),
        "bootstrap": boot,
    }


def flat_metrics(report: dict[str, Any], *, prefix: str = "") -> dict[str, float]:
    """The report's scalars under MLflow-friendly names; undefined metrics are left out.

    Names: challenge_score, challenge_score_max_attainable, challenge_score_normalised, n,
    accuracy, roc_auc, pr_auc, log_loss, brier, positive_rate, mean_prob, ece; per prediction
    point acc_k0, roc_auc_k0, pr_auc_k0, log_loss_k0, brier_k0, n_k0, ...; with a bootstrap
    roc_auc_ci_low/high and challenge_score_ci_low/high. `prefix` goes before each ("test_").
    """
    ch = report["challenge"]
    out: dict[str, float | None] = {
        "challenge_score": ch["score"],
        "challenge_score_max_attainable": ch["max_attainable"],
        "challenge_score_normalised": ch["normalised"],
        "n": report["n"],
        "ece": report["calibration"]["ece"],
    }
    out |= {name: report["overall"][name] for name in _POINT_METRICS}
    short = {
        "accuracy": "acc",
        "roc_auc": "roc_auc",
        "pr_auc": "pr_auc",
        "log_loss": "log_loss",
        "brier": "brier",
    }
    for bucket, metrics in report["by_bucket"].items():
        out[f"n_{bucket}"] = metrics["n"]
        out |= {f"{s}_{bucket}": metrics[name] for name, s in short.items()}
    if report.get("bootstrap"):
        for name in ("roc_auc", "challenge_score"):
            out[f"{name}_ci_low"] = report["bootstrap"][name]["low"]
            out[f"{name}_ci_high"] = report["bootstrap"][name]["high"]
    return {f"{prefix}{key}": float(value) for key, value in out.items() if value is not None}

"""Evaluation metrics of the purchase-intent task: the Data Challenge's score and the usual rest.

Arrays in (one probability, label and prediction point per intent example), plain floats and
JSON-serialisable dicts out, so the flow can keep them as artifacts, draw them on the card and log
them to MLflow. A metric that is undefined on its input (a ranking metric over a single class, any
metric over no examples) is `None` with the reason beside it, never an exception and never NaN.

Uncertainty comes from a percentile bootstrap. The intent examples of one session (one row per
prediction point) are correlated, so pass the session ids as `groups` to resample whole sessions;
without them rows are resampled independently and the intervals come out too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from smallboat.errors import SmallboatError
from smallboat.schema import INTENT_BUCKET_WEIGHTS, INTENT_PREDICTION_POINTS

THRESHOLD = 0.5
"""A probability at or above this predicts a purchase (the Challenge's rule)."""

CHALLENGE_MAX = float(sum(INTENT_BUCKET_WEIGHTS.values()))
"""4.5: the score of a perfect predictor when every prediction point has examples."""

LOG_LOSS_EPS = 1e-7
"""Probabilities are clipped to [eps, 1 - eps] for the log-loss: a confident miss costs ~16.1,
not infinity (float32 model outputs reach exactly 0 and 1)."""

_BOOTSTRAP_CELLS = 4_000_000  # weights per bootstrap chunk (32 MB of float64): bounds memory
_Array = npt.NDArray[np.float64]


def _as_1d(name: str, values: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise SmallboatError(
            f"intent metrics: {name} must be one value per example, got shape {arr.shape}"
        )
    return arr


def _validate(prob: npt.ArrayLike, label: npt.ArrayLike) -> tuple[_Array, _Array]:
    p = _as_1d("prob", prob).astype(np.float64)
    y = _as_1d("label", label)
    if len(p) != len(y):
        raise SmallboatError(
            f"intent metrics: prob has {len(p)} values but label has {len(y)}; "
            "pass one probability per labelled example"
        )
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SmallboatError(
            f"intent metrics: prob[{i}] = {p[i].item()!r} is not a probability in [0, 1] "
            f"({int(bad.sum())} such values); check the model's output"
        )
    y = y.astype(np.float64)
    bad = (y != 0) & (y != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SmallboatError(f"intent metrics: label[{i}] = {y[i].item()!r} is not 0 or 1")
    return p, y


def _validate_k(k: npt.ArrayLike, n: int) -> np.ndarray:
    kk = _as_1d("k", k)
    if len(kk) != n:
        raise SmallboatError(f"intent metrics: k has {len(kk)} values but there are {n} examples")
    unknown = sorted(set(np.unique(kk).tolist()) - set(INTENT_PREDICTION_POINTS))
    if unknown:
        raise SmallboatError(
            f"intent metrics: k holds {unknown[:5]}, which are not prediction points "
            f"{list(INTENT_PREDICTION_POINTS)}"
        )
    return kk.astype(np.int64)


def _float(x: float | np.floating[Any]) -> float | None:
    """A plain float, or None for NaN (JSON has no NaN)."""
    value = float(x)
    return None if math.isnan(value) else value


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
    p, y = _validate(prob, label)
    kk = _validate_k(k, len(p))
    correct = (p >= THRESHOLD) == (y == 1)
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


def binary_metrics(prob: npt.ArrayLike, label: npt.ArrayLike) -> dict[str, Any]:
    """n, positives and the metrics in `_POINT_METRICS`; `undefined` maps a None metric to why.

    accuracy thresholds at 0.5; roc_auc counts a tie as half a correctly ordered pair; pr_auc is
    average precision; log_loss clips at LOG_LOSS_EPS; brier is the mean squared error.
    """
    p, y = _validate(prob, label)
    n, pos = len(p), int(y.sum())
    out: dict[str, Any] = {"n": n, "positives": pos}
    if n == 0:
        out |= dict.fromkeys(_POINT_METRICS)
        out["undefined"] = dict.fromkeys(_POINT_METRICS, "no examples")
        return out
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    out["accuracy"] = float(((p >= THRESHOLD) == (y == 1)).mean())
    out["roc_auc"] = out["pr_auc"] = None
    out["log_loss"] = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    out["brier"] = float(np.mean((p - y) ** 2))
    out["positive_rate"] = pos / n
    out["mean_prob"] = float(p.mean())
    out["undefined"] = {}
    if 0 < pos < n:
        # Imported here: sklearn.metrics costs ~0.7 s and data.synth imports this module.
        from sklearn.metrics import average_precision_score, roc_auc_score

        out["roc_auc"] = float(roc_auc_score(y, p))
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
    p, y = _validate(prob, label)
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
    p, y = _validate(prob, label)
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


# ---- bootstrap -----------------------------------------------------------------------------


def _bootstrap_weights(
    n_rows: int, groups: npt.ArrayLike | None, n_bootstrap: int, seed: int
) -> Iterator[_Array]:
    """Chunks of (b, n_rows) row weights: how often each row is drawn in each replicate.

    Whole groups (sessions) are drawn with replacement when groups are given, else single rows.
    The chunk size depends on the data's size only, so a seed gives the same replicates anywhere.
    """
    if n_rows == 0:  # nothing to resample: one chunk of empty replicates
        yield np.zeros((n_bootstrap, 0))
        return
    if groups is None:
        cluster, n_clusters = None, n_rows
    else:
        g = _as_1d("groups", groups)
        if len(g) != n_rows:
            raise SmallboatError(f"bootstrap: groups has {len(g)} values for {n_rows} examples")
        _, cluster = np.unique(g, return_inverse=True)
        n_clusters = int(cluster.max()) + 1
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CELLS // max(n_rows, n_clusters, 1))
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        draws = rng.integers(0, n_clusters, size=(b, n_clusters))  # (b, C)
        flat = (np.arange(b)[:, None] * n_clusters + draws).ravel()
        counts = np.bincount(flat, minlength=b * n_clusters).reshape(b, n_clusters)
        yield (counts if cluster is None else counts[:, cluster]).astype(np.float64)  # (b, N)


class _Ranked:
    """Rows sorted by probability with ties grouped: the AUC of any row weighting in one pass."""

    def __init__(self, p: _Array, y: _Array) -> None:
        self.order = np.argsort(p, kind="stable")
        s = p[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each tie group
        self.tied = len(self.starts) < len(s)
        self.y = y[self.order]

    def auc(self, w: _Array) -> _Array:
        """ROC-AUC per row of weights w (b, N); NaN where a replicate holds a single class."""
        if len(self.y) == 0:
            return np.full(len(w), np.nan)
        neg = w[:, self.order]  # (b, N) weights in score order
        pos = neg * self.y  # (b, N) positive weight per sorted row
        neg -= pos
        if self.tied:  # one column per tie group (G < N); without ties this would copy for nothing
            pos = np.add.reduceat(pos, self.starts, axis=1)  # (b, G)
            neg = np.add.reduceat(neg, self.starts, axis=1)  # (b, G)
        mid = np.cumsum(neg, axis=1)
        mid -= 0.5 * neg  # negatives strictly below each group, plus half of its own (ties)
        num = np.einsum("bg,bg->b", pos, mid)
        den = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)


class _Bucketed:
    """Per-point correctness: the Challenge score of any row weighting as two matrix products."""

    def __init__(self, p: _Array, y: _Array, k: np.ndarray) -> None:
        points = np.array(list(INTENT_BUCKET_WEIGHTS))
        self.onehot = (k[:, None] == points[None, :]).astype(np.float64)  # (N, P)
        correct = ((p >= THRESHOLD) == (y == 1)).astype(np.float64)
        self.hits = self.onehot * correct[:, None]  # (N, P)
        self.weights = np.array(list(INTENT_BUCKET_WEIGHTS.values()))  # (P,)

    def score(self, w: _Array) -> _Array:
        n = w @ self.onehot  # (b, P)
        acc = np.divide(w @ self.hits, n, out=np.zeros_like(n), where=n > 0)
        return acc @ self.weights  # (b,)


def _interval(stats: _Array, level: float) -> dict[str, Any]:
    valid = stats[~np.isnan(stats)]
    if len(valid) == 0:
        return {"low": None, "high": None, "n_valid": 0}
    low, high = np.quantile(valid, [(1 - level) / 2, (1 + level) / 2])
    return {"low": float(low), "high": float(high), "n_valid": len(valid)}


def _check_level(level: float, n_bootstrap: int) -> None:
    if not 0 < level < 1:
        raise SmallboatError(f"bootstrap: level must be in (0, 1), got {level}")
    if n_bootstrap < 1:
        raise SmallboatError(f"bootstrap: n_bootstrap must be at least 1, got {n_bootstrap}")


def bootstrap_intervals(
    prob: npt.ArrayLike,
    label: npt.ArrayLike,
    k: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of the ROC-AUC and the Challenge score.

    Keys: roc_auc and challenge_score -> {estimate, low, high, n_valid (replicates where the
    metric was defined)}, and n_bootstrap, seed, level, unit ("group" or "row").
    """
    _check_level(level, n_bootstrap)
    p, y = _validate(prob, label)
    kk = _validate_k(k, len(p))
    ranked, bucketed = _Ranked(p, y), _Bucketed(p, y, kk)
    ones = np.ones((1, len(p)))
    aucs, scores = [], []
    for w in _bootstrap_weights(len(p), groups, n_bootstrap, seed):
        aucs.append(ranked.auc(w))
        scores.append(bucketed.score(w))
    return {
        "roc_auc": {
            "estimate": _float(ranked.auc(ones)[0]),
            **_interval(np.concatenate(aucs), level),
        },
        "challenge_score": {
            "estimate": float(bucketed.score(ones)[0]) if len(p) else None,
            **_interval(np.concatenate(scores), level),
        },
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": level,
        "unit": "row" if groups is None else "group",
    }


def paired_difference(
    prob_a: npt.ArrayLike,
    prob_b: npt.ArrayLike,
    label: npt.ArrayLike,
    k: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Is model A better than B on the same examples? A paired bootstrap of A minus B.

    Both models are scored on the same replicates, so what the examples share cancels out. Keys:
    roc_auc and challenge_score -> {a, b, diff, low, high, n_valid, p_a_better (share of
    replicates where A scored higher)}, and n_bootstrap, seed, level, unit. "A is better" with
    confidence `level` when low > 0.
    """
    _check_level(level, n_bootstrap)
    pa, y = _validate(prob_a, label)
    pb, _ = _validate(prob_b, label)
    kk = _validate_k(k, len(y))
    ranked = (_Ranked(pa, y), _Ranked(pb, y))
    bucketed = (_Bucketed(pa, y, kk), _Bucketed(pb, y, kk))
    d_auc, d_score = [], []
    for w in _bootstrap_weights(len(y), groups, n_bootstrap, seed):
        d_auc.append(ranked[0].auc(w) - ranked[1].auc(w))
        d_score.append(bucketed[0].score(w) - bucketed[1].score(w))
    ones = np.ones((1, len(y)))
    out: dict[str, Any] = {}
    for name, models, diffs in (
        ("roc_auc", [r.auc(ones)[0] for r in ranked], np.concatenate(d_auc)),
        ("challenge_score", [b.score(ones)[0] for b in bucketed], np.concatenate(d_score)),
    ):
        a, b = _float(models[0]), _float(models[1])
        valid = diffs[~np.isnan(diffs)]
        out[name] = {
            "a": a,
            "b": b,
            "diff": None if a is None or b is None else a - b,
            **_interval(diffs, level),
            "p_a_better": float((valid > 0).mean()) if len(valid) else None,
        }
    return out | {
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": level,
        "unit": "row" if groups is None else "group",
    }


# ---- DeLong --------------------------------------------------------------------------------


def _midranks(x: _Array) -> _Array:
    """1-based ranks, ties sharing their mean rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2)[inverse]


def delong_auc_difference(
    prob_a: npt.ArrayLike, prob_b: npt.ArrayLike, label: npt.ArrayLike, *, level: float = 0.95
) -> dict[str, Any]:
    """DeLong's test of ROC-AUC(A) - ROC-AUC(B) on the same examples (Sun and Xu's fast form).

    Analytic and O(N log N), so it suits large test sets; it treats rows as independent (use
    `paired_difference` with groups when they are not). Keys: auc_a, auc_b, diff, se, low, high,
    p_value (two-sided), undefined (None, or why the rest are None).
    """
    if not 0 < level < 1:
        raise SmallboatError(f"DeLong: level must be in (0, 1), got {level}")
    pa, y = _validate(prob_a, label)
    pb, _ = _validate(prob_b, label)
    pos = y == 1
    m, n = int(pos.sum()), int((~pos).sum())
    if m < 2 or n < 2:
        keys = ("auc_a", "auc_b", "diff", "se", "low", "high", "p_value")
        reason = f"{m} positives and {n} negatives; DeLong's variance needs two of each"
        return {**dict.fromkeys(keys), "undefined": reason}
    aucs, v10, v01 = [], [], []
    for p in (pa, pb):
        x, z = p[pos], p[~pos]
        tz = _midranks(np.concatenate([x, z]))
        aucs.append(float((tz[:m].sum() / m - (m + 1) / 2) / n))
        v10.append((tz[:m] - _midranks(x)) / n)  # per positive: share of negatives below it
        v01.append(1 - (tz[m:] - _midranks(z)) / m)  # per negative: share of positives above it
    s = np.cov(np.vstack(v10)) / m + np.cov(np.vstack(v01)) / n  # (2, 2)
    se = math.sqrt(max(float(s[0, 0] + s[1, 1] - 2 * s[0, 1]), 0.0))
    diff = aucs[0] - aucs[1]
    z_crit = NormalDist().inv_cdf((1 + level) / 2)
    # se is 0 when the two models' per-example components differ by a constant: then a
    # difference, if any, is certain.
    z = abs(diff) / se if se > 0 else (0.0 if diff == 0 else math.inf)
    p_value = 2 * (1 - NormalDist().cdf(z))
    return {
        "auc_a": aucs[0],
        "auc_b": aucs[1],
        "diff": diff,
        "se": se,
        "low": diff - z_crit * se,
        "high": diff + z_crit * se,
        "p_value": p_value,
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
    Pass session ids as groups so the bootstrap resamples sessions (see the module docstring).
    """
    p, y = _validate(prob, label)
    kk = _validate_k(k, len(p))
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

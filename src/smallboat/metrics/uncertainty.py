"""How sure the intent metrics are: bootstrap intervals, paired comparisons, DeLong's test.

The metrics themselves are defined in `smallboat.metrics.intent`; this module resamples them. Inputs
and outputs follow that module's rules: arrays in, JSON-serialisable dicts out, `None` (never NaN)
for what is undefined.

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
from smallboat.metrics.checks import (
    Array,
    as_1d,
    predicted_right,
    prediction_points,
    probabilities_and_labels,
)
from smallboat.schema import INTENT_BUCKET_WEIGHTS

_BOOTSTRAP_CELLS = 4_000_000  # weights per bootstrap chunk (32 MB of float64): bounds memory


def _float(x: float | np.floating[Any]) -> float | None:
    """A plain float, or None for NaN (JSON has no NaN)."""
    value = float(x)
    return None if math.isnan(value) else value


# ---- bootstrap -----------------------------------------------------------------------------


def _bootstrap_weights(
    n_rows: int, groups: npt.ArrayLike | None, n_bootstrap: int, seed: int
) -> Iterator[Array]:
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
        g = as_1d("groups", groups)
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

    def __init__(self, p: Array, y: Array) -> None:
        self.order = np.argsort(p, kind="stable")
        s = p[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each tie group
        self.tied = len(self.starts) < len(s)
        self.y = y[self.order]

    def auc(self, w: Array) -> Array:
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

    def __init__(self, p: Array, y: Array, k: np.ndarray) -> None:
        points = np.array(list(INTENT_BUCKET_WEIGHTS))
        self.onehot = (k[:, None] == points[None, :]).astype(np.float64)  # (N, P)
        correct = predicted_right(p, y).astype(np.float64)
        self.hits = self.onehot * correct[:, None]  # (N, P)
        self.weights = np.array(list(INTENT_BUCKET_WEIGHTS.values()))  # (P,)

    def score(self, w: Array) -> Array:
        n = w @ self.onehot  # (b, P)
        acc = np.divide(w @ self.hits, n, out=np.zeros_like(n), where=n > 0)
        return acc @ self.weights  # (b,)


def _interval(stats: Array, level: float) -> dict[str, Any]:
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


def _settings(
    groups: npt.ArrayLike | None, n_bootstrap: int, seed: int, level: float
) -> dict[str, Any]:
    """How a bootstrap result was drawn: n_bootstrap, seed, level and unit ("group" or "row")."""
    unit = "row" if groups is None else "group"
    return {"n_bootstrap": n_bootstrap, "seed": seed, "level": level, "unit": unit}


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
    p, y = probabilities_and_labels(prob, label)
    kk = prediction_points(k, len(p))
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
        **_settings(groups, n_bootstrap, seed, level),
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
    pa, y = probabilities_and_labels(prob_a, label)
    pb, _ = probabilities_and_labels(prob_b, label)
    kk = prediction_points(k, len(y))
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
    return out | _settings(groups, n_bootstrap, seed, level)


# ---- DeLong --------------------------------------------------------------------------------


def _midranks(x: Array) -> Array:
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
    pa, y = probabilities_and_labels(prob_a, label)
    pb, _ = probabilities_and_labels(prob_b, label)
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

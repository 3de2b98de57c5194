"""Ranking metrics of the next-item task: MRR@k, HR@k, coverage, popularity bias and slices.

Top-k lists in (one row of item ids per example, best first), plain floats and JSON-serialisable
dicts out, like `metrics.intent` for the intent task. An item id is any integer (the SKU token);
-1 pads a list shorter than k and never matches a target.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from smallboat.errors import SmallboatError

K = 20
"""The Data Challenge's cut-off: MRR@20 and HR@20."""

LENGTH_SLICES: tuple[tuple[str, int, int], ...] = (
    ("1 prior view", 1, 1),
    ("2 prior views", 2, 2),
    ("3-4 prior views", 3, 4),
    ("5-9 prior views", 5, 9),
    ("10+ prior views", 10, 1 << 30),
)
"""Session-length slices: detail views before the target, [low, high]."""

POPULARITY_SLICES: tuple[tuple[str, float, float], ...] = (
    ("head (top 1% of SKUs)", 0.99, 1.0),
    ("torso (top 1-20%)", 0.80, 0.99),
    ("tail (the other 80%)", 0.0, 0.80),
)
"""Target-popularity slices by the target's popularity percentile, (low, high]; the tail also
holds targets with no training views at all (percentile 0)."""


def _checked(top: npt.ArrayLike, target: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(top)
    y = np.asarray(target)
    if t.ndim != 2 or y.ndim != 1 or len(t) != len(y):
        raise SmallboatError(
            f"ranking metrics: expected top-k lists (N, k) and targets (N,), got {t.shape} and "
            f"{y.shape}; pass one list and one target per example"
        )
    return t, y


def _cut(top: npt.ArrayLike, k: int) -> np.ndarray:
    """The first k columns of the top-k lists (checked to be a 2-D array first)."""
    t = np.asarray(top)
    if t.ndim != 2:
        raise SmallboatError(
            f"ranking metrics: expected top-k lists (N, k) and targets (N,), got lists of shape "
            f"{t.shape}; pass one list per example"
        )
    return t[:, :k]


def hit_ranks(top: npt.ArrayLike, target: npt.ArrayLike) -> np.ndarray:
    """1-based rank of each target in its top-k list; 0 when it is not in the list."""
    t, y = _checked(top, target)
    hits = (t == y[:, None]) & (t >= 0)  # (N, k)
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, 0).astype(np.int64)


def mrr_at_k(top: npt.ArrayLike, target: npt.ArrayLike, k: int = K) -> float | None:
    """Mean reciprocal rank of the target in the first k (0 for a miss); None for no examples."""
    ranks = hit_ranks(_cut(top, k), target)
    if not len(ranks):
        return None
    return float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).mean())


def hr_at_k(top: npt.ArrayLike, target: npt.ArrayLike, k: int = K) -> float | None:
    """Hit rate: share of examples whose target is within the first k; None for no examples."""
    ranks = hit_ranks(_cut(top, k), target)
    return float((ranks > 0).mean()) if len(ranks) else None


def catalog_coverage(top: npt.ArrayLike, n_items: int, k: int = K) -> float | None:
    """Share of the `n_items` recommendable items that appear in at least one top-k list."""
    t = _cut(top, k)
    if n_items <= 0:
        return None
    shown = np.unique(t[t >= 0])
    return float(len(shown)) / n_items


def popularity_percentiles(popularity: npt.ArrayLike) -> np.ndarray:
    """Each item's popularity percentile in [0, 1]: the share of items with a lower count (ties
    share the lower value), so the least popular items sit at 0 and the most popular near 1."""
    pop = np.asarray(popularity, dtype=np.float64)
    order = np.sort(pop)
    return np.searchsorted(order, pop, side="left") / max(len(pop), 1)


def popularity_bias(
    top: npt.ArrayLike, target: npt.ArrayLike, popularity: npt.ArrayLike, k: int = K
) -> dict[str, float | None]:
    """How much a recommender leans on popular items, beside the same figures for the targets.

    `popularity[i]`: training views of item i (ids outside the array count as 0). Returns the
    average recommendation popularity (mean views of the recommended items, `arp`) and their mean
    popularity percentile, and the targets' `target_arp` / `target_percentile`: a recommender
    whose percentile is far above the targets' pushes the head of the catalogue.
    """
    t, y = _checked(_cut(top, k), target)
    pop = np.asarray(popularity, dtype=np.float64)
    pct = popularity_percentiles(pop)

    def lookup(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
        inside = (ids >= 0) & (ids < len(values))
        return np.where(inside, values[np.clip(ids, 0, max(len(values) - 1, 0))], 0.0)

    shown = t[t >= 0]

    def mean(x: np.ndarray) -> float | None:
        return float(x.mean()) if len(x) else None

    return {
        "arp": mean(lookup(pop, shown)),
        "percentile": mean(lookup(pct, shown)),
        "target_arp": mean(lookup(pop, y)),
        "target_percentile": mean(lookup(pct, y)),
    }


def ranking_report(
    top: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    n_prior: npt.ArrayLike,
    popularity: npt.ArrayLike,
    n_items: int,
    k: int = K,
) -> dict[str, Any]:
    """MRR@k, HR@k, coverage, popularity bias, and MRR/HR per length and popularity slice."""
    t, y = _checked(top, target)
    prior = np.asarray(n_prior)
    pct = popularity_percentiles(popularity)
    inside = (y >= 0) & (y < len(pct))
    target_pct = np.where(inside, pct[np.clip(y, 0, max(len(pct) - 1, 0))], 0.0)

    def part(sel: np.ndarray) -> dict[str, Any]:
        return {
            "n": int(sel.sum()),
            "mrr": mrr_at_k(t[sel], y[sel], k),
            "hr": hr_at_k(t[sel], y[sel], k),
        }

    by_length = {name: part((prior >= lo) & (prior <= hi)) for name, lo, hi in LENGTH_SLICES}
    by_popularity = {}
    for name, lo, hi in POPULARITY_SLICES:
        sel = (target_pct > lo) & (target_pct <= hi) if lo > 0 else target_pct <= hi
        by_popularity[name] = part(sel)
    return {
        "k": k,
        "n": len(y),
        "mrr": mrr_at_k(t, y, k),
        "hr": hr_at_k(t, y, k),
        "coverage": catalog_coverage(t, n_items, k),
        "popularity_bias": popularity_bias(t, y, popularity, k),
        "by_length": by_length,
        "by_popularity": by_popularity,
    }

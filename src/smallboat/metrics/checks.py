"""What every intent metric shares: the checks on its input arrays and the Challenge's decision
rule. `intent` (the metrics) and `uncertainty` (their resampling) both build on this module, so
their imports point one way: uncertainty -> checks, intent -> {uncertainty, checks}.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from smallboat.errors import SmallboatError
from smallboat.schema import INTENT_PREDICTION_POINTS

THRESHOLD = 0.5
"""A probability at or above this predicts a purchase (the Challenge's rule)."""

Array = npt.NDArray[np.float64]


def as_1d(name: str, values: npt.ArrayLike) -> np.ndarray:
    """`values` as a 1-D array; `name` is what the error calls it."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise SmallboatError(
            f"intent metrics: {name} must be one value per example, got shape {arr.shape}"
        )
    return arr


def probabilities_and_labels(prob: npt.ArrayLike, label: npt.ArrayLike) -> tuple[Array, Array]:
    """Checked (prob, label) as float64: one probability in [0, 1] per 0/1 label."""
    p = as_1d("prob", prob).astype(np.float64)
    y = as_1d("label", label)
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


def prediction_points(k: npt.ArrayLike, n: int) -> np.ndarray:
    """Checked prediction points (int64), one of INTENT_PREDICTION_POINTS per example."""
    kk = as_1d("k", k)
    if len(kk) != n:
        raise SmallboatError(f"intent metrics: k has {len(kk)} values but there are {n} examples")
    unknown = sorted(set(np.unique(kk).tolist()) - set(INTENT_PREDICTION_POINTS))
    if unknown:
        raise SmallboatError(
            f"intent metrics: k holds {unknown[:5]}, which are not prediction points "
            f"{list(INTENT_PREDICTION_POINTS)}"
        )
    return kk.astype(np.int64)


def predicted_right(p: Array, y: Array) -> npt.NDArray[np.bool_]:
    """Per example: does `p >= THRESHOLD` predict its label? (What the Challenge scores.)"""
    right: npt.NDArray[np.bool_] = (p >= THRESHOLD) == (y == 1)
    return right

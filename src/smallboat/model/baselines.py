"""The baselines every run is scored beside: the majority class and counts in a logistic regression.

A model that cannot beat the majority class has learnt nothing; one that cannot beat a logistic
regression on counts of the prefix (the features module builds that matrix) has not earned its
sequence encoder. Both fit on the training split only and predict a purchase probability per
example, so the metrics module scores them exactly like the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from smallboat.errors import SmallboatError


def _labels(name: str, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) == 0:
        raise SmallboatError(f"{name}: labels must be a non-empty 1-D array, got shape {arr.shape}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SmallboatError(f"{name}: label[{i}] = {arr[i].item()!r} is not 0 or 1")
    return arr.astype(np.float64)


@dataclass(frozen=True)
class MajorityBaseline:
    """Predicts the training positive rate for every example: at 0.5 that is the majority class,
    and as a probability it is the best constant for log-loss and Brier score."""

    positive_rate: float

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """One probability per row of x (its values are ignored)."""
        return np.full(len(np.asarray(x)), self.positive_rate)


def fit_majority_baseline(y: npt.ArrayLike) -> MajorityBaseline:
    """The majority-class baseline of the training labels y."""
    return MajorityBaseline(positive_rate=float(_labels("majority baseline", y).mean()))


def _matrix(name: str, x: npt.ArrayLike, width: int | None) -> npt.NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise SmallboatError(f"{name}: features must be an (N, F) matrix, got shape {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise SmallboatError(
            f"{name}: features have {arr.shape[1]} columns but the baseline was fit on {width}; "
            "build them with the same feature spec"
        )
    if not np.isfinite(arr).all():
        row, col = np.argwhere(~np.isfinite(arr))[0]
        raise SmallboatError(f"{name}: features[{row}, {col}] = {arr[row, col]} is not finite")
    return arr


@dataclass(frozen=True)
class CountBaseline:
    """A fitted StandardScaler + LogisticRegression over count features of the prefix."""

    pipeline: Pipeline
    feature_names: tuple[str, ...]

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(purchase) per row of the (N, F) count matrix x."""
        arr = _matrix("count baseline", x, len(self.feature_names))
        if len(arr) == 0:
            return np.zeros(0)
        return np.asarray(self.pipeline.predict_proba(arr)[:, 1], dtype=np.float64)  # (N,)

    def coefficients(self) -> list[dict[str, Any]]:
        """The card's coefficient table, largest effect first.

        coef is the change in log-odds per standard deviation of the feature (the model sees
        standardised inputs, so effects compare across features); intercept comes last.
        """
        lr: LogisticRegression = self.pipeline.named_steps["lr"]
        rows: list[dict[str, Any]] = [
            {"feature": name, "coef": float(c)}
            for name, c in zip(self.feature_names, lr.coef_[0], strict=True)
        ]
        rows.sort(key=lambda r: -abs(r["coef"]))
        return [*rows, {"feature": "(intercept)", "coef": float(lr.intercept_[0])}]


def fit_count_baseline(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    seed: int,
    feature_names: Sequence[str] | None = None,
    c: float = 1.0,
    max_iter: int = 1000,
) -> CountBaseline:
    """Fit the count baseline on the training split's (N, F) count matrix x and labels y.

    feature_names label the columns on the card (default f0, f1, ...); c is the inverse L2
    strength (sklearn's C). The fit is deterministic given the data and the seed.
    """
    labels = _labels("count baseline", y)
    arr = _matrix("count baseline", x, None)
    if len(arr) != len(labels):
        raise SmallboatError(
            f"count baseline: {len(arr)} feature rows but {len(labels)} labels; "
            "pass one row per label"
        )
    names = (
        tuple(feature_names)
        if feature_names is not None
        else tuple(f"f{i}" for i in range(arr.shape[1]))
    )
    if len(names) != arr.shape[1]:
        raise SmallboatError(
            f"count baseline: {len(names)} feature names for {arr.shape[1]} columns: "
            f"{list(names)[:5]}"
        )
    positives = int(labels.sum())
    if positives in (0, len(labels)):
        raise SmallboatError(
            f"count baseline: the training labels hold one class only ({positives} positives of "
            f"{len(labels)}); a logistic regression needs both"
        )
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("lr", LogisticRegression(C=c, max_iter=max_iter, random_state=seed)),
        ]
    )
    pipeline.fit(arr, labels.astype(np.int64))
    return CountBaseline(pipeline=pipeline, feature_names=names)

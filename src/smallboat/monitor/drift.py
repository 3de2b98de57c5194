"""Drift of live predictions against the training reference, computed by Evidently.

The reference is the training run's held-out test examples and the current window is the live
predictions at the same prediction points, both as `smallboat.features.summary.drift_frame` rows.
Each feature gets one Evidently `ValueDrift` metric with an explicit method and threshold; the
per-feature verdicts are Evidently's own (its test status), copied into plain dataclasses the flow,
the CLI and the dashboard can keep as JSON. The dataset drifts when at least `share` of the
features drift. The Evidently snapshot stays on the result for the HTML report.

Why distances, and why a noise floor (measured with the generator of tests/unit/test_drift.py,
20k and 200k reference rows, 20-60 seeds x 8 numerical + 2 categorical features):
- Significance tests answer "is there any difference", which at 50k-200k rows is always yes:
  shifting `probability` by 0.002 (0.03 of its std) gives a K-S p-value of 2e-8 at 200k x 50k
  rows (0.005 gives 2e-52), while its normed Wasserstein distance is 0.02 (0.06). So numerical
  features use the Wasserstein distance normed by the reference std ("shift in std units") and
  categorical ones the Jensen-Shannon distance, each with Evidently's default threshold of 0.1
  as the smallest *material* effect.
- A distance measured on a sample is never zero: on unshifted windows it falls like
  1/sqrt(n). The largest unshifted normed Wasserstein distance was 0.17 at 300 rows and 0.12 at
  1,000 rows (the default 0.1 would false-alarm), 0.07 at 3,000 and 0.02 at 50,000. Divided by
  se = sqrt(1/n_current + 1/n_reference) it stayed below 4.7 at every size from 30 to 50,000
  rows (99th percentile ~2.8; the worst is the heavy-tailed duration at 100 rows); the
  Jensen-Shannon distance divided by se * sqrt((k-1)/8), k the reference's number of
  categories, stayed below 1.9 (99th percentile ~1.6). The threshold used is therefore
  max(threshold, z * that scale) with z = 6 (Wasserstein) and 2.5 (Jensen-Shannon): the
  configured threshold rules from ~3,600 current rows up, and smaller windows only flag effects
  larger than their own sampling noise (at 300 rows: 0.35 std, or a JS distance of 0.16).
  Other Evidently methods can be configured; they get their threshold as given (no floor is
  calibrated for them, and p-value methods count drift *below* the threshold).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from smallboat.errors import DataError, SmallboatError
from smallboat.features.summary import DRIFT_CATEGORICAL, DRIFT_NUMERICAL

log = logging.getLogger(__name__)

Kind = Literal["numerical", "categorical"]

NOISE_Z: dict[str, float] = {"wasserstein": 6.0, "jensenshannon": 2.5}
"""Multiples of each distance's sampling-noise scale below which a score is noise (module doc)."""


class NotEnoughData(SmallboatError):
    """A frame has too few rows to compare: an empty reference is a broken training run, an
    empty or tiny current window is a quiet period (the caller reports "no current rows")."""

    def __init__(self, frame: Literal["reference", "current"], rows: int, minimum: int) -> None:
        self.frame = frame
        self.rows = rows
        self.minimum = minimum
        fix = (
            "retrain to rebuild the drift reference"
            if frame == "reference"
            else "widen the window or wait for more traffic"
        )
        what = f"no {frame} rows" if rows == 0 else f"{rows} {frame} rows"
        super().__init__(f"drift: {what}, need at least {minimum}; {fix}")


@dataclass(frozen=True)
class DriftThresholds:
    """How each feature is compared and when the dataset counts as drifted."""

    numerical_method: str = "wasserstein"
    # Evidently's default for the normed Wasserstein distance: a shift of 0.1 reference std.
    numerical_threshold: float = 0.1
    categorical_method: str = "jensenshannon"
    # Evidently's default: about 4-5 points of probability mass moved between categories.
    categorical_threshold: float = 0.1
    # The dataset drifts when >= this share of features drift. A new product line moves the OOV
    # share, price and category together (3 of the 10 default features); one feature alone is
    # flagged on its own but is not a dataset alarm.
    share: float = 0.3
    # Per-feature overrides, by column name.
    methods: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    # Raise each threshold to the feature's sampling-noise floor (module doc); False trusts the
    # configured thresholds as they are (and then small windows false-alarm).
    noise_floor: bool = True
    # Fewer current rows than this raise NotEnoughData instead of a verdict from noise.
    min_current_rows: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"DriftThresholds.share must be in (0, 1], got {self.share}")
        if self.min_current_rows < 1:
            raise ValueError(
                f"DriftThresholds.min_current_rows must be >= 1, got {self.min_current_rows}"
            )

    def method_for(self, feature: str, kind: Kind) -> str:
        default = self.numerical_method if kind == "numerical" else self.categorical_method
        return self.methods.get(feature, default)

    def threshold_for(self, feature: str, kind: Kind) -> float:
        default = self.numerical_threshold if kind == "numerical" else self.categorical_threshold
        return float(self.thresholds.get(feature, default))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison: Evidently's score, the threshold it was held to, its verdict."""

    feature: str
    kind: Kind
    method: str
    score: float
    threshold: float  # after the noise floor: the value Evidently compared against
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftResult:
    """Per-feature drift and the dataset verdict; `snapshot` is Evidently's, for the HTML."""

    reference_rows: int
    current_rows: int
    features: list[FeatureDrift]
    drift_share: float
    share_threshold: float
    detected: bool
    snapshot: Any = field(default=None, repr=False, compare=False)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drift_share": self.drift_share,
            "share_threshold": self.share_threshold,
            "detected": self.detected,
            "features": [f.to_dict() for f in self.features],
        }

    def html(self) -> str:
        """Evidently's report as one HTML page (scripts, data and icon font inlined)."""
        if self.snapshot is None:
            raise SmallboatError("drift: this result carries no Evidently snapshot to render")
        return str(self.snapshot.get_html_str(as_iframe=False))

    def save_html(self, path: str | Path) -> Path:
        """Write Evidently's report to `path` (its parent must exist); returns the path."""
        out = Path(path)
        out.write_text(self.html(), encoding="utf-8")
        return out


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    thresholds: DriftThresholds | None = None,
    numerical: Sequence[str] = DRIFT_NUMERICAL,
    categorical: Sequence[str] = DRIFT_CATEGORICAL,
) -> DriftResult:
    """Compare `current` with `reference` feature by feature with Evidently.

    Raises NotEnoughData for an empty reference or a current window below
    `thresholds.min_current_rows`, and DataError naming the column for a missing, non-numeric or
    all-null feature.
    """
    thresholds = thresholds or DriftThresholds()
    kinds: dict[str, Kind] = {c: "numerical" for c in numerical}
    overlap = sorted(set(numerical) & set(categorical))
    if overlap:
        raise ValueError(f"drift: {overlap} listed as both numerical and categorical")
    kinds.update({c: "categorical" for c in categorical})
    if not kinds:
        raise ValueError("drift: no features to compare (numerical and categorical are empty)")
    unknown = sorted((set(thresholds.methods) | set(thresholds.thresholds)) - set(kinds))
    if unknown:
        raise ValueError(f"drift: thresholds name features that are not compared: {unknown}")

    ref = _clean(reference, "reference", kinds)
    cur = _clean(current, "current", kinds)
    if len(ref) == 0:
        raise NotEnoughData("reference", 0, 1)
    if len(cur) < thresholds.min_current_rows:
        raise NotEnoughData("current", len(cur), thresholds.min_current_rows)

    plan = {
        column: _plan(column, kind, ref[column], cur[column], thresholds)
        for column, kind in kinds.items()
    }
    snapshot, verdicts = _run_evidently(ref, cur, kinds, plan)

    features = [
        FeatureDrift(
            feature=column,
            kind=kinds[column],
            method=plan[column][0],
            score=score,
            threshold=plan[column][1],
            drifted=drifted,
        )
        for column, (score, drifted) in verdicts.items()
    ]
    share = sum(f.drifted for f in features) / len(features)
    result = DriftResult(
        reference_rows=len(ref),
        current_rows=len(cur),
        features=features,
        drift_share=share,
        share_threshold=thresholds.share,
        detected=share >= thresholds.share,
        snapshot=snapshot,
    )
    log.info(
        "drift: %d reference x %d current rows, %d/%d features drifted (%s), detected=%s",
        result.reference_rows,
        result.current_rows,
        len(result.drifted_features),
        len(features),
        ", ".join(result.drifted_features) or "none",
        result.detected,
    )
    return result


def _clean(frame: pd.DataFrame, name: str, kinds: Mapping[str, Kind]) -> pd.DataFrame:
    """The compared columns only: numbers as float (inf -> NaN), categories as str (NaN kept)."""
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise DataError(
            f"drift: {name} frame lacks column(s) {missing}; it has {list(frame.columns)}. "
            "Build both frames with smallboat.features.summary.drift_frame"
        )
    out: dict[str, pd.Series] = {}
    for column, kind in kinds.items():
        values = frame[column]
        if kind == "numerical":
            if not (
                pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            ):
                raise DataError(
                    f"drift: {name} column {column!r} must be numerical, got dtype {values.dtype}"
                )
            values = values.astype(np.float64).replace([np.inf, -np.inf], np.nan)
        else:
            # "3" and 3 are one price decile: compare categories as strings.
            values = values.where(values.isna(), values.astype(str)).astype(object)
        if len(frame) > 0 and values.notna().sum() == 0:
            raise DataError(
                f"drift: {name} column {column!r} has no values ({len(frame)} rows, all null); "
                "fix the summary or leave the feature out"
            )
        out[column] = values.reset_index(drop=True)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _plan(
    column: str, kind: Kind, ref: pd.Series, cur: pd.Series, thresholds: DriftThresholds
) -> tuple[str, float]:
    """The method and the threshold (raised to the noise floor where calibrated) for a column."""
    method = thresholds.method_for(column, kind)
    threshold = thresholds.threshold_for(column, kind)
    z = NOISE_Z.get(method)
    if thresholds.noise_floor and z is not None:
        # Evidently drops nulls before comparing; the noise is that of the non-null values.
        n_ref, n_cur = int(ref.notna().sum()), int(cur.notna().sum())
        scale = math.sqrt(1.0 / n_ref + 1.0 / n_cur)
        if method == "jensenshannon":
            categories = max(int(ref.nunique()), 2)
            scale *= math.sqrt((categories - 1) / 8.0)
        threshold = max(threshold, z * scale)
    return method, threshold


def _run_evidently(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    kinds: Mapping[str, Kind],
    plan: Mapping[str, tuple[str, float]],
) -> tuple[Any, dict[str, tuple[float, bool]]]:
    """One Evidently Report of a ValueDrift per column; its score and test verdict per column.

    A ValueDrift per column rather than DataDriftPreset: the preset computes every column three
    times (its metrics, then a legacy summary and table for the HTML), 2.4 s against 1.0 s at
    200k x 50k rows, for a summary this module computes itself.
    """
    # Imported here: Evidently costs ~2 s to import, and most commands never compute drift.
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.tests.base_test import TestStatus
    from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    metrics = {
        column: ValueDrift(column=column, method=method, threshold=threshold)
        for column, (method, threshold) in plan.items()
    }
    report = Report(list(metrics.values()), include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    verdicts: dict[str, tuple[float, bool]] = {}
    for column, metric in metrics.items():
        result = snapshot.context.get_metric_result(metric)
        statuses = [test.status for test in result.tests]
        if len(statuses) != 1:
            raise SmallboatError(
                f"drift: Evidently gave {statuses} tests for {column!r}, expected 1"
            )
        verdicts[column] = (float(result.value), statuses[0] == TestStatus.FAIL)
    return snapshot, verdicts

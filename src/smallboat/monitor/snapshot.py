"""The monitoring snapshot: every figure the dashboard shows and the alerts, in one JSON file.

`build_snapshot` reads the warehouse's `prediction_labels` (the prediction log with its delayed
labels), the registry (versions, the champion, and each bundle's reference and card) and runs the
drift checks; `write_snapshot` puts the JSON at `<home>/monitor/snapshot.json` (atomically) and
Evidently's report beside it. Alerts:

- drift: the drift checks flag the dataset on the latest window of the most recently served
  version (`SMALLBOAT_MONITOR_DRIFT_*`);
- quality: that version's live ROC-AUC on the latest window with at least
  `SMALLBOAT_MONITOR_MIN_LABELLED` labels is more than `SMALLBOAT_MONITOR_MAX_AUC_DROP` below its
  offline test ROC-AUC.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smallboat import registry
from smallboat.bundle import CARD_FILE, MODEL_NAME, REFERENCE_FILE, read_meta
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.features.summary import drift_frame
from smallboat.metrics.intent import binary_metrics
from smallboat.monitor.drift import DriftResult, DriftThresholds, NotEnoughData, compute_drift
from smallboat.monitor.live import (
    evaluation_points,
    labelled_points,
    live_quality,
    prediction_histogram,
    read_predictions,
    traffic,
)

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "snapshot.json"
DRIFT_REPORT_FILE = "drift_report.html"


def monitor_dir(settings: Settings) -> Path:
    return settings.home_dir / "monitor"


@dataclass
class Snapshot:
    data: dict[str, Any]
    drift: DriftResult | None = None
    alerts: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Version:
    version: str
    bundle: Path | None
    metrics: dict[str, Any]


def build_snapshot(
    settings: Settings, *, frame: pd.DataFrame | None = None, n_bootstrap: int = 200
) -> Snapshot:
    """Every dashboard figure from the warehouse and the registry (see the module docstring)."""
    frame = read_predictions(settings) if frame is None else frame
    window_ms = int(settings.monitor_window_hours * 3_600_000)
    bars, latency = traffic(frame)
    data: dict[str, Any] = {
        "generated_at_ms": int(time.time() * 1000),
        "home": str(settings.home_dir),
        "window_ms": window_ms,
        "traffic": bars,
        "latency": latency,
        "predictions": prediction_histogram(frame),
        "quality": live_quality(frame, window_ms=window_ms, n_bootstrap=n_bootstrap),
        "offline": None,
        "drift": None,
        "alerts": [],
        "versions": _versions(settings),
        "champion": None,
    }
    champion = next((v for v in data["versions"] if v["is_champion"]), None)
    if champion is not None:
        found = _bundle(settings, champion["version"])
        card = found.bundle / CARD_FILE if found.bundle is not None else None
        data["champion"] = {
            "version": champion["version"],
            "card_path": str(card) if card is not None and card.is_file() else None,
        }
    watched = _watched_version(frame, data["versions"])
    snapshot = Snapshot(data)
    if watched is None:
        return snapshot
    version = _bundle(settings, watched)
    metrics = version.metrics
    if "roc_auc" in metrics:
        ci = (metrics.get("roc_auc_ci_low"), metrics.get("roc_auc_ci_high"))
        data["offline"] = {
            "model_version": watched,
            "test_roc_auc": metrics["roc_auc"],
            "test_roc_auc_ci": list(ci) if None not in ci else None,
            "challenge_score": metrics.get("challenge_score"),
        }
    current = _latest_window(evaluation_points(frame), watched, window_ms)
    snapshot.drift = version_drift(settings, version, current)
    if snapshot.drift is not None:
        data["drift"] = {"model_version": watched, **snapshot.drift.to_dict(), "report_path": None}
        if snapshot.drift.detected:
            drifted = ", ".join(snapshot.drift.drifted_features)
            snapshot.alerts.append(
                {
                    "kind": "drift",
                    "message": f"v{watched}: {len(snapshot.drift.drifted_features)} of "
                    f"{len(snapshot.drift.features)} features drifted ({drifted}) on "
                    f"{snapshot.drift.current_rows:,} predictions of the latest window",
                }
            )
    quality = _quality_alert(settings, frame, watched, window_ms, data["offline"])
    if quality is not None:
        snapshot.alerts.append(quality)
    data["alerts"] = snapshot.alerts
    return snapshot


def write_snapshot(settings: Settings, snapshot: Snapshot) -> Path:
    """`<home>/monitor/snapshot.json` (and the drift report), each replaced atomically."""
    folder = monitor_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    if snapshot.drift is not None and snapshot.data.get("drift") is not None:
        report = folder / DRIFT_REPORT_FILE
        snapshot.drift.save_html(report)
        snapshot.data["drift"]["report_path"] = str(report)
    path = folder / SNAPSHOT_FILE
    tmp = folder / f".{SNAPSHOT_FILE}.tmp"
    tmp.write_text(json.dumps(snapshot.data, indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the snapshot")


def _versions(settings: Settings) -> list[dict[str, Any]]:
    try:
        infos = registry.model_versions(settings, model_name=MODEL_NAME)
    except SmallboatError as exc:  # no model registered yet
        log.info("no registered versions: %s", exc)
        return []
    out = []
    for info in infos:
        out.append(
            {
                "version": str(info.version),
                "created_at_ms": int(info.created_at.timestamp() * 1000),
                "is_champion": info.is_champion,
                "test_roc_auc": info.score,
                "gate_decision": info.gate_decision,
                "summary": info.tags.get("gate.summary"),
            }
        )
    return out


def _bundle(settings: Settings, version: str) -> _Version:
    """A registered version's bundle folder and test metrics (None/empty when not registered,
    e.g. a bundle served by path)."""
    if not version.isdigit():
        return _Version(version, None, {})
    try:
        folder = registry.download_bundle(settings, model_name=MODEL_NAME, version=int(version))
    except SmallboatError as exc:
        log.warning("version %s: no bundle (%s)", version, exc)
        return _Version(version, None, {})
    return _Version(version, folder, dict(read_meta(folder).metrics))


def _watched_version(frame: pd.DataFrame, versions: list[dict[str, Any]]) -> str | None:
    """The version that answered last (else the champion): drift and quality alerts watch it."""
    if len(frame):
        latest = frame.loc[frame["predicted_at_ms"].idxmax(), "model_version"]
        return str(latest)
    champion = next((v["version"] for v in versions if v["is_champion"]), None)
    return None if champion is None else str(champion)


def _latest_window(points: pd.DataFrame, version: str, window_ms: int) -> pd.DataFrame:
    """The version's evaluation points in the last `window_ms` of event time it answered."""
    if points.empty:
        return points
    mine = points[points["model_version"] == version]
    if mine.empty:
        return mine
    end = int(mine["event_time_ms"].max())
    return mine[mine["event_time_ms"] > end - window_ms]


def version_drift(
    settings: Settings, version: _Version | str, current: pd.DataFrame
) -> DriftResult | None:
    """Drift of logged predictions (prediction_labels rows) against a version's reference; None
    when the version has no reference or the window too few rows."""
    if isinstance(version, str):
        version = _bundle(settings, version)
    if version.bundle is None or not (version.bundle / REFERENCE_FILE).is_file():
        log.info("v%s has no monitoring reference: drift not checked", version.version)
        return None
    reference = drift_frame(pd.read_parquet(version.bundle / REFERENCE_FILE))
    if current.empty:
        return None
    live = drift_frame(current.rename(columns={"purchase_probability": "probability"}))
    try:
        return compute_drift(reference, live, thresholds=drift_thresholds(settings))
    except NotEnoughData as exc:
        log.info("drift not checked: %s", exc)
        return None


def drift_thresholds(settings: Settings) -> DriftThresholds:
    return DriftThresholds(
        numerical_threshold=settings.monitor_drift_numerical_threshold,
        categorical_threshold=settings.monitor_drift_categorical_threshold,
        share=settings.monitor_drift_share,
        min_current_rows=settings.monitor_min_rows,
    )


def _quality_alert(
    settings: Settings,
    frame: pd.DataFrame,
    version: str,
    window_ms: int,
    offline: dict[str, Any] | None,
) -> dict[str, str] | None:
    if offline is None:
        return None
    latest = _latest_window(labelled_points(frame), version, window_ms)
    if len(latest) < settings.monitor_min_labelled or latest["label"].nunique() < 2:
        return None
    auc = binary_metrics(latest["purchase_probability"], latest["label"].astype(np.int64))[
        "roc_auc"
    ]
    floor = float(offline["test_roc_auc"]) - settings.monitor_max_auc_drop
    if auc is None or auc >= floor:
        return None
    return {
        "kind": "quality",
        "message": f"v{version}: live ROC-AUC {auc:.3f} on the latest window's {len(latest):,} "
        f"labelled predictions is below {floor:.3f} (test {offline['test_roc_auc']:.3f} - "
        f"{settings.monitor_max_auc_drop})",
    }

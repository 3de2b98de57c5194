"""The bodies of MonitorFlow's steps, as plain functions (the flow file stays a thin DAG).

They are the steps of `jobs.monitor_check`, one at a time, returning what the flow keeps as
artifacts (small: text, the snapshot's figures, the drift report's HTML for the card).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.monitor.card import card_components
from smallboat.monitor.snapshot import build_snapshot, write_snapshot
from smallboat.pipeline.jobs import land_arrivals
from smallboat.warehouse.quality import transform_digest
from smallboat.warehouse.transform import run_transform


def land(*, enabled: bool) -> str | None:
    """Compact the collector's log and every replica's prediction log; what landed, in words."""
    return land_arrivals(Settings()).render() if enabled else None


def warehouse(*, enabled: bool) -> dict[str, Any] | None:
    """dbt build with its tests (an error-severity failure raises); the result's digest."""
    return transform_digest(run_transform(Settings())) if enabled else None


@dataclass(frozen=True)
class Computed:
    snapshot: dict[str, Any]
    snapshot_path: str
    alerts: list[dict[str, str]]
    drift_html: str | None


def compute(*, n_bootstrap: int) -> Computed:
    """Build and write the snapshot; keep Evidently's report (written beside the snapshot) for
    the card rather than rendering it twice."""
    settings = Settings()
    snapshot = build_snapshot(settings, n_bootstrap=n_bootstrap)
    path = write_snapshot(settings, snapshot)
    report = (snapshot.data.get("drift") or {}).get("report_path")
    html = Path(report).read_text(encoding="utf-8") if report else None
    return Computed(snapshot.data, str(path), snapshot.alerts, html)


def card_parts(
    snapshot: dict[str, Any],
    *,
    drift_html: str | None,
    landed: str | None,
    transformed: dict[str, Any] | None,
) -> list[Any]:
    """The monitoring card's components."""
    return card_components(snapshot, drift_html=drift_html, landed=landed, transformed=transformed)

"""The monitoring snapshot as readable terminal output (`smallboat monitor check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_check(data: dict[str, Any], path: Path) -> RenderableType:
    """Live quality per version beside its test AUC, drift per feature, alerts, where to look."""
    quality = data.get("quality") or {}
    offline = data.get("offline") or {}
    table = Table(title="live quality (evaluation points with a label)")
    for column in ("version", "labelled", "positives", "ROC-AUC [95% CI]", "Challenge", "test AUC"):
        table.add_column(column, justify="right")
    for row in quality.get("overall", []):
        ci = row.get("roc_auc_ci")
        auc = _num(row.get("roc_auc")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        test = (
            offline.get("test_roc_auc")
            if offline.get("model_version") == row["model_version"]
            else None
        )
        table.add_row(
            f"v{row['model_version']}",
            f"{row['n_labelled']:,}",
            f"{row['positives']:,}",
            auc,
            f"{_num(row.get('challenge_score'))} / {_num(row.get('challenge_max'), 1)}",
            _num(test),
        )
    parts: list[RenderableType] = []
    latency = data.get("latency") or {}
    parts.append(
        f"predictions logged: {latency.get('count', 0):,} (latency p50 "
        f"{_num(latency.get('p50_ms'), 2)} ms, p99 {_num(latency.get('p99_ms'), 2)} ms); "
        f"awaiting a label: {quality.get('pending', 0):,}"
    )
    parts.append(table)
    drift = data.get("drift")
    if drift:
        dt = Table(
            title=f"drift of v{drift['model_version']}'s latest window "
            f"({drift['current_rows']:,} predictions vs {drift['reference_rows']:,} reference)"
        )
        for column in ("feature", "method", "score", "threshold", "drifted"):
            dt.add_column(column)
        for f in drift["features"]:
            dt.add_row(
                f["feature"],
                f["method"],
                _num(f["score"]),
                _num(f["threshold"]),
                "[bold red]yes[/]" if f["drifted"] else "no",
            )
        parts.append(dt)
        verdict = "DETECTED" if drift["detected"] else "not detected"
        parts.append(
            f"drift {verdict}: {drift['drift_share']:.0%} of features drifted "
            f"(alert at {drift['share_threshold']:.0%})"
        )
    else:
        parts.append("drift: not checked (no reference or too few predictions in the window)")
    alerts = data.get("alerts") or []
    for alert in alerts:
        parts.append(f"[bold red]ALERT[/] {alert['kind']}: {alert['message']}")
    if not alerts:
        parts.append("no alert")
    parts.append(f"snapshot: {path}")
    if drift and drift.get("report_path"):
        parts.append(f"Evidently report: {drift['report_path']}")
    parts.append("dashboard: /dashboard on the prediction service, or `smallboat monitor serve`")
    return Group(*parts)

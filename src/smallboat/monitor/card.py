"""The MonitorFlow card: the snapshot's figures as Metaflow components, and Evidently's report.

The figures are Markdown and Table components of Metaflow's blank card (the same numbers
`smallboat monitor check` prints, from the same snapshot dict). Evidently's report is a complete
HTML page (its scripts, data and icon font inlined, nothing fetched from the internet); it goes
into the card as an `<iframe srcdoc=...>` inside a Markdown component: the card's Markdown
renderer (marked, not sanitising) passes raw HTML through, and the iframe keeps the report's
styles and scripts apart from the card's. The page is attribute-escaped and its newlines are
written as character references, so the whole iframe is one Markdown HTML block (a blank line
would end it). tests/integration/test_monitor_flow.py opens the card in headless Chromium and
reads the report inside the frame.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

EVIDENTLY_FRAME_ID = "smallboat-evidently-frame"
"""The iframe's id in the card: what a test or a reader's script looks for. (Not
"evidently-report": the Markdown renderer gives the heading "Evidently report" that id.)"""

MAX_WINDOW_ROWS = 30
"""Live quality per window: the most recent windows shown (the snapshot keeps them all)."""


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def evidently_frame(report_html: str, *, height_px: int = 1100) -> str:
    """Evidently's page as one iframe element whose `srcdoc` holds it (see the module doc)."""
    source = html.escape(report_html, quote=True).replace("\r", "&#13;").replace("\n", "&#10;")
    return (
        f'<iframe id="{EVIDENTLY_FRAME_ID}" title="Evidently drift report" '
        f'style="width:100%;height:{height_px}px;border:1px solid #ddd" '
        f'srcdoc="{source}"></iframe>'
    )


def quality_rows(data: dict[str, Any]) -> list[list[Any]]:
    """One row per model version: live quality on its labelled evaluation points beside its
    offline test ROC-AUC (known for the watched version)."""
    offline = data.get("offline") or {}
    tested = {v["version"]: v.get("test_roc_auc") for v in data.get("versions") or []}
    if offline.get("model_version") is not None:
        tested[str(offline["model_version"])] = offline.get("test_roc_auc")
    rows: list[list[Any]] = []
    for row in (data.get("quality") or {}).get("overall", []):
        ci = row.get("roc_auc_ci")
        auc = _num(row.get("roc_auc")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        rows.append(
            [
                f"v{row['model_version']}",
                f"{row['n_labelled']:,}",
                f"{row['positives']:,}",
                auc,
                f"{_num(row.get('challenge_score'))} / {_num(row.get('challenge_max'), 1)}",
                _num(row.get("positive_rate")),
                _num(tested.get(str(row["model_version"]))),
            ]
        )
    return rows


def window_rows(data: dict[str, Any]) -> list[list[Any]]:
    windows = (data.get("quality") or {}).get("windows", [])
    return [
        [
            f"v{w['model_version']}",
            _when(w.get("window_start_ms")),
            f"{w.get('n_labelled', 0):,}",
            _num(w.get("roc_auc")),
            _num(w.get("challenge_score")),
        ]
        for w in windows[-MAX_WINDOW_ROWS:]
    ]


def card_components(
    data: dict[str, Any],
    *,
    drift_html: str | None,
    landed: str | None = None,
    transformed: dict[str, Any] | None = None,
) -> list[Any]:
    """Metaflow card components for a monitoring snapshot (`monitor.snapshot.build_snapshot`);
    `transformed` is this run's `warehouse.quality.transform_digest`, None when it did not build."""
    from metaflow.cards import Markdown, Table

    parts: list[Any] = [
        Markdown("# smallboat MonitorFlow: live quality and drift"),
        Markdown(f"Snapshot of {_when(data.get('generated_at_ms'))}, home `{data.get('home')}`."),
    ]
    alerts = data.get("alerts") or []
    parts.append(Markdown("## Alerts"))
    parts.append(
        Markdown("\n".join(f"- **{a['kind']}**: {a['message']}" for a in alerts) or "No alert.")
    )

    latency = data.get("latency") or {}
    quality = data.get("quality") or {}
    predictions = data.get("predictions") or {}
    parts.append(Markdown("## Traffic and latency"))
    parts.append(
        Table(
            [
                [
                    f"{latency.get('count', 0):,}",
                    f"{quality.get('pending', 0):,}",
                    _num(predictions.get("mean")),
                    _num(latency.get("p50_ms"), 2),
                    _num(latency.get("p95_ms"), 2),
                    _num(latency.get("p99_ms"), 2),
                ]
            ],
            headers=[
                "predictions logged",
                "awaiting a label",
                "mean probability",
                "p50 ms",
                "p95 ms",
                "p99 ms",
            ],
        )
    )

    parts.append(Markdown("## Live quality per model version (evaluation points with a label)"))
    rows = quality_rows(data)
    parts.append(
        Table(
            rows,
            headers=[
                "version",
                "labelled",
                "positives",
                "live ROC-AUC [95% CI]",
                "Challenge / max",
                "positive rate",
                "offline test ROC-AUC",
            ],
        )
        if rows
        else Markdown("No labelled prediction yet.")
    )
    windows = window_rows(data)
    if windows:
        parts.append(Markdown(f"### Per window of {data.get('window_ms', 0) / 3_600_000:g} h"))
        parts.append(
            Table(windows, headers=["version", "window start", "labelled", "ROC-AUC", "Challenge"])
        )

    parts += _drift_parts(data, drift_html)
    parts += _run_parts(data, landed, transformed)
    return parts


def _drift_parts(data: dict[str, Any], drift_html: str | None) -> list[Any]:
    from metaflow.cards import Markdown, Table

    drift = data.get("drift")
    if not drift:
        return [
            Markdown("## Drift"),
            Markdown(
                "Not checked: the watched version has no monitoring reference, or its latest "
                "window has too few predictions."
            ),
        ]
    verdict = "**DETECTED**" if drift["detected"] else "not detected"
    parts: list[Any] = [
        Markdown(
            f"## Drift of v{drift['model_version']}'s latest window: {verdict}\n\n"
            f"{drift['drift_share']:.0%} of features drifted (alert at "
            f"{drift['share_threshold']:.0%}); {drift['current_rows']:,} predictions against "
            f"{drift['reference_rows']:,} reference rows."
        ),
        Table(
            [
                [
                    f["feature"],
                    f["kind"],
                    f["method"],
                    _num(f["score"]),
                    _num(f["threshold"]),
                    "yes" if f["drifted"] else "no",
                ]
                for f in drift["features"]
            ],
            headers=["feature", "kind", "method", "score", "threshold", "drifted"],
        ),
    ]
    if drift_html:
        parts.append(Markdown("## Evidently report"))
        parts.append(Markdown(evidently_frame(drift_html)))
    return parts


def _run_parts(
    data: dict[str, Any], landed: str | None, transformed: dict[str, Any] | None
) -> list[Any]:
    from metaflow.cards import Markdown

    lines = ["## This run"]
    lines.append(f"- landed: {landed.replace(chr(10), '; ')}" if landed else "- landing: skipped")
    if transformed:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(transformed["summary"].items()))
        lines.append(
            f"- dbt build: {'passed' if transformed['success'] else 'FAILED'} in "
            f"{transformed['elapsed_seconds']:.1f} s ({counts})"
        )
    else:
        lines.append("- dbt build: skipped (the warehouse as it was)")
    champion = data.get("champion")
    if champion:
        lines.append(
            f"- champion: v{champion['version']}"
            + (f", its card: `{champion['card_path']}`" if champion.get("card_path") else "")
        )
    drift = data.get("drift") or {}
    if drift.get("report_path"):
        lines.append(f"- Evidently report as a page: `{drift['report_path']}`")
    return [Markdown("\n".join(lines))]

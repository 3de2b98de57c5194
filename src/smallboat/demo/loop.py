"""The demo's closed loop: live traffic with a planted shift -> monitor -> retrain -> reload.

Run after the demo trained its champion on the HISTORY part of the synthetic release (the latest
sessions were held out by `data.synth.holdout.split_release`):

8. live traffic: the held-out sessions are replayed as if happening now, every click sent to a
   real collector (same home: the events land in the warehouse) and to the real prediction
   service (`/v1/sessions/{id}/events`: each answer is logged). From the middle of the held-out
   period on, shoppers browse a new product line (`plant_new_product_line`);
9. monitor: land both logs, `dbt build` (purchases the collector recorded label the predictions),
   live quality and drift against the champion's reference; the dashboard's snapshot;
10. retrain: TrainFlow on everything landed, the champion/challenger gate, and a hot reload of
    the running service when the champion changes;
11. where to look, and the numbers: test AUC vs oracle, live AUC before and after the shift,
    drift detected or not.

`closed_loop` is also what the end-to-end test runs, at a tiny scale.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.data.synth.holdout import HeldOut, plant_new_product_line, session_starts
from smallboat.demo.traffic import TrafficSummary, drive
from smallboat.metrics.intent import binary_metrics
from smallboat.monitor.live import labelled_points, read_predictions
from smallboat.monitor.render import render_check
from smallboat.pipeline.jobs import MonitorCheck, RetrainResult, monitor_check, retrain
from smallboat.serve.server import ServeProcess

LOOP_DIR = "demo-loop"


@dataclass
class LoopResult:
    traffic: TrafficSummary
    shift_ms: int
    shifted_sessions: int
    check: MonitorCheck
    live: dict[str, dict[str, Any]]
    """'before' / 'after' the shift: labelled evaluation points, ROC-AUC."""
    retrained: RetrainResult | None
    served_after: str | None


def closed_loop(
    settings: Settings,
    console: Console,
    held: HeldOut,
    *,
    train_params: dict[str, Any],
    concurrency: int = 16,
    do_retrain: bool = True,
    progress: bool = True,
) -> LoopResult:
    """Steps 8-10 of the demo (see the module docstring)."""
    root = settings.home_dir / LOOP_DIR
    root.mkdir(parents=True, exist_ok=True)
    events = pq.read_table(held.live)
    starts = sorted(session_starts(events).values())
    shift_ms = int(starts[len(starts) // 2])
    events, shifted = plant_new_product_line(events, shift_ms)
    token = secrets.token_hex(16)
    service_env = {"SMALLBOAT_ADMIN_TOKEN": token}

    console.rule("[bold]8. live traffic (held-out sessions; a new product line from mid-period)")
    console.print(
        f"{held.live_sessions:,} held-out sessions, {held.live_events:,} clicks; "
        f"{shifted:,} sessions from {_day(shift_ms)} on browse a new product line"
    )
    collector = CollectorProcess(
        settings.home_dir,
        env={
            # The synthetic release's times are years old: this collector accepts them.
            "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
            "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
        },
        log_path=root / "collector.log",
    )
    with (
        collector,
        ServeProcess(settings.home_dir, env=service_env, log_path=root / "serve.log") as service,
    ):
        console.print(f"collector {collector.url}, prediction service {service.url}")
        traffic = drive(
            events,
            collector_url=collector.url,
            service_url=service.url,
            concurrency=concurrency,
            progress=progress,
        )
    console.print(
        f"{traffic.events:,} clicks collected and predicted on in {traffic.seconds:.1f} s "
        f"({traffic.rate:,.0f} clicks/s, two requests each)"
    )

    console.rule("[bold]9. monitor (land, label with the collected purchases, quality, drift)")
    span_hours = (
        int(events.column("server_timestamp_epoch_ms").to_numpy().max()) - shift_ms
    ) / 3.6e6
    # The drift check watches the latest window: make it the time since the shift.
    watch = settings.model_copy(update={"monitor_window_hours": max(span_hours, 1.0)})
    check = monitor_check(watch, progress=progress)
    console.print(check.landed.render() if check.landed else "")
    console.print(render_check(check.snapshot.data, check.path))
    live = live_before_after(read_predictions(watch), events, shift_ms)

    retrained = served_after = None
    if do_retrain:
        console.rule("[bold]10. retrain (land, transform, TrainFlow, gate, hot reload)")
        with ServeProcess(
            settings.home_dir, env=service_env, log_path=root / "serve.log"
        ) as service:
            before = httpx.get(f"{service.url}/readyz").json()["model_version"]
            retrained = retrain(
                settings.model_copy(update={"admin_token": token}),
                url=service.url,
                show_output=False,
                progress=progress,
                **train_params,
            )
            served_after = httpx.get(f"{service.url}/readyz").json()["model_version"]
        console.print(retrained.landed.render())
        console.print(f"gate: {retrained.registration.get('summary')}")
        console.print(
            f"{retrained.reload}; the service answered with v{before}, now v{served_after}"
        )
    return LoopResult(traffic, shift_ms, shifted, check, live, retrained, served_after)


def live_before_after(frame: pd.DataFrame, events: Any, shift_ms: int) -> dict[str, dict[str, Any]]:
    """Live ROC-AUC of the replayed sessions' labelled evaluation points, before and after the
    shift (by session start)."""
    starts = session_starts(events)
    points = labelled_points(frame)
    out: dict[str, dict[str, Any]] = {}
    if points.empty:
        return {"before": {"n": 0, "roc_auc": None}, "after": {"n": 0, "roc_auc": None}}
    start = points["session_id_hash"].map(starts)
    for name, mask in (("before", start < shift_ms), ("after", start >= shift_ms)):
        part = points[mask.fillna(False).to_numpy(bool)]
        metrics = binary_metrics(
            part["purchase_probability"].to_numpy(np.float64), part["label"].to_numpy(np.int64)
        )
        out[name] = {
            "n": int(metrics["n"]),
            "positives": int(metrics["positives"]),
            "roc_auc": metrics["roc_auc"],
        }
    return out


def _day(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def where_to_look(result: LoopResult, training: Any) -> Table:
    """Step 11: the numbers and where to look."""
    summary = training.summary or {}
    table = Table(title="the closed loop, in numbers")
    table.add_column("figure")
    table.add_column("value", justify="right")

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    table.add_row("test ROC-AUC (offline, held-out test split)", num(summary.get("roc_auc")))
    low, high = summary.get("roc_auc_ci_low"), summary.get("roc_auc_ci_high")
    if low is not None and high is not None:
        table.add_row("  95% CI", f"[{low:.3f}, {high:.3f}]")
    if summary.get("oracle_roc_auc") is not None:
        table.add_row("oracle ROC-AUC (the ceiling)", num(summary.get("oracle_roc_auc")))
    for name, label in (("before", "before the shift"), ("after", "after the shift")):
        part = result.live.get(name, {})
        table.add_row(
            f"live ROC-AUC {label} ({part.get('n', 0):,} labelled)", num(part.get("roc_auc"))
        )
    drift = result.check.snapshot.data.get("drift")
    table.add_row(
        "drift on the latest window",
        "not checked" if drift is None else ("DETECTED" if drift["detected"] else "not detected"),
    )
    if result.retrained is not None:
        table.add_row("retrain gate", str(result.retrained.registration.get("decision")))
        table.add_row("served after retraining", f"v{result.served_after}")
    return table


def pointers(settings: Settings, result: LoopResult, training: Any) -> list[str]:
    uri = settings.mlflow_tracking_uri
    lines = [
        "dashboard: `smallboat monitor serve` then http://127.0.0.1:8082/dashboard "
        "(or /dashboard on `smallboat serve`)",
        f"monitoring snapshot: {result.check.path}",
    ]
    drift = result.check.snapshot.data.get("drift") or {}
    if drift.get("report_path"):
        lines.append(f"Evidently drift report: {drift['report_path']}")
    if training.card_path:
        lines.append(f"TrainFlow card (first champion): {training.card_path}")
    if result.retrained is not None and result.retrained.train.card_path:
        lines.append(f"TrainFlow card (retrained): {result.retrained.train.card_path}")
    lines.append(f"MLflow UI: mlflow ui --backend-store-uri {uri}")
    lines.append("monitoring card: `smallboat monitor run` (MonitorFlow)")
    return lines

"""The closed loop's jobs, composed from the parts: land what arrived, monitor it, retrain.

- `land_arrivals`: compact the collector's event log and every serving replica's prediction log
  into landing Parquet (each exactly once).
- `monitor_check`: land, `dbt build` (labels join predictions to the events that arrived since),
  then the snapshot: live quality, drift against the served version's reference, alerts.
  `smallboat monitor check` exits non-zero on an alert; MonitorFlow runs the same steps.
- `retrain`: land, transform, TrainFlow (whose register step is the champion/challenger gate),
  and a hot reload of the running service when the champion changed.

This module sits above `collect`, `serve`'s contract (HTTP only) and `monitor`, as
`pipeline.train_steps` sits above `model`; the CLI, MonitorFlow and the Prefect flows call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from smallboat.collect.compaction import compact_events
from smallboat.config import Settings
from smallboat.data.log.compact import CompactionReport
from smallboat.data.log.predictions import compact_predictions
from smallboat.errors import SmallboatError
from smallboat.monitor.snapshot import Snapshot, build_snapshot, write_snapshot
from smallboat.pipeline.runner import TrainOutcome, run_train
from smallboat.warehouse.quality import TransformResult
from smallboat.warehouse.transform import run_transform

log = logging.getLogger(__name__)


@dataclass
class Landed:
    events: CompactionReport
    predictions: CompactionReport

    def render(self) -> str:
        return f"events: {self.events.render()}\npredictions: {self.predictions.render()}"


def land_arrivals(settings: Settings) -> Landed:
    """Compact the collector's log and the prediction logs into landing Parquet."""
    settings.ensure_home()
    return Landed(events=compact_events(settings), predictions=compact_predictions(settings))


@dataclass
class MonitorCheck:
    landed: Landed | None
    transform: TransformResult | None
    snapshot: Snapshot
    path: Path

    @property
    def alerts(self) -> list[dict[str, str]]:
        return self.snapshot.alerts


def monitor_check(
    settings: Settings,
    *,
    land: bool = True,
    transform: bool = True,
    n_bootstrap: int = 200,
    progress: bool = False,
) -> MonitorCheck:
    """Land, transform, and write the monitoring snapshot; alerts are on the result."""
    landed = land_arrivals(settings) if land else None
    result = run_transform(settings, progress=progress) if transform else None
    snapshot = build_snapshot(settings, n_bootstrap=n_bootstrap)
    path = write_snapshot(settings, snapshot)
    return MonitorCheck(landed, result, snapshot, path)


def service_url(settings: Settings) -> str:
    return settings.serve_url or f"http://{settings.serve_host}:{settings.serve_port}"


def reload_service(settings: Settings, url: str | None = None) -> str:
    """Ask the running service to load the current champion; returns what happened, in words
    (a service that is not running is not an error: it loads the champion when it starts)."""
    url = url or service_url(settings)
    if not settings.admin_token:
        return (
            f"not reloaded: SMALLBOAT_ADMIN_TOKEN is not set (the service at {url} keeps its model)"
        )
    try:
        response = httpx.post(
            f"{url}/admin/reload",
            headers={"Authorization": f"Bearer {settings.admin_token}"},
            timeout=60.0,
        )
    except httpx.TransportError as exc:
        return f"not reloaded: no service answers at {url} ({type(exc).__name__})"
    if response.status_code != 200:
        raise SmallboatError(
            f"reload at {url} failed with {response.status_code}: {response.text[:300]}"
        )
    body = response.json()
    return f"reloaded {url}: now serving v{body['model_version']} (was {body['previous_version']})"


@dataclass
class RetrainResult:
    landed: Landed
    transform: TransformResult
    train: TrainOutcome
    reload: str

    @property
    def registration(self) -> dict[str, Any]:
        registration: dict[str, Any] = self.train.registration or {}
        return registration

    @property
    def promoted(self) -> bool:
        return self.registration.get("decision") == "promoted"


def retrain(
    settings: Settings,
    *,
    url: str | None = None,
    show_output: bool = False,
    progress: bool = False,
    **train_params: Any,
) -> RetrainResult:
    """Land -> transform -> TrainFlow (gate) -> reload the service when the champion changed."""
    landed = land_arrivals(settings)
    transformed = run_transform(settings, progress=progress)
    outcome = run_train(settings, show_output=show_output, skip_transform=True, **train_params)
    result = RetrainResult(landed, transformed, outcome, reload="")
    result.reload = reload_if_promoted(settings, result, url)
    log.info("retrain: %s; %s", result.registration.get("summary"), result.reload)
    return result


def reload_if_promoted(settings: Settings, result: RetrainResult, url: str | None = None) -> str:
    """Hot-reload the service when the gate promoted the new version; else say why not."""
    if result.promoted:
        return reload_service(settings, url)
    return f"not reloaded: {result.registration.get('summary', 'the gate kept the champion')}"

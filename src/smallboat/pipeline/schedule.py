"""Prefect orchestration of the closed loop: watch on a schedule, retrain on an alert.

The reference runs retraining from an external orchestrator; here Prefect plays that part on one
machine, with no account and no server to start: each run talks to Prefect's temporary local API
server, whose database lives at `<SMALLBOAT_HOME>/prefect/prefect.db`, so every flow and task run
is recorded there (`PREFECT_HOME=<home>/prefect prefect server start` shows them in Prefect's UI).

- `retrain_flow`: tasks land -> transform -> train and gate (TrainFlow, whose register step is the
  champion/challenger gate) -> reload (only when the gate promoted the challenger).
- `watch_flow`: the monitoring check (land, transform, live quality and drift); a drift or
  quality alert starts `retrain_flow` as a subflow.
- `schedule`: runs `watch_flow` every interval. Prefect's own scheduler (`flow.serve(interval=)`)
  needs a long-running `prefect server start`: against the temporary server it refuses ("Cannot
  schedule flows on an ephemeral server"), so the interval loop is ours, and each tick is still
  a tracked Prefect flow run.

The flows call `smallboat.pipeline.jobs` (the same steps as `smallboat retrain` and `smallboat
monitor check`); nothing here holds logic a unit test would need to reach. Prefect reads its
settings when it is imported, so it is imported only inside `_flows()`, after `use_prefect_env`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.pipeline import jobs
from smallboat.pipeline.runner import TrainOutcome, run_train
from smallboat.warehouse.transform import run_transform

log = logging.getLogger(__name__)

CheckFn = Callable[[Settings], jobs.MonitorCheck]
"""A monitoring check: `jobs.monitor_check` unless a test or caller supplies another."""
TrainFn = Callable[..., Any]
"""`(settings, **train_params) -> TrainOutcome`: TrainFlow unless supplied."""


def prefect_home(settings: Settings) -> Path:
    return settings.home_dir / "prefect"


def use_prefect_env(settings: Settings) -> Path:
    """Point Prefect at `<home>/prefect` and its temporary local server, with analytics off and
    only Prefect's warnings on the console (flow and task logs go to the Prefect database).

    Prefect reads its settings once, when first imported: this must run before that import,
    and one process serves one smallboat home.
    """
    home = prefect_home(settings)
    if "prefect" in sys.modules:
        current = os.environ.get("PREFECT_HOME")
        if current != str(home):
            raise SmallboatError(
                f"Prefect was already imported in this process with PREFECT_HOME={current}; "
                f"smallboat's flows keep their runs in {home}: run them in a fresh process"
            )
        return home
    home.mkdir(parents=True, exist_ok=True)
    # A set PREFECT_API_URL would send runs to a server or Prefect Cloud; unset, each process
    # starts Prefect's temporary local server (ephemeral mode).
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
            # The first start creates the database (~10 s of migrations on 2 busy cores).
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        }
    )
    return home


@dataclass
class Watched:
    """What one watch run saw and did."""

    flow_run: str
    alerts: list[dict[str, str]]
    snapshot_path: Path | None
    retrain: jobs.RetrainResult | None
    note: str

    @property
    def retrained(self) -> bool:
        return self.retrain is not None

    def render(self) -> str:
        if not self.alerts:
            return f"flow run {self.flow_run}: no alerts; {self.note}"
        found = "; ".join(f"{a['kind']}: {a['message']}" for a in self.alerts)
        lines = [f"flow run {self.flow_run}: {len(self.alerts)} alert(s) ({found})", self.note]
        if self.retrain is not None and self.retrain.promoted:
            lines.append(self.retrain.reload)
        return "\n".join(lines)


def retrain_flow(
    settings: Settings,
    train_params: dict[str, Any] | None = None,
    url: str | None = None,
    *,
    train: TrainFn | None = None,
) -> jobs.RetrainResult:
    """Land -> transform -> TrainFlow (the gate) -> reload when promoted, as one Prefect flow
    run; `train_params` are TrainFlow's Parameters. `train` replaces TrainFlow (tests)."""
    use_prefect_env(settings)
    result: jobs.RetrainResult = _flows().retrain(
        settings, train_params=train_params or {}, url=url, train=train
    )
    return result


def watch_flow(
    settings: Settings,
    *,
    retrain_on_alert: bool = True,
    train_params: dict[str, Any] | None = None,
    url: str | None = None,
    n_bootstrap: int = 200,
    check: CheckFn | None = None,
    train: TrainFn | None = None,
) -> Watched:
    """The monitoring check as a Prefect flow run; an alert starts `retrain_flow` as its subflow
    (unless `retrain_on_alert` is off). `check` replaces `jobs.monitor_check` and `train`
    replaces TrainFlow: tests use them to force an alert and to skip training."""
    use_prefect_env(settings)
    watched: Watched = _flows().watch(
        settings,
        retrain_on_alert=retrain_on_alert,
        train_params=train_params or {},
        url=url,
        n_bootstrap=n_bootstrap,
        check=check,
        train=train,
    )
    return watched


def schedule(
    settings: Settings,
    every: timedelta,
    *,
    retrain_on_alert: bool = True,
    run_first: bool = True,
    max_runs: int | None = None,
    on_run: Callable[[int, Watched], None] | None = None,
    on_error: Callable[[int, Exception], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **watch: Any,
) -> int:
    """Run `watch_flow` every `every` (first right away unless `run_first` is off) until
    `max_runs` runs (None: until interrupted); returns the number of runs.

    Ticks keep to a fixed grid from the start; a run longer than the interval skips the ticks it
    overran rather than starting runs back to back. A failed run is reported to `on_error`
    (Prefect records it as failed) and the schedule goes on. `watch` goes to `watch_flow`.
    """
    if every.total_seconds() <= 0:
        raise SmallboatError(f"schedule interval must be positive, got {every}")
    if max_runs is not None and max_runs < 1:
        raise SmallboatError(f"max_runs must be at least 1, got {max_runs}")
    interval = every.total_seconds()
    next_at = time.monotonic() + (0.0 if run_first else interval)
    runs = 0
    while max_runs is None or runs < max_runs:
        sleep(max(0.0, next_at - time.monotonic()))
        runs += 1
        try:
            watched = watch_flow(settings, retrain_on_alert=retrain_on_alert, **watch)
        except Exception as exc:
            if on_error is None:
                log.error("scheduled run %d failed: %s", runs, exc)
            else:
                on_error(runs, exc)
        else:
            if on_run is not None:
                on_run(runs, watched)
        now = time.monotonic()
        missed = max(0, int((now - next_at) // interval))
        if missed:
            log.info("run %d took longer than the interval: skipping %d tick(s)", runs, missed)
        next_at += (missed + 1) * interval
    return runs


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """A positive duration written as numbers with units: `90s`, `30m`, `1h`, `1h30m`, `1.5d`."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise SmallboatError(
            f"duration {text!r}: expected numbers with units s, m, h or d, such as 90s, 30m, "
            "1h or 1h30m"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise SmallboatError(f"duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class _Flows:
    retrain: Callable[..., jobs.RetrainResult]
    watch: Callable[..., Watched]


def _run_train(settings: Settings, **params: Any) -> TrainOutcome:
    return run_train(settings, show_output=False, skip_transform=True, **params)


def _run_check(settings: Settings, n_bootstrap: int) -> jobs.MonitorCheck:
    return jobs.monitor_check(settings, n_bootstrap=n_bootstrap)


@functools.cache
def _flows() -> _Flows:
    """Build the Prefect tasks and flows once per process, after `use_prefect_env` (importing
    Prefect reads its settings, so the decorators cannot run at this module's import)."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.runtime import flow_run

    # Run and task logs (a failure's traceback included) go to the Prefect database through
    # these loggers' own handler; not also to the console, where the caller reports in one line.
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).propagate = False

    # Results stay in memory (nothing is persisted), so there is nothing to cache or key on.
    land = task(name="land", cache_policy=NO_CACHE)(jobs.land_arrivals)
    transform = task(name="transform", cache_policy=NO_CACHE)(run_transform)
    reload = task(name="reload", cache_policy=NO_CACHE)(jobs.reload_if_promoted)

    @task(name="train and gate", cache_policy=NO_CACHE)
    def train_and_gate(settings: Settings, train: TrainFn, params: dict[str, Any]) -> TrainOutcome:
        return train(settings, **params)

    @task(name="monitor check", cache_policy=NO_CACHE)
    def monitor(settings: Settings, check: CheckFn | None, n_bootstrap: int) -> jobs.MonitorCheck:
        return check(settings) if check is not None else _run_check(settings, n_bootstrap)

    @flow(name="smallboat-retrain", log_prints=False)
    def retrain(
        settings: Settings,
        train_params: dict[str, Any],
        url: str | None = None,
        train: TrainFn | None = None,
    ) -> jobs.RetrainResult:
        """Land -> transform -> TrainFlow (the champion/challenger gate) -> reload if promoted."""
        landed = land(settings)
        transformed = transform(settings, progress=False)
        outcome = train_and_gate(settings, train or _run_train, train_params)
        result = jobs.RetrainResult(landed, transformed, outcome, reload="")
        result.reload = reload(settings, result, url)
        return result

    @flow(name="smallboat-watch", log_prints=False)
    def watch(
        settings: Settings,
        retrain_on_alert: bool,
        train_params: dict[str, Any],
        url: str | None = None,
        n_bootstrap: int = 200,
        check: CheckFn | None = None,
        train: TrainFn | None = None,
    ) -> Watched:
        """The monitoring check; a drift or quality alert starts the retrain flow."""
        checked = monitor(settings, check, n_bootstrap)
        name = str(flow_run.get_name())
        if not checked.alerts:
            return Watched(name, [], checked.path, None, "nothing to do")
        if not retrain_on_alert:
            return Watched(name, checked.alerts, checked.path, None, "retraining on alerts is off")
        result = retrain(settings, train_params, url, train)
        decision = result.registration.get("summary") or result.registration.get("decision")
        return Watched(name, checked.alerts, checked.path, result, f"retrained: {decision}")

    return _Flows(retrain=retrain, watch=watch)

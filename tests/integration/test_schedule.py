"""The Prefect orchestration, with real Prefect (its temporary local server, under the test home):
an alert runs the retrain flow (land, transform, a stand-in for TrainFlow, reload) as a subflow;
the schedule runs on its interval and survives a failed run; `smallboat schedule` runs the real
monitoring check, which finds nothing on a home without predictions and so does not retrain;
the runs are in Prefect's database; bad durations get a one-line error.

TrainFlow itself is tested in test_train_flow.py: here `train=` stands in for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from smallboat.cli import app
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.monitor.snapshot import Snapshot
from smallboat.pipeline.jobs import MonitorCheck
from smallboat.pipeline.runner import TrainOutcome
from smallboat.pipeline.schedule import (
    Watched,
    parse_duration,
    prefect_home,
    schedule,
    watch_flow,
)
from tests.synthetic_home import synthetic_home

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("1.5d", 129600), (" 2H ", 7200)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "says"),
    [("90", "expected numbers with units"), ("1x", "expected"), ("", "expected"), ("0m", "zero")],
)
def test_parse_duration_rejects(text: str, says: str) -> None:
    with pytest.raises(SmallboatError, match=says):
        parse_duration(text)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A loaded (untransformed) synthetic home; its Prefect state lives in <home>/prefect.
    One home for the module: a process can only point Prefect at one home."""
    with synthetic_home(tmp_path_factory.mktemp("schedule"), sessions=300, seed=7) as (s, _):
        yield s


def forced_alert(settings: Settings) -> MonitorCheck:
    snapshot = Snapshot({}, alerts=[{"kind": "drift", "message": "planted by the test"}])
    return MonitorCheck(None, None, snapshot, settings.home_dir / "snapshot.json")


def quiet(settings: Settings) -> MonitorCheck:
    return MonitorCheck(None, None, Snapshot({}), settings.home_dir / "snapshot.json")


class StandInTrain:
    """Stands in for TrainFlow: records its parameters and returns the gate's decision."""

    def __init__(self, decision: str) -> None:
        self.decision = decision
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Settings, **params: Any) -> TrainOutcome:
        self.calls.append(params)
        registration = {"decision": self.decision, "summary": f"{self.decision} (stand-in)"}
        return TrainOutcome("1", "TrainFlow/1", True, registration, None, "")


def flow_runs(name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))


def task_names(flow_run_id: UUID, expected: int) -> list[str]:
    """Names of a flow run's task runs (task states reach the server through its event stream,
    a moment after the run ends)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        names = sorted(r.name.rsplit("-", 1)[0] for r in runs)
        if len(names) >= expected or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def by_name(name: str, runs: list[Any]) -> Any:
    return next(r for r in runs if r.name == name)


def retrain_subflows(watch_run_id: UUID) -> list[Any]:
    """The retrain flow runs started from inside the watch flow run `watch_run_id`."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [
            r
            for r in flow_runs("smallboat-retrain")
            if r.parent_task_run_id is not None
            and client.read_task_run(r.parent_task_run_id).flow_run_id == watch_run_id
        ]


def test_alert_runs_the_retrain_flow(home: Settings) -> None:
    train = StandInTrain("promoted")
    watched = watch_flow(home, check=forced_alert, train=train, train_params={"seed": 3})
    assert [a["kind"] for a in watched.alerts] == ["drift"]
    assert train.calls == [{"seed": 3}]
    assert watched.retrain is not None
    assert watched.retrain.promoted
    assert watched.retrain.transform is not None  # the real dbt build ran
    # No admin token in the test: the reload step says so instead of failing.
    assert watched.retrain.reload.startswith("not reloaded: SMALLBOAT_ADMIN_TOKEN is not set")

    # The retrain run is a subflow of this watch run, and each of its steps is a task run.
    watch = by_name(watched.flow_run, flow_runs("smallboat-watch"))
    [retrain] = retrain_subflows(watch.id)
    assert retrain.state.is_completed()
    expected = ["land", "reload", "train and gate", "transform"]
    assert task_names(retrain.id, len(expected)) == expected


def test_alert_without_retraining(home: Settings) -> None:
    train = StandInTrain("promoted")
    watched = watch_flow(home, check=forced_alert, train=train, retrain_on_alert=False)
    assert watched.alerts and watched.retrain is None and train.calls == []
    assert watched.note == "retraining on alerts is off"


def test_schedule_runs_on_its_interval(home: Settings) -> None:
    started: list[float] = []
    seen: list[Watched] = []

    def on_run(run: int, watched: Watched) -> None:
        seen.append(watched)

    def check(settings: Settings) -> MonitorCheck:
        started.append(time.monotonic())
        return quiet(settings)

    runs = schedule(home, timedelta(seconds=1), max_runs=2, on_run=on_run, check=check)
    assert runs == 2 and len(seen) == 2
    assert started[1] - started[0] >= 0.9
    assert len({w.flow_run for w in seen}) == 2


def test_schedule_survives_a_failed_run(home: Settings) -> None:
    def broken(settings: Settings) -> MonitorCheck:
        raise SmallboatError("warehouse unreachable")

    errors: list[tuple[int, Exception]] = []
    runs = schedule(
        home,
        timedelta(seconds=0.2),
        max_runs=2,
        on_error=lambda run, exc: errors.append((run, exc)),
        check=broken,
    )
    assert runs == 2
    assert [(run, str(exc)) for run, exc in errors] == [
        (1, "warehouse unreachable"),
        (2, "warehouse unreachable"),
    ]
    failed = [r for r in flow_runs("smallboat-watch") if r.state.is_failed()]
    assert len(failed) >= 2


def test_cli_quiet_check_does_not_retrain(home: Settings) -> None:
    """`smallboat schedule` with the real monitoring check, on a home with no predictions: no
    alert, so no retrain flow; the run and its task are in Prefect's database."""
    result = CliRunner().invoke(app, ["schedule", "--max-runs", "1", "--every", "1s"])
    assert result.exit_code == 0, result.output
    assert "checking every 0:00:01; on an alert: retrain" in result.output
    found = re.search(r"run 1: flow run (\S+): no alerts; nothing to do", result.output)
    assert found, result.output
    assert (home.home_dir / "monitor" / "snapshot.json").is_file()
    assert (prefect_home(home) / "prefect.db").is_file()
    run = by_name(found.group(1), flow_runs("smallboat-watch"))
    assert run.state.is_completed()
    assert task_names(run.id, 1) == ["monitor check"]
    assert retrain_subflows(run.id) == []


@pytest.mark.parametrize("every", ["5x", "0s"])
def test_cli_rejects_a_bad_interval(every: str) -> None:
    result = CliRunner().invoke(app, ["schedule", "--every", every])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: duration '{every}'")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_help() -> None:
    result = CliRunner().invoke(app, ["schedule", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--every", "--retrain-on-alert", "--no-retrain-on-alert", "--max-runs", "--url"):
        assert option in result.output

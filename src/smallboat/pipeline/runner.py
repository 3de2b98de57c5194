"""Run the Metaflow flows (TrainFlow, MonitorFlow) through Metaflow's Runner API, from their files
under `flows/`, with Metaflow's state under SMALLBOAT_HOME."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.pipeline.failure import RESUMABLE_FLOW, flow_failure

FLOW_NAME = RESUMABLE_FLOW
TRAIN_FLOW_FILE = "train_flow"
MONITOR_FLOW_FILE = "monitor_flow"


def metaflow_env(settings: Settings) -> dict[str, str]:
    """Environment for Metaflow runs and Client calls: a user name (Metaflow refuses to run
    without one) and the local datastore and metadata under the smallboat home, so runs, `resume`
    and the Client API all find the same runs whatever the current directory."""
    candidates = [os.environ.get("USERNAME"), os.environ.get("USER"), _os_user()]
    # Metaflow refuses "root" as a user name (CI and containers often run as root).
    user = next((u for u in candidates if u and u != "root"), "smallboat")
    return {
        "USERNAME": user,
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(settings.home_dir),
        "METAFLOW_DEFAULT_DATASTORE": os.environ.get("METAFLOW_DEFAULT_DATASTORE", "local"),
        "METAFLOW_DEFAULT_METADATA": os.environ.get("METAFLOW_DEFAULT_METADATA", "local"),
        "SMALLBOAT_HOME": str(settings.home_dir),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "smallboat"


def use_metaflow_env(settings: Settings) -> None:
    """Apply `metaflow_env` to this process (before Metaflow's Client API is imported)."""
    os.environ.update(metaflow_env(settings))


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    pathspec: str
    successful: bool
    registration: dict[str, Any] | None
    summary: dict[str, float] | None
    stdout: str

    @property
    def card_path(self) -> str | None:
        return None if self.registration is None else self.registration.get("card_path")


FLOWS_DIR = Path(__file__).resolve().parent.parent / "flows"
"""The flow files, found by path: Metaflow runs a flow from its file, and the pipeline layer
sits below `flows/` (the flows import the step bodies from here, never the other way)."""


def flow_file(name: str) -> str:
    """The path of `flows/<name>.py`."""
    path = FLOWS_DIR / f"{name}.py"
    if not path.is_file():
        raise SmallboatError(f"no flow file {path}: is the smallboat package complete?")
    return str(path)


def _outcome(run: Any, stdout: str) -> TrainOutcome:
    registration = summary = None
    if run.successful:
        registration = run["register"].task.data.registration
        summary = run["evaluate"].task.data.test_metrics
    return TrainOutcome(
        run_id=run.id,
        pathspec=run.pathspec,
        successful=bool(run.successful),
        registration=registration,
        summary=summary,
        stdout=stdout,
    )


def _runner(settings: Settings, *, show_output: bool, path: str) -> Any:
    from metaflow import Runner

    runner = Runner(
        path,
        show_output=show_output,
        env=metaflow_env(settings),
        cwd=str(settings.home_dir),
    )
    _restore_typing_patch()
    return runner


def _restore_typing_patch() -> None:
    """Undo Metaflow's vendored typing_extensions' patch of `typing._collect_parameters`.

    Building a Runner imports `metaflow._vendor.typing_extensions`, an old copy that replaces
    `typing._collect_parameters` process-wide with a version that does not know the real
    typing_extensions' `NoDefault`; any later import of a library whose generics use TypeVar
    defaults (torch._dynamo, loaded by the first optimizer) then fails with "Type parameter ...
    without a default follows type parameter with a default". Re-applying the real
    typing_extensions' own patch restores what every other library expects.
    """
    import typing

    import typing_extensions

    real = getattr(typing_extensions, "_collect_parameters", None)
    if real is not None and hasattr(typing, "_collect_parameters"):
        typing._collect_parameters = real


def run_train(
    settings: Settings, *, max_workers: int = 1, show_output: bool = True, **params: Any
) -> TrainOutcome:
    """Run TrainFlow to its end; `params` are the flow's Parameters (python names)."""
    settings.ensure_home()
    use_metaflow_env(settings)
    with _runner(settings, show_output=show_output, path=flow_file(TRAIN_FLOW_FILE)).run(
        max_workers=max_workers, **params
    ) as running:
        stdout = running.stdout
        if running.status != "successful":
            raise SmallboatError(flow_failure(running, stdout, flow_name=FLOW_NAME))
        return _outcome(cast(Any, running).run, stdout)


def resume_train(
    settings: Settings,
    *,
    origin_run_id: str,
    step_to_rerun: str | None = None,
    max_workers: int = 1,
    show_output: bool = True,
) -> TrainOutcome:
    """Resume a failed TrainFlow run: steps before the failure are cloned, not re-run."""
    settings.ensure_home()
    use_metaflow_env(settings)
    kwargs: dict[str, Any] = {"origin_run_id": origin_run_id, "max_workers": max_workers}
    if step_to_rerun:
        kwargs["step_to_rerun"] = step_to_rerun
    path = flow_file(TRAIN_FLOW_FILE)
    with _runner(settings, show_output=show_output, path=path).resume(**kwargs) as running:
        stdout = running.stdout
        if running.status != "successful":
            raise SmallboatError(flow_failure(running, stdout, flow_name=FLOW_NAME))
        return _outcome(cast(Any, running).run, stdout)


MONITOR_FLOW_NAME = "MonitorFlow"


@dataclass(frozen=True)
class MonitorOutcome:
    run_id: str
    pathspec: str
    snapshot: dict[str, Any]
    snapshot_path: str
    card_hint: str
    stdout: str = ""

    @property
    def alerts(self) -> list[dict[str, str]]:
        alerts: list[dict[str, str]] = self.snapshot.get("alerts") or []
        return alerts


def run_monitor(settings: Settings, *, show_output: bool = True, **params: Any) -> MonitorOutcome:
    """Run MonitorFlow to its end; `params` are its Parameters (land, transform, bootstrap).
    An alert is not a failure: it is in `outcome.snapshot["alerts"]`."""
    settings.ensure_home()
    use_metaflow_env(settings)
    path = flow_file(MONITOR_FLOW_FILE)
    with _runner(settings, show_output=show_output, path=path).run(**params) as running:
        stdout = running.stdout
        if running.status != "successful":
            raise SmallboatError(flow_failure(running, stdout, flow_name=MONITOR_FLOW_NAME))
        run = cast(Any, running).run
        compute = run["compute"].task.data
        return MonitorOutcome(
            run_id=run.id,
            pathspec=run.pathspec,
            snapshot=compute.snapshot,
            snapshot_path=compute.snapshot_path,
            card_hint=_card_hint(run["card"].task),
            stdout=stdout,
        )


def _card_hint(task: Any) -> str:
    """Where the card is: its HTML file in the local datastore (open it in a browser), else how
    the Client API gets it."""
    from metaflow.cards import get_cards

    client = f"metaflow.cards.get_cards(Task({task.pathspec!r}), id='report')"
    cards = get_cards(task, id="report")
    if not len(cards):
        return f"no card was written for {task.pathspec}"
    root = task.metadata_dict.get("ds-root")
    if task.metadata_dict.get("ds-type") == "local" and root:
        path = Path(root) / "mf.cards" / cards[0].path
        if path.is_file():
            return str(path)
    return f"{task.pathspec} (Python: {client})"

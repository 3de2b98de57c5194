"""A TrainFlow-trained champion shared by the service tests: one small synthetic dataset, built
once per test session (dbt), trained through the real flow (Metaflow, MLflow) on a copy of that
home, and its test examples as raw rows beside the flow's offline predictions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from smallboat.config import Settings
from smallboat.pipeline.runner import TrainOutcome, run_train, use_metaflow_env
from tests.synthetic_home import copy_home, raw_rows

GRID = json.dumps([{"name": "pair", "hidden": 16, "batch_size": 64, "max_epochs": 6, "members": 2}])
NEXT_ITEM = json.dumps({"max_epochs": 4})  # the next-item sequence model, kept short here


@dataclass
class Trained:
    settings: Settings
    outcome: TrainOutcome
    sessions: list[list[dict[str, Any]]]  # raw rows of each test example's prefix
    offline: np.ndarray  # the flow's test predictions, same order
    session_rows: dict[int, list[dict[str, Any]]]  # whole test sessions, by index
    examples: list[tuple[int, int]]  # (session index, prefix length) per test example


@contextmanager
def trained_copy(
    built: Settings, home: Path, grid: str = GRID, **flow_params: Any
) -> Iterator[Trained]:
    """TrainFlow run once (the sweep `grid`, any other flow Parameters by python name) on a copy
    at `home` of the home `built`, whose warehouse dbt has built; SMALLBOAT_HOME points at the
    copy while the context is open."""
    copy_home(built, home)
    mp = pytest.MonkeyPatch()
    mp.setenv("SMALLBOAT_HOME", str(home))
    mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    try:
        settings = Settings()
        use_metaflow_env(settings)
        yield trained_on(settings, grid=grid, **flow_params)
    finally:
        mp.undo()


def trained_on(settings: Settings, grid: str = GRID, **flow_params: Any) -> Trained:
    """TrainFlow run once on the home, whose warehouse is built (the sweep `grid`; the flow's
    transform step records the live build's quality results); the test examples as raw rows
    beside its predictions."""
    outcome = run_train(
        settings,
        show_output=False,
        grid=grid,
        bootstrap=0,
        skip_transform=True,
        threads=1,
        next_item=NEXT_ITEM,
        **flow_params,
    )
    from metaflow import Run, namespace

    namespace(None)
    run = Run(outcome.pathspec)
    prepare, evaluate = run["prepare"].task, run["evaluate"].task
    assert prepare is not None and evaluate is not None
    prepared = prepare.data.data
    offline = np.asarray(evaluate.data.report["test_predictions"])
    events, examples = prepared.test_events, prepared.test_examples
    session_rows = {
        int(s): raw_rows(events, int(s), f"test-{int(s)}") for s in np.unique(examples.session)
    }
    pairs = [
        (int(s), int(k)) for s, k in zip(examples.session, examples.prefix_length, strict=True)
    ]
    sessions = [session_rows[s][:k] for s, k in pairs]
    return Trained(settings, outcome, sessions, offline, session_rows, pairs)


def assert_served_equal_offline(trained: Trained, service: str) -> None:
    """Every held-out session of `trained` sent to `service` in batches of 250, and once alone:
    the served probabilities equal the flow's offline predictions to 1e-6."""
    sessions = trained.sessions
    assert len(sessions) == len(trained.offline) > 100
    served: list[float] = []
    for start in range(0, len(sessions), 250):
        chunk = sessions[start : start + 250]
        r = httpx.post(
            f"{service}/v1/predict",
            json={"sessions": [{"events": s} for s in chunk]},
            timeout=30.0,
        )
        assert r.status_code == 200, r.text
        served += [p["purchase_probability"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(served, trained.offline, atol=1e-6, rtol=0)
    one = httpx.post(f"{service}/v1/predict", json={"sessions": [{"events": sessions[0]}]})
    assert one.json()["predictions"][0]["purchase_probability"] == pytest.approx(
        trained.offline[0], abs=1e-6
    )

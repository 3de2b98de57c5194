"""A TrainFlow-trained champion shared by the service tests: one small synthetic dataset, built
once per test session (dbt), trained through the real flow (Metaflow, MLflow) on a copy of that
home, and its test examples as raw rows beside the flow's offline predictions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from smallboat.bundle import ONNX_FILE
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
    beside its predictions. The bundle keeps the sequence recommender (unless `recommender` says
    otherwise): its serving graph is what these services test; on small data the Markov chain
    can validate better and would leave the graph without a recommender."""
    outcome = run_train(
        settings,
        show_output=False,
        grid=grid,
        bootstrap=0,
        skip_transform=True,
        threads=1,
        next_item=NEXT_ITEM,
        **{"recommender": "sequence", **flow_params},
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


GRAPH_TOLERANCE = 1e-5
"""The serving graph against PyTorch (float32 in both, summed in another order)."""


def champion_folder(trained: Trained) -> Path:
    registration = trained.outcome.registration
    assert registration is not None and registration["decision"] == "promoted"
    return Path(registration["bundle_dir"])


def assert_graph_equals_torch(trained: Trained) -> None:
    """The champion's bundle carries the serving graph publish wrote, and on every test example
    its outputs equal PyTorch's to 1e-5: the GRU ensemble's probability (the champion's own, or
    a blend's GRU half; a LightGBM champion's graph has none) and the sequence recommender's
    scores; in one batch and one session at a time."""
    from smallboat.model.intent import predict_proba
    from smallboat.model.next_item.sequence import SequenceRecommender
    from smallboat.model.onnx_intent import OnnxIntent
    from smallboat.model.predictor import IntentPredictor

    folder = champion_folder(trained)
    assert (folder / ONNX_FILE).is_file(), f"publish wrote no {ONNX_FILE} into {folder}"
    predictor = IntentPredictor.load(folder)
    graph = OnnxIntent(folder / ONNX_FILE)
    inputs = predictor.encode(trained.sessions)
    probability, scores = graph.run(inputs)
    gru = predictor.gru
    assert (probability is None) == (gru is None), (probability, gru)
    if probability is not None and gru is not None:
        expected = predict_proba(gru, inputs)
        np.testing.assert_allclose(probability, expected, atol=GRAPH_TOLERANCE, rtol=0)
        for row in range(0, len(inputs), 37):
            one = graph.predict(inputs.take(np.array([row])))
            assert abs(one[0] - expected[row]) <= GRAPH_TOLERANCE, (row, one[0], expected[row])
    assert isinstance(predictor.next_item, SequenceRecommender) and scores is not None
    torch_scores = predictor.next_item.scores(inputs).numpy()
    finite = np.isfinite(torch_scores)
    assert np.array_equal(finite, np.isfinite(scores))  # the special tokens stay -inf
    np.testing.assert_allclose(scores[finite], torch_scores[finite], atol=GRAPH_TOLERANCE, rtol=0)


def assert_graphless_copy_serves_the_same(trained: Trained, copy: Path) -> None:
    """A copy at `copy` of the champion's bundle without its graph (as written before it had
    one): the graph is derived on load, and the service's scoring on ONNX Runtime gives the
    flow's offline predictions to 1e-6 and the PyTorch runtime's answers."""
    from smallboat.serve.scoring import LoadedModel, score_batch

    shutil.copytree(champion_folder(trained), copy)
    (copy / ONNX_FILE).unlink()
    on_onnx = LoadedModel.from_bundle(copy, runtime="onnx")
    on_torch = LoadedModel.from_bundle(copy, runtime="torch")
    assert on_onnx.onnx is not None and on_torch.onnx is None
    assert not (copy / ONNX_FILE).exists()  # derived in memory: the bundle is not changed
    by_onnx = score_batch(on_onnx, [trained.sessions]).outcomes[0]
    by_torch = score_batch(on_torch, [trained.sessions]).outcomes[0]
    served = np.array([o.purchase_probability for o in by_onnx], dtype=np.float64)
    np.testing.assert_allclose(served, trained.offline, atol=1e-6, rtol=0)
    for a, b in zip(by_onnx, by_torch, strict=True):
        assert a.purchase_probability == pytest.approx(b.purchase_probability, abs=1e-6)
        assert a.next_items is not None and b.next_items is not None
        assert [sku for sku, _ in a.next_items] == [sku for sku, _ in b.next_items]

"""The serving graph on ONNX Runtime against PyTorch, on every test example of a TrainFlow run.

The champion's bundle (the shared `trained` fixture, read only) carries `serving.onnx`, written at
publish time; a bundle without one derives the same graph from its weights on load. Both give
the ensemble's probabilities and the sequence recommender's scores to 1e-5, in one batch and
one session at a time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from smallboat.bundle import ONNX_FILE
from smallboat.model.intent import predict_proba
from smallboat.model.onnx_intent import OnnxIntent
from smallboat.model.predictor import IntentPredictor
from smallboat.serve.scoring import LoadedModel, score_batch
from tests.trained_service import Trained

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5


def champion_folder(trained: Trained) -> Path:
    registration = trained.outcome.registration
    assert registration is not None
    return Path(registration["bundle_dir"])


def test_published_bundle_carries_a_serving_graph_equal_to_pytorch(trained: Trained) -> None:
    folder = champion_folder(trained)
    assert (folder / ONNX_FILE).is_file(), f"publish wrote no {ONNX_FILE} into {folder}"
    predictor = IntentPredictor.load(folder)
    graph = OnnxIntent(folder / ONNX_FILE)
    assert graph.has_next_item
    inputs = predictor.encode(trained.sessions)
    assert len(inputs) == len(trained.offline) > 100

    probability, scores = graph.run(inputs)
    assert predictor.ensemble is not None and probability is not None
    np.testing.assert_allclose(
        probability, predict_proba(predictor.ensemble, inputs), atol=TOLERANCE
    )
    np.testing.assert_allclose(probability, trained.offline, atol=TOLERANCE, rtol=0)
    assert predictor.next_item is not None and scores is not None
    torch_scores = predictor.next_item.scores(inputs).numpy()
    finite = np.isfinite(torch_scores)
    assert np.array_equal(finite, np.isfinite(scores))  # the special tokens stay -inf
    np.testing.assert_allclose(scores[finite], torch_scores[finite], atol=TOLERANCE, rtol=0)

    # One session at a time (the service's usual batch) gives the same numbers.
    for row in range(0, len(inputs), 37):
        one = graph.predict(inputs.take(np.array([row])))
        assert abs(one[0] - probability[row]) <= TOLERANCE


def test_a_bundle_without_a_graph_derives_it_and_serves_the_same(
    trained: Trained, tmp_path: Path
) -> None:
    """A bundle written before serving.onnx existed: the graph is derived on load, and the
    service's scoring gives the same answers on ONNX Runtime as on PyTorch."""
    older = tmp_path / "older-bundle"
    shutil.copytree(champion_folder(trained), older)
    (older / ONNX_FILE).unlink()
    onnx = LoadedModel.from_bundle(older, runtime="onnx")
    torch_model = LoadedModel.from_bundle(older, runtime="torch")
    assert onnx.onnx is not None and torch_model.onnx is None
    assert not (older / ONNX_FILE).exists()  # derived in memory: the bundle is not changed

    sessions = trained.sessions
    on_onnx = score_batch(onnx, [sessions]).outcomes[0]
    on_torch = score_batch(torch_model, [sessions]).outcomes[0]
    got = np.array([o.prediction.purchase_probability for o in on_onnx])
    np.testing.assert_allclose(got, trained.offline, atol=TOLERANCE, rtol=0)
    for a, b in zip(on_onnx, on_torch, strict=True):
        assert a.prediction.purchase_probability == pytest.approx(
            b.prediction.purchase_probability, abs=TOLERANCE
        )
        assert a.prediction.next_items is not None and b.prediction.next_items is not None
        assert [i.sku for i in a.prediction.next_items] == [i.sku for i in b.prediction.next_items]
        assert a.summary == b.summary

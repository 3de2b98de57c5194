"""The serving graph (`model.onnx_intent`) of a small random ensemble and sequence model, against
PyTorch: one GRU node per member, no zero blocks, no zero-state subgraphs, the same numbers; and
the graph of a LightGBM champion, which holds the sequence model alone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from smallboat.model.fused import FusedIntent
from smallboat.model.intent import IntentConfig, predict_proba, to_tensors
from smallboat.model.next_item.sequence import NextItemConfig, NextItemModel
from smallboat.model.onnx_intent import OnnxIntent, onnx_bytes
from tests.unit.test_fused import SIZES, SMALL, random_inputs, trained_looking

TOLERANCE = 1e-5


def test_the_graph_runs_one_gru_per_member_and_equals_pytorch() -> None:
    ensemble = trained_looking(IntentConfig(**{**SMALL.to_dict(), "members": 3}), seed=17)
    torch.manual_seed(17)
    next_item = NextItemModel(NextItemConfig(sku_dim=SMALL.sku_dim, hidden=5), SIZES).eval()
    inputs = random_inputs(40, np.random.default_rng(17))

    graph = onnx_bytes(FusedIntent.from_ensemble(ensemble), next_item)

    nodes = onnx.load_from_string(graph).graph.node
    grus = [node for node in nodes if node.op_type == "GRU"]
    assert [node.attribute[0].i for node in grus if node.attribute[0].name == "hidden_size"] == [
        9,
        9,
        9,
        5,
    ], grus
    assert all(len(node.input) == 4 for node in grus), [list(n.input) for n in grus]  # no h0
    assert not [n.op_type for n in nodes if n.op_type in ("ConstantOfShape", "Shape")]
    probability, scores = OnnxIntent(graph).run(inputs)
    assert probability is not None
    np.testing.assert_allclose(probability, predict_proba(ensemble, inputs), rtol=0, atol=TOLERANCE)
    with torch.no_grad():
        expected = next_item(to_tensors(inputs)).numpy()  # (N, n_sku), -inf for special tokens
    assert scores is not None and np.array_equal(np.isfinite(scores), np.isfinite(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(scores[finite], expected[finite], rtol=0, atol=TOLERANCE)
    # One session at a time: the service's usual batch.
    for row in (0, 1, 39):
        one = OnnxIntent(graph).predict(inputs.take(np.array([row])))
        assert abs(one[0] - probability[row]) <= TOLERANCE, (row, one[0], probability[row])


def test_without_an_ensemble_the_graph_is_the_recommender_alone() -> None:
    """A LightGBM champion's graph: no intent head (its trees score outside the graph), the
    recommender's scores and top k as in a GRU champion's graph."""
    torch.manual_seed(18)
    next_item = NextItemModel(NextItemConfig(sku_dim=SMALL.sku_dim, hidden=5), SIZES).eval()
    inputs = random_inputs(30, np.random.default_rng(18))

    graph = OnnxIntent(onnx_bytes(None, next_item))

    assert not graph.has_probability and graph.has_next_item and graph.has_top_k
    probability, scores = graph.run(inputs)
    assert probability is None and scores is not None
    with torch.no_grad():
        expected = next_item(to_tensors(inputs)).numpy()
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(scores), finite)
    np.testing.assert_allclose(scores[finite], expected[finite], rtol=0, atol=TOLERANCE)
    none, tokens, values = graph.run_top_k(inputs, 4)
    assert none is None and tokens.shape == values.shape == (30, 4)
    np.testing.assert_allclose(values, -np.sort(-scores, axis=1)[:, :4], rtol=0, atol=0)
    with pytest.raises(AssertionError, match="without the intent head"):
        graph.predict(inputs)
    with pytest.raises(ValueError, match="needs the fused ensemble, the recommender or both"):
        onnx_bytes(None, None)

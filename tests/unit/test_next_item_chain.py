"""The sequence recommender's last-viewed-SKU terms (`NextItemModel` with `transition`): the last
viewed SKU is the one `recommenders.last_detail_token` names, the same-leaf term pulls towards
that SKU's leaf and never joins two SKUs of unknown leaf, the serving graph computes both terms
as PyTorch does, and a recommender saved before the terms existed loads without them."""

from __future__ import annotations

import numpy as np
import torch

from smallboat.features.spec import SKU_FIRST
from smallboat.model.fused import FusedIntent
from smallboat.model.intent import to_tensors
from smallboat.model.next_item.recommenders import DETAIL, last_detail_token
from smallboat.model.next_item.sequence import (
    NextItemConfig,
    NextItemModel,
    SequenceRecommender,
    last_viewed,
)
from smallboat.model.next_item.store import from_state, state_of
from smallboat.model.onnx_intent import OnnxIntent, onnx_bytes
from tests.unit.test_fused import SIZES, SMALL, random_inputs, trained_looking

TOLERANCE = 1e-5


def leaves_of(seed: int) -> np.ndarray:
    """Random leaf codes for SIZES' SKU tokens: 4 leaves, some SKUs of unknown leaf (-1), and the
    special tokens below SKU_FIRST unknown, as `token_leaves` gives them."""
    leaves = np.random.default_rng(seed).integers(-1, 4, size=SIZES.n_sku)
    leaves[:SKU_FIRST] = -1
    return leaves


def chain_model(seed: int, leaves: np.ndarray | None) -> NextItemModel:
    torch.manual_seed(seed)
    model = NextItemModel(NextItemConfig(sku_dim=SMALL.sku_dim, hidden=5), SIZES, leaves=leaves)
    for p in model.parameters():  # trained-looking: the chain terms start at zero otherwise
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def test_the_last_viewed_sku_is_the_last_detail_view_of_a_known_sku() -> None:
    inputs = random_inputs(300, np.random.default_rng(3))
    inputs.action[:7] = np.where(inputs.action[:7] == DETAIL, DETAIL + 1, inputs.action[:7])
    inputs.sku[7:12, -1] = 0  # a detail view of an unknown SKU last: the one before counts
    inputs.action[7:12, -1] = DETAIL
    expected = last_detail_token(inputs)
    assert (expected[:7] == 0).all() and (expected > 0).sum() > 200
    got = last_viewed(*(to_tensors(inputs)[name] for name in ("action", "sku")))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_the_same_leaf_term_pulls_towards_the_last_viewed_skus_leaf() -> None:
    leaves = leaves_of(4)
    model = chain_model(4, leaves)
    with torch.no_grad():  # the pull alone: nothing else scores
        for p in model.parameters():
            p.zero_()
        model.stay.bias.fill_(10.0)
    inputs = random_inputs(200, np.random.default_rng(4))
    last = last_detail_token(inputs)
    with torch.no_grad():
        scores = model(to_tensors(inputs)).numpy()
    for row, token in enumerate(last):
        same = (leaves == leaves[token]) & (leaves[token] >= 0)
        same[:SKU_FIRST] = False
        expected = np.where(same, 10.0, 0.0)[SKU_FIRST:]
        np.testing.assert_array_equal(scores[row, SKU_FIRST:], expected, err_msg=f"row {row}")


def test_the_serving_graph_computes_the_chain_terms_as_pytorch() -> None:
    model = chain_model(5, leaves_of(5))
    inputs = random_inputs(60, np.random.default_rng(5))
    ensemble = FusedIntent.from_ensemble(trained_looking(SMALL, seed=5))
    graph = OnnxIntent(onnx_bytes(ensemble, model))
    _, scores = graph.run(inputs)
    with torch.no_grad():
        expected = model(to_tensors(inputs)).numpy()
    finite = np.isfinite(expected)
    assert scores is not None and np.array_equal(np.isfinite(scores), finite)
    np.testing.assert_allclose(scores[finite], expected[finite], rtol=0, atol=TOLERANCE)
    for row in (0, 1, 59):  # one session at a time, as the service asks
        _, one = graph.run(inputs.take(np.array([row])))
        assert one is not None
        np.testing.assert_allclose(one[0][finite[row]], expected[row][finite[row]], atol=TOLERANCE)


def test_a_recommender_saved_before_the_chain_terms_loads_without_them() -> None:
    torch.manual_seed(6)
    old = NextItemModel(
        NextItemConfig(sku_dim=SMALL.sku_dim, hidden=5, transition=False), SIZES
    ).eval()
    state = state_of(SequenceRecommender(old))
    del state.config["model"]["transition"]  # as versions before the terms wrote it
    loaded = from_state(state)
    assert isinstance(loaded, SequenceRecommender)
    assert not loaded.model.next_config.transition and not hasattr(loaded.model, "after")
    inputs = random_inputs(20, np.random.default_rng(6))
    torch.testing.assert_close(loaded.scores(inputs), SequenceRecommender(old).scores(inputs))
    new = from_state(state_of(SequenceRecommender(chain_model(7, leaves_of(7)))))
    assert isinstance(new, SequenceRecommender) and new.model.next_config.transition
    np.testing.assert_array_equal(new.model.leaves.numpy(), leaves_of(7))  # in the state dict

"""The category-backoff Markov recommender (`model.next_item.markov`): its law computed by hand on
a small catalogue, the backoff for a SKU never seen before a transition, the popularity ranking
without a viewed SKU, the state round trip the bundle stores, and a service answering from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from smallboat.bundle import NEXT_ITEM_DIR
from smallboat.config import Settings
from smallboat.features import ModelInputs
from smallboat.features.spec import SKU_FIRST
from smallboat.model.next_item.markov import PRIOR, PRIOR_AWAY, PRIOR_STAY, REVERSE, fit_markov
from smallboat.model.next_item.recommenders import DETAIL, token_leaves, top_k
from smallboat.model.next_item.store import from_state, save_state, state_of
from smallboat.model.predictor import IntentPredictor
from smallboat.serve.app import create_app
from tests.unit.test_fused import random_inputs
from tests.unit.test_serve_api import raw, session, tiny_bundle

# Tokens 3..9: leaf 0 = {3, 4, 5}, leaf 1 = {6, 7}, 8 and 9 of unknown leaf.
LEAVES = np.array([-1, -1, -1, 0, 0, 0, 1, 1, -1, -1])
POPULARITY = np.array([0, 0, 0, 4.0, 2.0, 2.0, 6.0, 2.0, 1.0, 3.0])
PREV = np.array([3, 3, 3, 4, 3, 6, 8, 8, 0, 3])
TARGET = np.array([4, 4, 6, 3, 7, 7, 9, 3, 4, 1])  # (0 -> 4) and (3 -> 1): no known pair


def views(last: list[int]) -> ModelInputs:
    """Inputs whose last detail view is each of `last` (0: no view at all)."""
    inputs = random_inputs(len(last), np.random.default_rng(0))
    inputs.action[:] = np.where(inputs.action == DETAIL, DETAIL + 1, inputs.action)
    for row, token in enumerate(last):
        if token:
            inputs.action[row, -1], inputs.sku[row, -1] = DETAIL, token
    return inputs


def test_the_law_is_the_counts_backed_off_to_the_category() -> None:
    rec = fit_markov(PREV, TARGET, LEAVES, POPULARITY)
    # 8 known pairs, 4 inside their group (3->4 twice, 4->3, 6->7): the overall stay is 1/2.
    # From 3: inside 3->4 twice, plus 4->3 once seen in reverse: within[3, 4] = 2 + REVERSE.
    # 3 stayed twice and left twice (3->6, 3->7); leaf 0's way out, pooled: 6 and 7 once each.
    stay = (2 + PRIOR_STAY * 0.5) / (4 + PRIOR_STAY)
    total = 2 + REVERSE
    leaf_pop = {3: 4 / 8, 4: 2 / 8, 5: 2 / 8}  # leaf 0's popularity
    expected = np.zeros(10)
    for s, share in leaf_pop.items():
        expected[s] = stay * ((total if s == 4 else 0.0) + PRIOR * share) / (total + PRIOR)
    expected[6] = expected[7] = (1 - stay) * 0.5
    got = rec.probabilities(np.array([3]))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=str(got))
    assert got.sum() == pytest.approx(1.0)


def test_reverse_transitions_are_evidence_and_unknown_leaves_stand_alone() -> None:
    rec = fit_markov(PREV, TARGET, LEAVES, POPULARITY)
    from_4 = rec.probabilities(np.array([4]))[0]
    # 4 -> 3 once, and 3 -> 4 twice seen in reverse: within[4, 3] = 1 + REVERSE * 2.
    near_3 = (1 + REVERSE * 2 + PRIOR * 4 / 8) / (1 + REVERSE * 2 + PRIOR)
    stay_4 = (1 + PRIOR_STAY * 0.5) / (1 + PRIOR_STAY)
    assert from_4[3] == pytest.approx(stay_4 * near_3)
    # 4's way out is its leaf's, pooled: 3 left to 6 and to 7 once each.
    assert from_4[6] == pytest.approx((1 - stay_4) * 0.5) == pytest.approx(from_4[7])
    # 8 (unknown leaf) is a group of its own: 8 -> 9 and 8 -> 3 both leave it, half each.
    from_8 = rec.probabilities(np.array([8]))[0]
    stay_8 = (0 + PRIOR_STAY * 0.5) / (2 + PRIOR_STAY)
    assert from_8[9] == pytest.approx((1 - stay_8) * 0.5) == pytest.approx(from_8[3])
    assert from_8[8] == pytest.approx(stay_8)  # its "leaf" is itself: the prior's only SKU


def test_scores_rank_the_law_then_popularity_and_never_special_tokens() -> None:
    rec = fit_markov(PREV, TARGET, LEAVES, POPULARITY)
    inputs = views([3, 0, 9])
    scores = rec.scores(inputs)
    assert torch.isinf(scores[:, :SKU_FIRST]).all()
    tokens, values = top_k(scores, 7)
    law = rec.probabilities(np.array([3]))[0]
    given = np.flatnonzero(law > 0)  # 3, 4, 5 (its leaf) and 6, 7 (leaf 0's way out)
    assert set(tokens[0, : len(given)]) == set(given)  # 6 and 7 tie: either order
    np.testing.assert_allclose(values[0, : len(given)], -np.sort(-law[given]), rtol=1e-6)
    assert list(tokens[0, len(given) :]) == [9, 8]  # the rest by popularity
    # No viewed SKU, or one never seen leaving (9): the popularity ranking, below any law.
    assert list(tokens[1, :3]) == [6, 3, 9] and tokens[1, 6] == 8
    assert set(tokens[1, 3:6]) == {4, 5, 7}  # equally popular
    nine = rec.probabilities(np.array([9]))[0]
    assert list(tokens[2, :1]) == [9] and nine[9] > 0  # its own group's prior
    assert (values[1] < 0).all()


def test_the_state_round_trip_gives_the_same_scores() -> None:
    rng = np.random.default_rng(1)
    leaves = np.concatenate([[-1, -1, -1], rng.integers(-1, 5, 40)])
    prev = rng.integers(0, 43, 500)
    target = rng.integers(0, 43, 500)
    rec = fit_markov(prev, target, leaves, rng.uniform(0, 5, 43))
    loaded = from_state(state_of(rec))
    inputs = random_inputs(30, np.random.default_rng(2))
    inputs.sku[:] = np.where(inputs.sku > 0, inputs.sku % 43, 0)
    torch.testing.assert_close(loaded.scores(inputs), rec.scores(inputs))
    assert loaded.kind == "markov"


def test_a_skus_own_way_out_of_its_leaf_is_kept_beside_its_leafs() -> None:
    leaves = np.array([-1, -1, -1, 0, 0, 1, 1])
    prev = np.array([3] * 10 + [4] * 10)
    target = np.array([5] * 10 + [6] * 10)  # 3 goes on to 5, 4 to 6: always out of leaf 0
    rec = fit_markov(prev, target, leaves, np.ones(7))
    from_3 = rec.probabilities(np.array([3]))[0]
    stay = (0 + PRIOR_STAY * 0.0) / (10 + PRIOR_STAY)  # nothing ever stayed: the prior is 0
    own, pooled = 10 / (10 + PRIOR_AWAY), PRIOR_AWAY / (10 + PRIOR_AWAY)
    assert from_3[5] == pytest.approx((1 - stay) * (own + pooled * 0.5))
    assert from_3[6] == pytest.approx((1 - stay) * pooled * 0.5)
    assert from_3[5] > from_3[6]


def test_a_bundle_with_it_serves_its_ranking(tmp_path: Path) -> None:
    """The service answers the recommender's own top k, in-process (the NumPy path every
    recommender without a serving graph takes), with the chosen SKUs' offline scores."""
    folder = tiny_bundle(tmp_path / "b")
    predictor = IntentPredictor.load(folder)
    n = predictor.vocab.n_sku_tokens
    rng = np.random.default_rng(7)
    prev, target = rng.integers(SKU_FIRST, n, 400), rng.integers(SKU_FIRST, n, 400)
    rec = fit_markov(prev, target, token_leaves(predictor.vocab), rng.uniform(0, 9, n))
    save_state(folder / NEXT_ITEM_DIR, state_of(rec))
    offline = IntentPredictor.load(folder)
    assert offline.next_item is not None and offline.next_item.kind == "markov"
    with TestClient(create_app(Settings(home=tmp_path / "home"), bundle=folder)) as client:
        for length in (1, 4, 9):
            rows = raw(session(rng, length))
            answer = client.post("/v1/predict", json={"events": rows, "k": 5})
            assert answer.status_code == 200, answer.text
            served = [(item["sku"], item["score"]) for item in answer.json()["next_items"]]
            scores = offline.next_item.scores(offline.encode([rows]))[0].numpy()
            by_sku = {str(offline.sku_names[t]): float(scores[t]) for t in range(SKU_FIRST, n)}
            assert len(served) == 5
            for sku, score in served:  # each is the SKU's own offline score
                assert score == pytest.approx(by_sku[sku], rel=1e-6)
            best = sorted(by_sku.values(), reverse=True)[:5]  # and they are the top 5
            np.testing.assert_allclose([s for _, s in served], best, rtol=1e-6)

"""The intent model learns: loss falls, a strongly planted signal is found up to the oracle's
AUC, the signal's direction is right, and training is reproducible from its seed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from smallboat.features import COUNT_FEATURES, FeatureSpec, ModelInputs
from smallboat.features.spec import MOVE_NA, MOVE_OTHER, MOVE_SAME, N_STAGE_TOKENS
from smallboat.model.fit import train_intent_model
from smallboat.model.intent import IntentConfig, Sizes, predict_proba

L = 10
SPEC = FeatureSpec(max_events=L)
SIZES = Sizes(n_sku=12, n_category=5, n_gap=SPEC.n_gap_tokens)


def planted(n: int, seed: int) -> tuple[ModelInputs, np.ndarray, np.ndarray]:
    """Random sessions whose purchase odds rise with each same-category move and fall with each
    move to another category: P(buy) = sigmoid(1.2 * (same - other)). Returns inputs, labels and
    the true probabilities (the oracle)."""
    rng = np.random.default_rng(seed)
    move = rng.choice([MOVE_NA, MOVE_SAME, MOVE_OTHER], size=(n, L), p=[0.4, 0.3, 0.3])
    score = 1.2 * ((move == MOVE_SAME).sum(1) - (move == MOVE_OTHER).sum(1))
    truth = 1 / (1 + np.exp(-score))
    label = (rng.random(n) < truth).astype(np.int8)

    def tokens(high: int) -> np.ndarray:
        return rng.integers(1, high, size=(n, L))

    inputs = ModelInputs(
        action=tokens(5),
        sku=tokens(SIZES.n_sku),
        gap=tokens(SIZES.n_gap),
        log_gap=rng.random((n, L)).astype(np.float32),
        price=tokens(11),
        category=tokens(SIZES.n_category),
        move=move,
        stage=tokens(N_STAGE_TOKENS),
        counts=rng.integers(1, 20, size=(n, len(COUNT_FEATURES))).astype(np.float32),
        events_used=np.full(n, L),
        oov_skus=np.zeros(n, dtype=np.int64),
    )
    return inputs, label, truth


@pytest.fixture(scope="module")
def trained() -> tuple:
    train, valid, test = planted(8000, 1), planted(2000, 2), planted(3000, 3)
    config = IntentConfig(hidden=16, max_epochs=8, patience=3, lr=1e-2, seed=0, members=1)
    result = train_intent_model(config, SIZES, train[:2], valid[:2], threads=1)
    return result, test


def test_loss_falls(trained: tuple) -> None:
    result, _ = trained
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < 0.9 * losses[0], losses


def test_auc_on_a_strong_planted_signal_is_near_the_oracle(trained: tuple) -> None:
    result, (x, y, truth) = trained
    oracle_auc = roc_auc_score(y, truth)
    model_auc = roc_auc_score(y, predict_proba(result.model, x))
    assert oracle_auc > 0.8  # the signal is strong
    assert model_auc > oracle_auc - 0.02, (model_auc, oracle_auc)


def test_the_signal_points_the_right_way(trained: tuple) -> None:
    result, (x, _, _) = trained
    same = x.take(np.arange(200))
    other = x.take(np.arange(200))
    same.move = np.full_like(same.move, MOVE_SAME)
    other.move = np.full_like(other.move, MOVE_OTHER)
    assert (predict_proba(result.model, same) > predict_proba(result.model, other)).all()


def test_training_is_reproducible_from_the_seed() -> None:
    train, valid = planted(1000, 4), planted(300, 5)
    config = IntentConfig(hidden=8, max_epochs=1, seed=7, members=2)
    a = train_intent_model(config, SIZES, train[:2], valid[:2], threads=1)
    b = train_intent_model(config, SIZES, train[:2], valid[:2], threads=1)
    np.testing.assert_array_equal(
        predict_proba(a.model, valid[0]), predict_proba(b.model, valid[0])
    )


def test_an_ensemble_averages_its_members_probabilities() -> None:
    train, valid = planted(1000, 6), planted(300, 7)
    config = IntentConfig(hidden=8, max_epochs=2, seed=3, members=3)
    result = train_intent_model(config, SIZES, train[:2], valid[:2], threads=1)
    members = [predict_proba(m, valid[0]) for m in result.model.members]
    assert len(members) == 3 and not np.allclose(members[0], members[1])  # seeds differ
    ensemble = predict_proba(result.model, valid[0])
    np.testing.assert_allclose(ensemble, np.mean(members, axis=0), atol=1e-6)  # float32 math
    assert {h.member for h in result.history} == {0, 1, 2}

"""FusedIntent against the IntentEnsemble it is built from: the same probabilities, to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smallboat.features import ACTIONS, COUNT_FEATURES, ModelInputs
from smallboat.features.spec import MOVE_OTHER, N_STAGE_TOKENS, PRICE_NONE, SKU_OOV
from smallboat.model.fused import FusedIntent
from smallboat.model.intent import (
    IntentConfig,
    IntentEnsemble,
    IntentModel,
    Sizes,
    predict_proba,
    to_tensors,
)

SIZES = Sizes(n_sku=40, n_category=6, n_gap=23)
MAX_EVENTS = 20
# Every width distinct (and the hidden size odd), so a block or column put in the wrong place
# cannot line up with the right one by accident.
SMALL = IntentConfig(
    sku_dim=6, action_dim=3, gap_dim=4, price_dim=2, category_dim=5, move_dim=1, stage_dim=7,
    hidden=9,
)  # fmt: skip
TOLERANCE = 1e-6


def random_inputs(n: int, rng: np.random.Generator, sizes: Sizes = SIZES) -> ModelInputs:
    """n left-padded windows with realistic token ranges: one full window, one 1-event window,
    the rest of random lengths."""
    lengths = rng.integers(1, MAX_EVENTS + 1, size=n)
    lengths[0], lengths[min(1, n - 1)] = MAX_EVENTS, 1
    padding = np.arange(MAX_EVENTS)[None, :] < (MAX_EVENTS - lengths)[:, None]  # (N, L)

    def tokens(low: int, high: int) -> np.ndarray:  # real tokens in [low, high), 0 for padding
        return np.where(padding, 0, rng.integers(low, high, size=padding.shape)).astype(np.int64)

    log_gap = np.where(padding, 0.0, rng.uniform(0.0, 1.0, size=padding.shape))
    log_gap[np.arange(n), MAX_EVENTS - lengths] = 0.0  # a session's first event has no gap
    sku = tokens(1, sizes.n_sku)
    extra = rng.integers(0, 30, size=(n, len(COUNT_FEATURES)))  # events before the window
    counts = extra + lengths[:, None]  # whole-prefix counts: at least the window's events
    counts[:, -1] = rng.uniform(0, 1800, size=n)  # duration_s
    return ModelInputs(
        action=tokens(1, len(ACTIONS) + 1),
        sku=sku,
        gap=tokens(1, sizes.n_gap),
        log_gap=log_gap.astype(np.float32),
        price=tokens(1, PRICE_NONE + 11),
        category=tokens(1, sizes.n_category),
        move=tokens(1, MOVE_OTHER + 1),
        stage=tokens(1, N_STAGE_TOKENS),
        counts=counts.astype(np.float32),
        events_used=lengths,
        oov_skus=(sku == SKU_OOV).sum(axis=1),
    )


def trained_looking(config: IntentConfig, seed: int) -> IntentEnsemble:
    """An ensemble whose members really differ: independently drawn, then scaled up by a
    different factor each (padding rows stay zero), so their probabilities vary between sessions
    and disagree between members the way trained members' do."""
    torch.manual_seed(seed)
    ensemble = IntentEnsemble(config, SIZES)
    with torch.no_grad():
        for k, member in enumerate(ensemble.members):
            for weight in member.parameters():
                weight.mul_(1.5 + 0.25 * k)
    return ensemble.eval()


@pytest.mark.parametrize("members", [1, 3, 5])
def test_fused_equals_ensemble(members: int) -> None:
    torch.manual_seed(members)
    ensemble = IntentEnsemble(IntentConfig(**{**SMALL.to_dict(), "members": members}), SIZES)
    inputs = random_inputs(32, np.random.default_rng(members))

    fused = FusedIntent.from_ensemble(ensemble)
    got = fused.predict(inputs)

    assert got.dtype == np.float64 and got.shape == (32,), (got.dtype, got.shape)
    np.testing.assert_allclose(got, predict_proba(ensemble, inputs), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("config", [SMALL, IntentConfig()], ids=["small", "default"])
def test_fused_equals_ensemble_whose_members_differ(config: IntentConfig) -> None:
    ensemble = trained_looking(config, seed=7)
    inputs = random_inputs(64, np.random.default_rng(7))
    each = np.stack([predict_proba(member, inputs) for member in ensemble.members])  # (M, N)
    # The test means something only if the members disagree and their mean varies by session.
    assert np.ptp(each, axis=0).mean() > 0.3, each
    expected = predict_proba(ensemble, inputs)
    assert expected.std() > 0.02, expected

    got = FusedIntent.from_ensemble(ensemble).predict(inputs)

    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("members", [1, 3, 5])
def test_members_apart_give_the_ensembles_probabilities(members: int) -> None:
    """`forward(batch, members_apart())`, one GRU per member (the ONNX graph's layout)."""
    ensemble = trained_looking(IntentConfig(**{**SMALL.to_dict(), "members": members}), seed=13)
    fused = FusedIntent.from_ensemble(ensemble)
    inputs = random_inputs(32, np.random.default_rng(13))
    apart = fused.members_apart()
    # Each member's GRU is its own size again: no zero block left.
    shapes = [tuple(w.shape) for w in apart[-1][1]]
    assert shapes == [(27, 29), (27, 9), (27,), (27,)], shapes  # 3 gates x 9; 28 dims + log_gap

    with torch.no_grad():
        got = fused(to_tensors(inputs), apart).numpy()

    np.testing.assert_allclose(got, predict_proba(ensemble, inputs), rtol=0, atol=TOLERANCE)


def test_forward_gives_float32_probabilities_of_the_batch() -> None:
    ensemble = trained_looking(SMALL, seed=3)
    fused = FusedIntent.from_ensemble(ensemble)
    inputs = random_inputs(5, np.random.default_rng(3))
    batch = {name: torch.from_numpy(array) for name, array in inputs.to_arrays().items()}

    with torch.no_grad():
        prob = fused(batch)

    assert prob.dtype == torch.float32 and prob.shape == (5,), (prob.dtype, prob.shape)
    np.testing.assert_allclose(prob.numpy(), fused.predict(inputs), rtol=0, atol=0)


def test_batch_equals_one_by_one() -> None:
    ensemble = trained_looking(IntentConfig(), seed=11)
    fused = FusedIntent.from_ensemble(ensemble)
    inputs = random_inputs(16, np.random.default_rng(11))

    batched = fused.predict(inputs)
    alone = np.array([fused.predict(inputs.take(np.array([i])))[0] for i in range(len(inputs))])

    np.testing.assert_allclose(batched, alone, rtol=0, atol=TOLERANCE)


def test_fused_leaves_the_ensemble_as_it_was() -> None:
    ensemble = trained_looking(SMALL, seed=5)
    before = {key: value.clone() for key, value in ensemble.state_dict().items()}

    FusedIntent.from_ensemble(ensemble)

    after = ensemble.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_from_ensemble_rejects_a_single_model() -> None:
    with pytest.raises(TypeError, match="needs an IntentEnsemble, got IntentModel"):
        FusedIntent.from_ensemble(IntentModel(SMALL, SIZES))  # type: ignore[arg-type]


def test_from_ensemble_rejects_members_of_different_sizes() -> None:
    wide = IntentModel(IntentConfig(**{**SMALL.to_dict(), "hidden": 10}), SIZES)
    ensemble = IntentEnsemble.of([IntentModel(SMALL, SIZES), wide])

    with pytest.raises(ValueError, match=r"ensemble member 1 differs in shape from member 0 at"):
        FusedIntent.from_ensemble(ensemble)

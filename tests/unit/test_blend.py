"""The blend's weight search (`model.blend.fit_blend`) and the join's use of it (`pick_best`): the
weight and space come from validation, the blend is chosen only when it beats both members."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from smallboat.errors import SmallboatError
from smallboat.model.blend import BlendConfig, combine, fit_blend
from smallboat.pipeline.sweep import BLEND_NAME, Branch, check_blend, pick_best


def two_views(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels from two independent signals; each 'model' sees one of them (plus noise), so the
    average ranks better than either alone. Returns (p_a, p_b, labels)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * a + 1.5 * b)))).astype(np.int8)

    def seen(z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(z + 0.3 * rng.normal(size=n))))

    return seen(a), seen(b), y


def test_two_complementary_models_blend_to_a_better_ranking_than_either() -> None:
    p_a, p_b, y = two_views(4_000, seed=1)
    fit = fit_blend(p_a, p_b, y)
    assert fit.beats_both
    assert 0.3 <= fit.weight <= 0.7, fit  # the signals are symmetric
    assert fit.gru_valid_auc == pytest.approx(roc_auc_score(y, p_a))
    assert fit.gbm_valid_auc == pytest.approx(roc_auc_score(y, p_b))
    blended = combine(p_a, p_b, weight=fit.weight, space=fit.space)
    assert fit.valid_auc == pytest.approx(roc_auc_score(y, blended))
    assert fit.valid_auc > max(fit.gru_valid_auc, fit.gbm_valid_auc) + 0.03
    # the weight chosen on one sample generalises to a fresh one
    q_a, q_b, z = two_views(4_000, seed=2)
    fresh = roc_auc_score(z, combine(q_a, q_b, weight=fit.weight, space=fit.space))
    assert fresh > max(roc_auc_score(z, q_a), roc_auc_score(z, q_b)) + 0.03


def test_a_member_that_adds_nothing_is_not_blended() -> None:
    p_a, _, y = two_views(2_000, seed=3)
    constant = np.full(len(y), 0.2)  # every weight below 1 ranks exactly as p_a alone
    fit = fit_blend(p_a, constant, y)
    assert not fit.beats_both
    assert fit.valid_auc == pytest.approx(fit.gru_valid_auc)


@pytest.mark.parametrize("space", ["probability", "logit"])
def test_the_end_weights_are_the_members_themselves(space: str) -> None:
    p_a, p_b, _ = two_views(100, seed=4)
    np.testing.assert_allclose(combine(p_a, p_b, weight=1.0, space=space), p_a, atol=1e-12)
    np.testing.assert_allclose(combine(p_a, p_b, weight=0.0, space=space), p_b, atol=1e-12)
    mid = combine(p_a, p_b, weight=0.5, space=space)
    assert ((mid >= np.minimum(p_a, p_b) - 1e-12) & (mid <= np.maximum(p_a, p_b) + 1e-12)).all()


def test_the_logit_average_is_the_geometric_mean_of_the_odds() -> None:
    got = combine(np.array([0.9]), np.array([0.5]), weight=0.5, space="logit")
    odds = np.sqrt(9.0 * 1.0)
    assert got[0] == pytest.approx(odds / (1 + odds))
    assert combine(np.array([0.9]), np.array([0.5]), weight=0.5, space="probability")[0] == 0.7


@pytest.mark.parametrize(
    ("p_a", "p_b", "y", "message"),
    [
        ([0.1, 0.2], [0.1], [0, 1], "2 GRU and 1 LightGBM predictions for 2 validation labels"),
        ([0.1, 0.2], [0.3, 0.1], [1, 1], "one class only"),
    ],
)
def test_bad_inputs_to_the_search_say_what_is_wrong(
    p_a: list[float], p_b: list[float], y: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_blend(np.array(p_a), np.array(p_b), np.array(y))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"weight": 1.5}, "blend weight must be in [0, 1], got 1.5"), ({"space": "rank"}, "space")],
)
def test_a_blend_config_out_of_range_is_refused(changes: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "weight": 0.5,
        "space": "logit",
        "gru_name": "g",
        "gbm_name": "t",
        "gru": {},
        "gbm": {},
    }
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BlendConfig.from_dict({**base, **changes})


def member(name: str, kind: str, valid: np.ndarray, auc: float) -> Branch:
    return Branch(
        name=name,
        config={"kind": kind} if kind == "lightgbm" else {"hidden": 8},
        weights=name.encode(),
        summary={"best_valid_auc": auc, "members": 1.0, "train_seconds": 1.0},
        history=[],
        valid_predictions=valid,
    )


def sweep_of(seed: int) -> tuple[list[Branch], np.ndarray]:
    p_a, p_b, y = two_views(3_000, seed=seed)
    noisy = 0.3 * p_a + 0.7 * np.random.default_rng(seed).random(len(y))  # a weaker GRU
    branches = [
        member("gru-good", "gru", p_a, roc_auc_score(y, p_a)),
        member("gru-noisy", "gru", noisy, roc_auc_score(y, noisy)),
        member("trees", "lightgbm", p_b, roc_auc_score(y, p_b)),
    ]
    return branches, y


def test_the_join_blends_the_best_gru_with_the_best_trees_when_that_validates_better() -> None:
    branches, y = sweep_of(seed=5)
    best, sweep = pick_best(branches, valid_labels=y)
    assert best.name == BLEND_NAME
    config = BlendConfig.from_dict(best.config)
    assert (config.gru_name, config.gbm_name) == ("gru-good", "trees")
    assert config.gru == {"hidden": 8} and config.gbm == {"kind": "lightgbm"}
    assert best.summary["blend_weight"] == config.weight and 0.0 < config.weight < 1.0
    assert best.summary["best_valid_auc"] > max(b.summary["best_valid_auc"] for b in branches)
    assert [e["name"] for e in sweep] == ["gru-good", "gru-noisy", "trees", BLEND_NAME]
    assert [e["name"] for e in sweep if e["chosen"]] == [BLEND_NAME]
    # the blend's weights are both members' own artifacts
    with np.load(io.BytesIO(best.weights)) as packed:
        assert packed["gru"].tobytes() == b"gru-good" and packed["gbm"].tobytes() == b"trees"


def test_never_leaves_the_blend_out_and_always_forces_it() -> None:
    branches, y = sweep_of(seed=6)
    best, sweep = pick_best(branches, valid_labels=y, blend="never")
    assert best.name == "gru-good" and BLEND_NAME not in [e["name"] for e in sweep]
    # 'always' takes the blend even where a single model validates as well (the weight may be 1)
    same = [branches[0], member("trees", "lightgbm", np.full(len(y), 0.3), 0.5)]
    forced, _ = pick_best(same, valid_labels=y, blend="always")
    assert forced.name == BLEND_NAME
    auto, auto_sweep = pick_best(same, valid_labels=y)
    assert auto.name == "gru-good"  # the blend adds nothing: it is shown, not chosen
    assert [e["chosen"] for e in auto_sweep if e["name"] == BLEND_NAME] == [False]


def test_without_both_kinds_there_is_no_blend() -> None:
    branches, y = sweep_of(seed=7)
    best, sweep = pick_best(branches[:2], valid_labels=y)
    assert best.name == "gru-good" and len(sweep) == 2


@pytest.mark.parametrize(
    ("mode", "kinds", "message"),
    [
        ("sometimes", ["gru", "lightgbm"], "--blend 'sometimes' is not one of auto, always, never"),
        ("always", ["lightgbm"], "--blend always needs a GRU and a 'lightgbm' entry"),
        ("auto", ["gru", "blend"], "the name 'blend' is the join's blend; rename that entry"),
    ],
)
def test_bad_blend_modes_are_refused_at_the_start(
    mode: str, kinds: list[str], message: str
) -> None:
    entries = [{"name": k, "kind": k} if k == "lightgbm" else {"name": k} for k in kinds]
    with pytest.raises(SmallboatError, match=message.replace("(", r"\(")):
        check_blend(mode, entries)
    check_blend("never", entries)


def test_one_class_validation_labels_leave_the_blend_out() -> None:
    branches, y = sweep_of(seed=8)
    best, sweep = pick_best(branches, valid_labels=np.zeros_like(y))
    assert best.name == "gru-good" and BLEND_NAME not in [e["name"] for e in sweep]

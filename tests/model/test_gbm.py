"""The LightGBM intent candidate learns a planted signal through the tabular features, and is
reproducible: the same data and seed give the same booster, and it survives its round trips (the
flow's artifact bytes, the bundle's files) without changing a prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from smallboat.model.gbm import GbmConfig, GbmIntent, train_gbm
from tests.model.test_learning import SIZES, planted

VECTORS = np.random.default_rng(3).normal(size=(SIZES.n_sku, 4))
CONFIG = GbmConfig(max_rounds=300, patience=30, seed=7)


@pytest.fixture(scope="module")
def fitted() -> tuple[GbmIntent, float, np.ndarray]:
    train, valid = planted(3_000, seed=1), planted(1_000, seed=2)
    result = train_gbm(CONFIG, train[:2], valid[:2], sku_vectors=VECTORS, threads=2)
    assert 1 <= result.best_rounds <= CONFIG.max_rounds
    return result.model, result.best_valid_auc, valid[2]


def test_the_planted_signal_is_found_close_to_the_oracle(
    fitted: tuple[GbmIntent, float, np.ndarray],
) -> None:
    model, valid_auc, _ = fitted
    x, y, truth = planted(2_000, seed=4)
    oracle = roc_auc_score(y, truth)
    got = roc_auc_score(y, model.predict(x))
    assert got > oracle - 0.02, (got, oracle)
    assert valid_auc > 0.75


def test_training_is_reproducible_from_the_seed(
    fitted: tuple[GbmIntent, float, np.ndarray],
) -> None:
    model, _, _ = fitted
    train, valid = planted(3_000, seed=1), planted(1_000, seed=2)
    again = train_gbm(CONFIG, train[:2], valid[:2], sku_vectors=VECTORS, threads=1).model
    # the trees are identical whatever the thread count (the text's parameter section names it)
    assert again.model_text().split("parameters:")[0] == model.model_text().split("parameters:")[0]
    x, _, _ = planted(500, seed=5)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_round_trips_predict_the_same(
    fitted: tuple[GbmIntent, float, np.ndarray], tmp_path: Path
) -> None:
    model, _, _ = fitted
    x, _, _ = planted(500, seed=5)
    expected = model.predict(x)
    assert expected.dtype == np.float64 and ((expected > 0) & (expected < 1)).all()
    from_bytes = GbmIntent.from_bytes(CONFIG, model.to_bytes())
    np.testing.assert_array_equal(from_bytes.predict(x), expected)
    model.save(tmp_path / "gbm")
    loaded = GbmIntent.load(CONFIG, tmp_path / "gbm")
    np.testing.assert_array_equal(loaded.predict(x), expected)
    np.testing.assert_array_equal(loaded.sku_vectors, model.sku_vectors)
    assert len(model.predict(x.take(np.zeros(0, dtype=np.int64)))) == 0


def test_a_model_trained_on_fewer_tabular_columns_predicts_from_exactly_those() -> None:
    """A bundle from before the funnel columns were added keeps serving what it was trained on."""
    import lightgbm

    from smallboat.features.funnel import FUNNEL_FEATURES
    from smallboat.features.tabular import TABULAR_FEATURES, tabular_features

    (x, y, _), (xv, yv, _) = planted(2_000, seed=1), planted(500, seed=2)
    older = [n for n in TABULAR_FEATURES if n not in FUNNEL_FEATURES][::-1]  # any order
    columns = [TABULAR_FEATURES.index(n) for n in older]
    rows, rows_valid = tabular_features(x, VECTORS), tabular_features(xv, VECTORS)
    train_set = lightgbm.Dataset(rows[:, columns], label=y, feature_name=older)
    booster = lightgbm.train(CONFIG.params(1), train_set, num_boost_round=50)
    model = GbmIntent(CONFIG, booster, VECTORS)
    expected = booster.predict(rows_valid[:, columns], num_threads=1)
    np.testing.assert_array_equal(model.predict(xv), expected)
    assert roc_auc_score(yv, expected) > 0.7  # a real model, not a constant
    renamed = lightgbm.Dataset(rows[:, columns], label=y, feature_name=["what", *older[1:]])
    stranger = lightgbm.train(CONFIG.params(1), renamed, num_boost_round=5)
    with pytest.raises(ValueError, match=r"feature\(s\) \['what'\] that features.tabular does not"):
        GbmIntent(CONFIG, stranger, VECTORS)

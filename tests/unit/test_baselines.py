"""The baselines on planted data: counts carry signal the majority class cannot see."""

from __future__ import annotations

import numpy as np
import pytest

from smallboat.errors import SmallboatError
from smallboat.metrics.intent import binary_metrics
from smallboat.metrics.uncertainty import paired_difference
from smallboat.model.baselines import fit_count_baseline, fit_majority_baseline

NAMES = ("n_detail", "n_add", "n_remove", "n_pageview")


def planted_counts(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count features where more adds and fewer removes mean a purchase; pageviews are noise."""
    rng = np.random.default_rng(seed)
    x = rng.poisson([3.0, 1.5, 0.5, 4.0], size=(n, 4)).astype(float)  # (N, 4)
    logit = -2.0 + 1.2 * x[:, 1] - 1.5 * x[:, 2]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    k = rng.choice([0, 2, 4, 6, 8, 10], n)
    return x, y, k


def test_majority_predicts_the_train_rate_and_scores_the_majority_share() -> None:
    # Train: 3 positives of 10 -> rate 0.3, thresholded: always 0 (the majority class).
    majority = fit_majority_baseline(np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]))
    assert majority.positive_rate == pytest.approx(0.3)
    test_y = np.array([0, 0, 0, 0, 1, 1, 0, 0])  # 6 of 8 negative
    prob = majority.predict_proba(np.zeros((8, 4)))
    assert prob.tolist() == [0.3] * 8
    m = binary_metrics(prob, test_y)
    # accuracy = share of the train majority class (0) in the test labels = 6/8
    assert m["accuracy"] == 0.75
    # A constant ranks nothing: every (positive, negative) pair is a tie -> AUC 0.5.
    assert m["roc_auc"] == 0.5


def test_count_baseline_beats_majority_on_a_planted_signal() -> None:
    x, y, _ = planted_counts(4_000, seed=0)
    xt, yt, kt = planted_counts(2_000, seed=1)
    counts = fit_count_baseline(x, y, seed=0, feature_names=NAMES)
    majority = fit_majority_baseline(y)
    p_counts, p_major = counts.predict_proba(xt), majority.predict_proba(xt)
    assert p_counts.shape == (2_000,) and ((p_counts >= 0) & (p_counts <= 1)).all()
    m_counts, m_major = binary_metrics(p_counts, yt), binary_metrics(p_major, yt)
    assert m_counts["roc_auc"] > 0.8, m_counts
    assert m_counts["accuracy"] > m_major["accuracy"] + 0.03, (m_counts, m_major)
    assert m_counts["log_loss"] < m_major["log_loss"]
    gap = paired_difference(p_counts, p_major, yt, kt, n_bootstrap=200, seed=0)
    assert gap["challenge_score"]["low"] > 0, gap["challenge_score"]
    # The coefficient table reads the planted signs; pageviews and details carry ~nothing.
    table = counts.coefficients()
    by_name = {row["feature"]: row["coef"] for row in table}
    assert by_name["n_add"] > 0.5 and by_name["n_remove"] < -0.3
    assert {table[0]["feature"], table[1]["feature"]} == {"n_add", "n_remove"}
    assert abs(by_name["n_pageview"]) < 0.15 and abs(by_name["n_detail"]) < 0.15
    assert table[-1]["feature"] == "(intercept)"


def test_count_baseline_is_reproducible_and_names_default() -> None:
    x, y, _ = planted_counts(500, seed=2)
    a, b = fit_count_baseline(x, y, seed=3), fit_count_baseline(x, y, seed=3)
    assert np.array_equal(a.predict_proba(x), b.predict_proba(x))
    assert a.feature_names == ("f0", "f1", "f2", "f3")
    assert a.predict_proba(np.zeros((0, 4))).shape == (0,)


@pytest.mark.parametrize(
    ("x", "y", "names", "message"),
    [
        (np.ones((4, 2)), [0, 1, 0, 1], ("a",), "1 feature names for 2 columns"),
        (np.ones((4, 2)), [0, 1, 0], None, "4 feature rows but 3 labels"),
        (np.ones((4, 2)), [0, 0, 0, 0], None, "one class only \\(0 positives of 4\\)"),
        (np.ones((4, 2)), [0, 1, 0, 2], None, "label\\[3\\] = 2 is not 0 or 1"),
        (np.ones(4), [0, 1, 0, 1], None, "must be an \\(N, F\\) matrix, got shape \\(4,\\)"),
        (np.array([[1.0, np.nan], [0, 0]]), [0, 1], None, "features\\[0, 1\\] = nan is not finite"),
    ],
)
def test_count_baseline_rejects_bad_input(
    x: np.ndarray, y: list[int], names: tuple[str, ...] | None, message: str
) -> None:
    with pytest.raises(SmallboatError, match=message):
        fit_count_baseline(x, np.array(y), seed=0, feature_names=names)


def test_count_baseline_rejects_a_different_feature_width() -> None:
    x, y, _ = planted_counts(200, seed=4)
    counts = fit_count_baseline(x, y, seed=0)
    with pytest.raises(
        SmallboatError, match="features have 3 columns but the baseline was fit on 4"
    ):
        counts.predict_proba(x[:, :3])

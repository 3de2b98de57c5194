"""The intent metrics against values worked out by hand on tiny arrays, and their uncertainty."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from smallboat.data.synth.generate import challenge_score as synth_challenge_score
from smallboat.errors import SmallboatError
from smallboat.metrics.intent import (
    LOG_LOSS_EPS,
    binary_metrics,
    calibration,
    challenge_breakdown,
    challenge_score,
    curves,
    flat_metrics,
    intent_report,
)
from smallboat.metrics.uncertainty import (
    _Ranked,
    bootstrap_intervals,
    delong_auc_difference,
    paired_difference,
)

# Six examples over three of the six prediction points (2 each):
#   k0:  p 0.9, 0.7 -> predict 1, 1; labels 1, 1 -> 2/2 correct; accuracy 1.0 x weight 1.0 = 1.0
#   k2:  p 0.6, 0.4 -> predict 1, 0; labels 0, 0 -> 1/2 correct; accuracy 0.5 x weight 0.9 = 0.45
#   k10: p 0.5, 0.1 -> predict 1, 0 (0.5 counts as 1); labels 1, 1 -> 1/2; 0.5 x 0.5 = 0.25
# score = 1.0 + 0.45 + 0.25 = 1.7; present weights 1.0 + 0.9 + 0.5 = 2.4; normalised 1.7 / 2.4
SIX_P = np.array([0.9, 0.7, 0.6, 0.4, 0.5, 0.1])
SIX_Y = np.array([1, 1, 0, 0, 1, 1])
SIX_K = np.array([0, 0, 2, 2, 10, 10])


def test_challenge_score_by_hand() -> None:
    assert challenge_score(SIX_P, SIX_Y, SIX_K) == pytest.approx(1.7)
    b = challenge_breakdown(SIX_P, SIX_Y, SIX_K)
    assert b["score"] == pytest.approx(1.7)
    assert b["max_attainable"] == pytest.approx(2.4)
    assert b["normalised"] == pytest.approx(1.7 / 2.4)
    assert b["max"] == 4.5
    assert b["buckets"]["k0"] == {"n": 2, "weight": 1.0, "accuracy": 1.0, "weighted": 1.0}
    assert b["buckets"]["k2"]["weighted"] == pytest.approx(0.45)
    assert b["buckets"]["k10"]["accuracy"] == 0.5
    # Empty points contribute nothing and are not counted in max_attainable.
    for k in ("k4", "k6", "k8"):
        assert b["buckets"][k] == {
            "n": 0,
            "weight": b["buckets"][k]["weight"],
            "accuracy": None,
            "weighted": None,
        }
    # synth re-exports the same function (one definition).
    assert synth_challenge_score(SIX_P, SIX_Y, SIX_K) == pytest.approx(1.7)


def test_challenge_score_perfect_and_inverted_over_all_points() -> None:
    k = np.repeat([0, 2, 4, 6, 8, 10], 3)
    y = np.tile([1, 0, 1], 6)
    # Every prediction right: 1.0 + 0.9 + 0.8 + 0.7 + 0.6 + 0.5 = 4.5; every one wrong: 0.
    assert challenge_score(y.astype(float), y, k) == pytest.approx(4.5)
    assert challenge_score(1.0 - y, y, k) == 0.0
    # Majority (always 1 here, 2/3 positive): 2/3 of 4.5 = 3.0.
    assert challenge_score(np.ones(len(y)), y, k) == pytest.approx(3.0)


def test_binary_metrics_by_hand_with_ties() -> None:
    p, y = np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 0, 1, 1])
    m = binary_metrics(p, y)
    # AUC over (positive, negative) pairs: (0.4, 0.1) 1, (0.4, 0.4) tie 0.5, (0.8, 0.1) 1,
    # (0.8, 0.4) 1 -> 3.5 / 4 = 0.875.
    assert m["roc_auc"] == pytest.approx(0.875)
    # Average precision: at 0.8, TP 1 FP 0 -> P 1, R 0.5; at 0.4, TP 2 FP 1 -> P 2/3, R 1.
    # AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    assert m["pr_auc"] == pytest.approx(5 / 6)
    # Predictions at 0.5: 0, 0, 0, 1 vs 0, 0, 1, 1 -> 3/4.
    assert m["accuracy"] == 0.75
    # Log-loss: -(ln 0.9 + ln 0.6 + ln 0.4 + ln 0.8) / 4 = (0.10536 + 0.51083 + 0.91629
    # + 0.22314) / 4 = 0.43891.
    assert m["log_loss"] == pytest.approx(0.438906, abs=1e-6)
    # Brier: (0.01 + 0.16 + 0.36 + 0.04) / 4 = 0.1425.
    assert m["brier"] == pytest.approx(0.1425)
    assert (m["n"], m["positives"], m["positive_rate"]) == (4, 2, 0.5)
    assert m["mean_prob"] == pytest.approx(0.425)
    assert m["undefined"] == {}


def test_log_loss_clips_confident_misses() -> None:
    # Both wrong with certainty: each costs -ln(1e-7) = 16.118, not infinity.
    m = binary_metrics(np.array([1.0, 0.0]), np.array([0, 1]))
    assert m["log_loss"] == pytest.approx(-math.log(LOG_LOSS_EPS))
    assert m["log_loss"] == pytest.approx(16.118, abs=1e-3)


@pytest.mark.parametrize("cls", [0, 1])
def test_single_class_is_undefined_not_an_error(cls: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn UndefinedMetricWarning either
        m = binary_metrics(np.array([0.2, 0.7, 0.9]), np.full(3, cls))
        c = curves(np.array([0.2, 0.7]), np.full(2, cls))
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert "only one class among 3 examples" in m["undefined"]["roc_auc"]
    assert m["accuracy"] == pytest.approx(1 / 3 if cls == 0 else 2 / 3)
    assert c["roc"] == {"fpr": [], "tpr": []} and "need both classes" in c["undefined"]


def test_no_examples_is_undefined() -> None:
    m = binary_metrics(np.array([]), np.array([]))
    assert m["n"] == 0 and m["accuracy"] is None and m["undefined"]["log_loss"] == "no examples"


def test_calibration_and_ece_by_hand() -> None:
    p = np.array([0.05, 0.15, 0.15, 0.85, 0.95, 1.0])
    y = np.array([0, 0, 1, 1, 1, 1])
    c = calibration(p, y)
    # bin 0 [0, .1): {.05}, observed 0 -> |.05 - 0| = .05, n 1
    # bin 1 [.1, .2): {.15, .15}, observed .5 -> |.15 - .5| = .35, n 2
    # bin 8 [.8, .9): {.85}, observed 1 -> .15, n 1
    # bin 9 [.9, 1.]: {.95, 1.0} (1.0 falls in the last bin), mean .975, observed 1 -> .025, n 2
    # ECE = (1 * .05 + 2 * .35 + 1 * .15 + 2 * .025) / 6 = .95 / 6
    assert c["ece"] == pytest.approx(0.95 / 6)
    assert [b["n"] for b in c["bins"]] == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]
    assert c["bins"][1] == {
        "lower": 0.1,
        "upper": 0.2,
        "n": 2,
        "mean_predicted": 0.15,
        "observed_rate": 0.5,
    }
    assert c["bins"][9]["mean_predicted"] == pytest.approx(0.975)
    assert c["bins"][3]["mean_predicted"] is None and c["bins"][3]["observed_rate"] is None
    # Two bins: [0, .5) holds .05, .15, .15 (mean .35 / 3 = .11667, observed 1/3); [.5, 1]
    # holds .85, .95, 1.0 (mean 2.8 / 3 = .93333, observed 1).
    # ECE = (3 * |.11667 - .33333| + 3 * |.93333 - 1|) / 6 = (.65 + .2) / 6
    assert calibration(p, y, n_bins=2)["ece"] == pytest.approx(0.85 / 6)


def test_curves_are_thinned_and_keep_their_ends() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5_000)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 5_000), 0, 1)
    c = curves(p, y, max_points=50)
    fpr, tpr = c["roc"]["fpr"], c["roc"]["tpr"]
    assert 2 <= len(fpr) <= 50 and len(fpr) == len(tpr)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # Trapezoids under the thinned curve stay close to the exact AUC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, p), abs=0.01)
    assert len(c["pr"]["recall"]) <= 50 and c["pr"]["recall"][0] == 1.0


def test_weighted_auc_matches_sklearn_with_ties_and_repeats() -> None:
    rng = np.random.default_rng(1)
    p = rng.integers(0, 8, 300) / 8  # many ties
    y = (rng.uniform(size=300) < 0.2 + 0.6 * p).astype(float)
    w = rng.integers(0, 4, (3, 300)).astype(float)  # three weightings = repeat counts
    got = _Ranked(p, y).auc(w)
    for i in range(3):
        assert got[i] == pytest.approx(
            roc_auc_score(np.repeat(y, w[i].astype(int)), np.repeat(p, w[i].astype(int)))
        )


def planted(n: int, seed: int, strength: float = 2.0) -> tuple[np.ndarray, ...]:
    """Examples with a true probability from a logistic signal, spread over the six points."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    truth = 1 / (1 + np.exp(-(strength * signal - 0.5)))
    y = (rng.uniform(size=n) < truth).astype(int)
    k = rng.choice([0, 2, 4, 6, 8, 10], n)
    return truth, y, k, signal


def test_bootstrap_contains_the_estimate_and_shrinks_with_n() -> None:
    widths = {}
    for n in (300, 3_000):
        p, y, k, _ = planted(n, seed=n)
        b = bootstrap_intervals(p, y, k, n_bootstrap=400, seed=0)
        for name in ("roc_auc", "challenge_score"):
            assert b[name]["low"] < b[name]["estimate"] < b[name]["high"], (n, name, b[name])
            assert b[name]["n_valid"] == 400
        assert b["roc_auc"]["estimate"] == pytest.approx(roc_auc_score(y, p))
        assert b["challenge_score"]["estimate"] == pytest.approx(challenge_score(p, y, k))
        widths[n] = {
            name: b[name]["high"] - b[name]["low"] for name in ("roc_auc", "challenge_score")
        }
    # 10x the examples: about sqrt(10) = 3.2x narrower; ask for at least 2x.
    for name in ("roc_auc", "challenge_score"):
        assert widths[3_000][name] < widths[300][name] / 2, widths
    # Seeded: the same seed gives the same interval.
    p, y, k, _ = planted(300, seed=300)
    assert bootstrap_intervals(p, y, k, n_bootstrap=50, seed=3) == bootstrap_intervals(
        p, y, k, n_bootstrap=50, seed=3
    )


def test_group_bootstrap_widens_for_duplicated_sessions() -> None:
    # Each session contributes 5 identical rows: resampling rows pretends there are 5x the
    # independent examples, resampling sessions does not (about sqrt(5) = 2.2x wider).
    p, y, k, _ = planted(400, seed=5)
    p, y, k = (np.repeat(a, 5) for a in (p, y, k))
    session = np.repeat(np.arange(400), 5)
    rows = bootstrap_intervals(p, y, k, n_bootstrap=300, seed=0)
    sessions = bootstrap_intervals(p, y, k, groups=session.astype(str), n_bootstrap=300, seed=0)
    assert sessions["unit"] == "group" and rows["unit"] == "row"
    w_rows = rows["roc_auc"]["high"] - rows["roc_auc"]["low"]
    w_sessions = sessions["roc_auc"]["high"] - sessions["roc_auc"]["low"]
    assert 1.6 * w_rows < w_sessions < 3.0 * w_rows, (w_rows, w_sessions)


def test_paired_difference_separates_a_better_model_from_an_equal_one() -> None:
    truth, y, k, signal = planted(2_000, seed=11)
    rng = np.random.default_rng(12)
    weak = 1 / (1 + np.exp(-(0.4 * signal + rng.normal(size=len(y)) - 0.5)))
    better = paired_difference(truth, weak, y, k, n_bootstrap=400, seed=0)
    for name in ("roc_auc", "challenge_score"):
        assert better[name]["low"] > 0, (name, better[name])
        assert better[name]["p_a_better"] == 1.0
        assert better[name]["diff"] == pytest.approx(better[name]["a"] - better[name]["b"])
    same = paired_difference(truth, truth, y, k, n_bootstrap=100, seed=0)
    assert same["roc_auc"]["low"] == same["roc_auc"]["high"] == 0.0


def test_paired_difference_covers_a_zero_difference_about_95_percent_of_the_time() -> None:
    # Two different models of equal skill (the same noisy view of the signal, independent
    # noise): the true difference is 0, so a 95% interval should miss 0 in ~5% of 40 samples
    # (2 expected; 7 or more has probability 0.004 when the coverage is right).
    misses = {"roc_auc": 0, "challenge_score": 0}
    for rep in range(40):
        _, y, k, signal = planted(400, seed=100 + rep)
        rng = np.random.default_rng(rep)
        a, b = (1 / (1 + np.exp(-(2 * signal + rng.normal(size=len(y)) - 0.5))) for _ in range(2))
        tie = paired_difference(a, b, y, k, n_bootstrap=200, seed=rep)
        for name in misses:
            misses[name] += not tie[name]["low"] < 0 < tie[name]["high"]
    assert max(misses.values()) <= 6, misses


def test_delong_agrees_with_the_paired_bootstrap() -> None:
    truth, y, k, signal = planted(2_000, seed=21)
    rng = np.random.default_rng(22)
    weak = 1 / (1 + np.exp(-(0.8 * signal + rng.normal(size=len(y)))))
    d = delong_auc_difference(truth, weak, y)
    assert d["auc_a"] == pytest.approx(roc_auc_score(y, truth))
    assert d["auc_b"] == pytest.approx(roc_auc_score(y, weak))
    assert d["low"] > 0 and d["p_value"] < 1e-3
    boot = paired_difference(truth, weak, y, k, n_bootstrap=500, seed=0)["roc_auc"]
    # The bootstrap's 95% interval spans about 2 x 1.96 DeLong standard errors.
    assert (boot["high"] - boot["low"]) / (2 * 1.96 * d["se"]) == pytest.approx(1.0, abs=0.2)
    same = delong_auc_difference(truth, truth, y)
    assert (same["diff"], same["se"], same["p_value"]) == (0.0, 0.0, 1.0)
    assert same["low"] <= 0 <= same["high"]
    assert delong_auc_difference(truth[:5], weak[:5], np.array([1, 0, 0, 0, 0]))["diff"] is None


def test_intent_report_is_json_and_flattens_for_mlflow() -> None:
    p, y, k, _ = planted(600, seed=31)
    k[k == 10] = 8  # no examples at the last point
    groups = np.arange(600) // 3
    report = intent_report(p, y, k, groups=groups, n_bootstrap=100, seed=0)
    text = json.dumps(report, allow_nan=False)  # strict JSON: no NaN, no numpy types
    assert json.loads(text) == report
    assert report["challenge"]["score"] == pytest.approx(challenge_score(p, y, k))
    assert report["challenge"]["max_attainable"] == pytest.approx(4.0)  # 4.5 - 0.5 for k10
    assert report["by_bucket"]["k10"]["n"] == 0 and report["by_bucket"]["k10"]["roc_auc"] is None
    assert report["overall"]["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    flat = flat_metrics(report, prefix="test_")
    assert flat["test_challenge_score"] == report["challenge"]["score"]
    assert flat["test_roc_auc"] == report["overall"]["roc_auc"]
    assert flat["test_acc_k0"] == report["by_bucket"]["k0"]["accuracy"]
    assert flat["test_roc_auc_ci_low"] < flat["test_roc_auc"] < flat["test_roc_auc_ci_high"]
    assert flat["test_n_k10"] == 0 and "test_acc_k10" not in flat  # undefined -> left out
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat.values())
    assert intent_report(p, y, k, n_bootstrap=0)["bootstrap"] is None


def test_empty_input_reports_without_error() -> None:
    report = intent_report(np.array([]), np.array([]), np.array([], dtype=int), n_bootstrap=10)
    json.dumps(report, allow_nan=False)
    assert report["challenge"]["normalised"] is None and report["overall"]["roc_auc"] is None
    assert report["bootstrap"]["roc_auc"]["low"] is None


@pytest.mark.parametrize(
    ("prob", "label", "k", "message"),
    [
        ([0.5, 0.5], [1], [0, 0], "prob has 2 values but label has 1"),
        ([0.5, 1.2], [1, 0], [0, 0], "prob[1] = 1.2 is not a probability"),
        ([0.5, float("nan")], [1, 0], [0, 0], "prob[1] = nan is not a probability"),
        ([0.5, 0.5], [1, 2], [0, 0], "label[1] = 2.0 is not 0 or 1"),
        ([0.5, 0.5], [1, 0], [0, 3], "k holds [3], which are not prediction points"),
        ([0.5, 0.5], [1, 0], [0], "k has 1 values but there are 2 examples"),
    ],
)
def test_bad_input_names_the_problem(prob: list, label: list, k: list, message: str) -> None:
    with pytest.raises(SmallboatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        challenge_score(np.array(prob), np.array(label), np.array(k))

"""The champion/challenger gate's rule, its record, and its paired test, on cases worked by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from smallboat.metrics.uncertainty import delong_auc_difference
from smallboat.registry import GateDecision, RegistryError, gate_promotes, paired_auc_test
from smallboat.registry.gate import _check_test

LABEL = np.array([1, 1, 0, 0])


def test_a_perfect_ranking_beats_a_reversed_one_with_certainty() -> None:
    # Challenger ranks both positives above both negatives (AUC 1), the champion the reverse
    # (AUC 0): every per-example DeLong component differs by the same 1, so the standard error
    # is 0 and the one-sided p-value is 0.
    test = paired_auc_test([0.9, 0.8, 0.2, 0.1], [0.1, 0.2, 0.8, 0.9], LABEL)
    assert (test["challenger_roc_auc"], test["champion_roc_auc"]) == (1.0, 0.0)
    assert test["diff"] == 1.0 and test["se"] == 0.0
    assert test["p_value"] == 0.0 and test["undefined"] is None
    # The same two models the other way round: no evidence at all that the challenger is better.
    assert paired_auc_test([0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1], LABEL)["p_value"] == 1.0
    # Two identical models: the difference is 0 and so is its spread: never "better".
    same = paired_auc_test([0.9, 0.2, 0.8, 0.1], [0.9, 0.2, 0.8, 0.1], LABEL)
    assert (same["diff"], same["p_value"]) == (0.0, 1.0)


def test_the_p_value_is_delongs_made_one_sided() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 400)
    signal = label + rng.normal(0, 1.0, 400)

    def squash(x: np.ndarray) -> np.ndarray:  # scores as probabilities
        return 1 / (1 + np.exp(-x))

    a = squash(signal + rng.normal(0, 0.3, 400))
    b = squash(signal + rng.normal(0, 0.6, 400))
    two_sided = delong_auc_difference(a, b, label)
    forward, backward = paired_auc_test(a, b, label), paired_auc_test(b, a, label)
    assert forward["diff"] == pytest.approx(two_sided["diff"]) and forward["diff"] > 0
    # One-sided in the direction of the observed difference: half the two-sided p.
    assert forward["p_value"] == pytest.approx(two_sided["p_value"] / 2)
    assert forward["p_value"] + backward["p_value"] == pytest.approx(1.0)


def test_undefined_and_single_model_cases() -> None:
    undefined = paired_auc_test([0.9, 0.1, 0.2], [0.5, 0.4, 0.3], [1, 0, 0])
    assert undefined["p_value"] is None and "1 positives" in undefined["undefined"]
    alone = paired_auc_test([0.9, 0.8, 0.2, 0.1], None, LABEL)
    assert alone["challenger_roc_auc"] == 1.0
    assert alone["champion_roc_auc"] is None and alone["p_value"] is None


@pytest.mark.parametrize(
    ("challenger", "champion", "p_value", "invalid", "promoted"),
    [
        (0.80, 0.78, 0.01, None, True),  # better and significant
        (0.80, 0.78, 0.20, None, False),  # better, but within noise
        (0.80, 0.78, None, None, False),  # test undefined: no evidence, keep
        (0.78, 0.80, 0.001, None, False),  # "significant" but worse (a mis-signed p): keep
        (0.70, None, None, "vocabulary", True),  # invalid champion: replaced without a test
    ],
)
def test_the_rule(
    challenger: float,
    champion: float | None,
    p_value: float | None,
    invalid: str | None,
    promoted: bool,
) -> None:
    assert (
        gate_promotes(
            challenger_score=challenger,
            champion_score=champion,
            has_champion=True,
            p_value=p_value,
            alpha=0.05,
            champion_invalid=invalid,
        )
        is promoted
    )


def test_without_a_level_the_rule_is_the_plain_comparison() -> None:
    common: dict[str, Any] = {"champion_score": 0.78, "has_champion": True}
    assert gate_promotes(challenger_score=0.781, **common)
    assert not gate_promotes(challenger_score=0.781, min_improvement=0.01, **common)
    assert gate_promotes(challenger_score=0.5, champion_score=None, has_champion=False)


def decision(**overrides: object) -> GateDecision:
    values: dict = {
        "model_name": "intent",
        "version": 3,
        "promoted": False,
        "metric": "roc_auc",
        "challenger_score": 0.81,
        "champion_score": 0.8,
        "previous_version": 2,
        "min_improvement": 0.0,
        "p_value": 0.2,
        "alpha": 0.05,
        "test": "DeLong one-sided",
    }
    return GateDecision(**(values | overrides))


def test_the_summary_and_tags_carry_both_scores_and_the_p_value() -> None:
    kept = decision()
    assert kept.summary == (
        "kept intent v2 as champion: v3's roc_auc 0.8100 is above v2's 0.8000 by more than 0, "
        "but not significantly (DeLong one-sided p = 0.2 >= alpha 0.05)"
    )
    tags = kept.tags()
    assert tags["gate.p_value"] == "0.2" and tags["gate.alpha"] == "0.05"
    assert tags["gate.champion"] == "0.8" and tags["gate.challenger"] == "0.81"
    assert tags["gate.champion_invalid"] == "none" and tags["gate.decision"] == "rejected"
    promoted = decision(promoted=True, p_value=0.004)
    assert promoted.summary == (
        "promoted intent v3 to champion: roc_auc 0.8100 is above v2's 0.8000 by more than 0 "
        "(DeLong one-sided p = 0.004 < alpha 0.05)"
    )
    worse = decision(challenger_score=0.79, p_value=0.9)
    assert worse.summary.startswith("kept intent v2 as champion: v3's roc_auc 0.7900 is not above")
    invalid = decision(
        promoted=True, champion_score=None, p_value=None, champion_invalid="bundle format 0"
    )
    assert invalid.summary == (
        "promoted intent v3 to champion (roc_auc 0.8100): champion v2 is invalid: bundle format 0"
    )
    assert invalid.tags()["gate.champion_invalid"] == "bundle format 0"


@pytest.mark.parametrize(
    ("p_value", "alpha", "message"),
    [
        (0.1, None, "without the level alpha"),
        (1.5, 0.05, "p_value must be in"),
        (None, 0.0, "alpha must be in"),
        (None, 1.0, "alpha must be in"),
    ],
)
def test_nonsense_levels_are_refused(
    p_value: float | None, alpha: float | None, message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        _check_test(p_value, alpha)


def test_a_champion_without_a_score_or_a_reason_is_refused() -> None:
    with pytest.raises(RegistryError, match="needs the champion's score"):
        gate_promotes(challenger_score=0.8, champion_score=None, has_champion=True, alpha=0.05)

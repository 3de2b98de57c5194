"""The gate's evidence, gathered before the card: the current champion scored on THIS run's test
examples (its own bundle, vocabulary and spec), DeLong's paired test of the two ROC-AUCs, and
whether the champion is still valid at all.

TrainFlow's `evaluate` step calls `challenge_champion`, so the card shows the comparison and the
decision it implies; the `register` step hands the same numbers to `registry.publish`, which
applies the rule (`registry.records.gate_promotes`) and refuses if the champion changed meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from smallboat.bundle import MODEL_NAME
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.features import tokenize, windows
from smallboat.features.spec import SKU_OOV
from smallboat.model.prepare import IntentData
from smallboat.registry import champion, download_bundle, gate_promotes, paired_auc_test

log = logging.getLogger(__name__)

# Loading or running a bundle written for another schema fails with one of these; a store that
# cannot be reached (RegistryError) is NOT the champion's fault and stops the run instead.
_UNFIT = (SmallboatError, KeyError, TypeError, ValueError, RuntimeError)


def check_gate(*, alpha: float, max_oov: float) -> None:
    """The gate's level and its champion-vocabulary limit (TrainFlow's start step checks them)."""
    if not 0 < alpha < 1:
        raise SmallboatError(f"--gate-alpha must be in (0, 1), got {alpha}")
    if not 0 < max_oov <= 1:
        raise SmallboatError(f"--gate-max-oov must be in (0, 1], got {max_oov}")


def challenge_champion(
    settings: Settings,
    data: IntentData,
    challenger_prob: np.ndarray,
    *,
    alpha: float,
    max_oov: float,
    min_improvement: float,
) -> dict[str, Any]:
    """The champion against this run's model on the same test examples.

    Keys: champion_version (None: no champion), champion_invalid (why it cannot be compared, or
    None), champion_oov_share, the paired test's fields (test, challenger_roc_auc,
    champion_roc_auc, diff, se, p_value one-sided, undefined), alpha, min_improvement, max_oov and
    `promotes`, the decision the gate will take on these numbers.
    """
    from smallboat.model.predictor import IntentPredictor  # torch: only the evaluate step

    check_gate(alpha=alpha, max_oov=max_oov)
    assert data.test_events is not None and data.test_examples is not None
    test = data.test_examples
    out: dict[str, Any] = {
        "champion_version": None,
        "champion_invalid": None,
        "champion_oov_share": None,
        "alpha": alpha,
        "min_improvement": min_improvement,
        "max_oov": max_oov,
    }
    current = champion(settings, model_name=MODEL_NAME)
    champion_prob = None
    if current is not None:
        out["champion_version"] = current.version
        folder = download_bundle(settings, model_name=MODEL_NAME, version=current.version)
        try:
            predictor = IntentPredictor.load(folder)
            tokens = tokenize(data.test_events, predictor.vocab, predictor.spec)
            inputs = windows(tokens, test.session, test.prefix_length, predictor.spec)
            champion_prob = predictor.predict_inputs(inputs)
        except _UNFIT as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            out["champion_invalid"] = f"its bundle does not fit this run's data ({first})"
        else:
            sku_events = int((inputs.sku >= SKU_OOV).sum())
            oov = float(inputs.oov_skus.sum() / sku_events) if sku_events else 0.0
            out["champion_oov_share"] = oov
            if oov > max_oov:
                out["champion_invalid"] = (
                    f"its vocabulary does not know {100 * oov:.1f}% of the test set's SKU events "
                    f"(more than --gate-max-oov {max_oov:g})"
                )
        if out["champion_invalid"] is not None:
            log.warning("champion v%s is invalid: %s", current.version, out["champion_invalid"])
    test_fields = paired_auc_test(challenger_prob, champion_prob, test.label)
    if champion_prob is None or out["champion_invalid"] is not None:
        test_fields.update(champion_roc_auc=None, diff=None, se=None, p_value=None)
    out.update(test_fields)
    out["promotes"] = gate_promotes(
        challenger_score=out["challenger_roc_auc"],
        champion_score=out["champion_roc_auc"],
        has_champion=current is not None,
        min_improvement=min_improvement,
        p_value=out["p_value"],
        alpha=alpha,
        champion_invalid=out["champion_invalid"],
    )
    return out

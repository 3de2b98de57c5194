"""Evaluate a trained intent model on the test split beside the baselines and, on synthetic data,
the oracle (TrainFlow's `evaluate` step, and the champion/challenger gate's re-scoring)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smallboat.errors import DataError
from smallboat.features import COUNT_FEATURES, EventTable, tokenize, windows
from smallboat.metrics.intent import intent_report
from smallboat.metrics.uncertainty import paired_difference
from smallboat.model.baselines import fit_count_baseline, fit_majority_baseline
from smallboat.model.predictor import IntentPredictor
from smallboat.model.prepare import ExampleSet, IntentData
from smallboat.schema import ORACLE_FILE

log = logging.getLogger(__name__)


def read_oracle(path: Path, examples: ExampleSet) -> np.ndarray:
    """The generator's true P(purchase | prefix) for each example (NaN where the file has none)."""
    file = path / ORACLE_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"no oracle file at {file}: pass the folder `smallboat data synth` wrote")
    oracle = pd.read_parquet(file, columns=["session_id_hash", "k", "p_purchase"])
    keys = pd.DataFrame({"session_id_hash": examples.session_id, "k": examples.k.astype(np.int64)})
    oracle["k"] = oracle["k"].astype(np.int64)
    merged = keys.merge(oracle, on=["session_id_hash", "k"], how="left", validate="one_to_one")
    return merged["p_purchase"].to_numpy(dtype=np.float64)


def evaluate_intent(
    model_prob: np.ndarray,
    data: IntentData,
    *,
    oracle_path: Path | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Reports for the model, the baselines and the oracle on the same test examples.

    Returns {"test": {name: intent_report}, "model_vs_count": paired difference, "oracle_gap":
    oracle minus model (None unless the oracle covers every test example: a partial oracle is
    dropped with a warning, since a gap on a subset would not compare like with like),
    "oracle_coverage", "count_coefficients"}.
    Bootstrap intervals resample whole sessions (a session gives up to six correlated examples).
    """
    test = data.splits["test"]
    label, k, groups = test.label, test.k, test.session_id
    x_train, y_train = data.inputs("train")
    x_test, _ = data.inputs("test")
    count = fit_count_baseline(
        x_train.counts, y_train, seed=seed, feature_names=list(COUNT_FEATURES)
    )
    probs = {
        "model": model_prob,
        "count_baseline": count.predict_proba(x_test.counts),
        "majority": fit_majority_baseline(y_train).predict_proba(x_test.counts),
    }
    oracle_gap: dict[str, Any] | None = None
    oracle_coverage = None
    if oracle_path is not None:
        oracle = read_oracle(oracle_path, test)
        covered = ~np.isnan(oracle)
        oracle_coverage = float(covered.mean()) if len(oracle) else 0.0
        if covered.all():
            probs["oracle"] = oracle
        elif covered.any():
            log.warning("the oracle covers %.1f%% of test examples", 100 * oracle_coverage)
    reports = {
        name: intent_report(
            prob,
            label,
            k,
            groups=groups,
            n_bootstrap=n_bootstrap if name != "majority" else 0,
            seed=seed,
        )
        for name, prob in probs.items()
    }
    if "oracle" in reports:
        m, o = reports["model"], reports["oracle"]
        oracle_gap = {
            "roc_auc": o["overall"]["roc_auc"] - m["overall"]["roc_auc"],
            "challenge": o["challenge"]["score"] - m["challenge"]["score"],
            "challenge_relative": (o["challenge"]["score"] - m["challenge"]["score"])
            / o["challenge"]["score"],
        }
    return {
        "test": reports,
        "model_vs_count": paired_difference(
            model_prob,
            probs["count_baseline"],
            label,
            k,
            groups=groups,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        if n_bootstrap
        else None,
        "oracle_gap": oracle_gap,
        "oracle_coverage": oracle_coverage,
        "count_coefficients": count.coefficients(),
    }


def reference_table(
    predictor: IntentPredictor,
    events: EventTable,
    examples: ExampleSet,
    probability: np.ndarray,
) -> pd.DataFrame:
    """The monitoring reference of a bundle: per test example its summary (the same function the
    service logs with), prediction point k, label and the model's probability."""
    from smallboat.features.summary import summarize

    tokens = tokenize(events, predictor.vocab, predictor.spec)
    inputs = windows(tokens, examples.session, examples.prefix_length, predictor.spec)
    frame = pd.DataFrame(summarize(inputs, predictor.vocab))
    frame["events_after_add"] = examples.k.astype(np.int32)
    frame["label"] = examples.label.astype(np.int8)
    frame["probability"] = np.asarray(probability, dtype=np.float64)
    frame["session_id_hash"] = examples.session_id
    return frame


def predict_examples(
    predictor: IntentPredictor, events: EventTable, examples: ExampleSet
) -> np.ndarray:
    """A bundle's predictions for examples given as collapsed events: it tokenises with ITS OWN
    vocabulary and spec, so models fit on different data are compared on the same test set."""
    tokens = tokenize(events, predictor.vocab, predictor.spec)
    inputs = windows(tokens, examples.session, examples.prefix_length, predictor.spec)
    return predictor.predict_inputs(inputs)

"""TrainFlow end to end through Metaflow's Runner: real dbt, DuckDB, PyTorch, MLflow, cards.

One synthetic dataset; its home holds a first run (becomes champion) and a deliberately worse
challenger that fails at `evaluate` and is resumed: the resumed run is gated (must not be
promoted), so one challenger run checks both resume and the gate.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smallboat import registry
from smallboat.bundle import MODEL_NAME
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.model.predictor import IntentPredictor
from smallboat.pipeline.runner import TrainOutcome, run_train, use_metaflow_env
from smallboat.schema import ORACLE_FILE
from tests.synthetic_home import synthetic_home

pytestmark = pytest.mark.slow

GRID = json.dumps(
    [
        # ~1,700 training examples: small batches, so each epoch takes ~25 optimiser steps
        {"name": "small", "hidden": 16, "batch_size": 64, "max_epochs": 12, "members": 2},
        {"name": "wider", "hidden": 32, "batch_size": 64, "max_epochs": 12, "members": 1},
    ]
)
NEXT_ITEM = json.dumps({"max_epochs": 4})  # the sequence recommender, kept short here
WORSE = json.dumps([{"name": "untrained", "lr": 1e-9, "max_epochs": 1, "hidden": 8, "members": 1}])
# The worse challenger's tests check the intent model's gate and the resume, not its
# recommender: one epoch of the sequence model is enough for its recommend step to run.
WORSE_NEXT_ITEM = json.dumps({"max_epochs": 1})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    with synthetic_home(tmp_path_factory.mktemp("trainflow"), sessions=12_000, seed=11) as home:
        use_metaflow_env(home[0])
        yield home


@pytest.fixture(scope="module")
def first(home: tuple[Settings, Path]) -> TrainOutcome:
    settings, data = home
    return run_train(
        settings,
        max_workers=2,
        show_output=False,
        grid=GRID,
        oracle=str(data),
        bootstrap=50,
        threads=1,
        next_item=NEXT_ITEM,
    )


def test_first_run_trains_evaluates_and_becomes_champion(
    home: tuple[Settings, Path], first: TrainOutcome
) -> None:
    settings, _ = home
    from metaflow import Run, namespace

    namespace(None)
    run = Run(first.pathspec)
    assert run.successful
    # transform ran the dbt build and kept its test results
    quality = task(run, "transform").data.quality
    assert quality["invocation"]["success"] is True
    assert any(n["resource_type"] == "test" for n in quality["nodes"])
    # prepare: three time-ordered splits, vocabulary fit on train
    counts = task(run, "prepare").data.row_counts
    assert set(counts) == {"train", "valid", "test"}
    assert counts["train"]["examples"] > counts["test"]["examples"] > 50
    # the foreach trained both grid entries; join picked the best validation AUC
    sweep = task(run, "join").data.sweep
    assert sorted(e["name"] for e in sweep) == ["small", "wider"]
    chosen = [e for e in sweep if e["chosen"]]
    assert len(chosen) == 1
    assert chosen[0]["best_valid_auc"] == max(e["best_valid_auc"] for e in sweep)
    # evaluate: model, both baselines and the oracle on the same test examples
    report = task(run, "evaluate").data.report
    assert set(report["test"]) == {"model", "count_baseline", "majority", "oracle"}
    n = {name: r["n"] for name, r in report["test"].items()}
    assert len(set(n.values())) == 1, n
    s = first.summary
    assert s is not None
    assert 0.7 < s["roc_auc"] <= 1.0, s["roc_auc"]  # it learned (the oracle is near 0.9)
    assert s["majority_roc_auc"] == 0.5  # one constant prediction ranks nothing
    assert s["oracle_roc_auc"] > s["count_baseline_roc_auc"]
    assert 0.0 < s["challenge_score"] <= 4.5
    assert s["oracle_gap_roc_auc"] == pytest.approx(s["oracle_roc_auc"] - s["roc_auc"])
    # recommend: four next-item recommenders on the same test examples; the sequence model,
    # chosen by validation MRR@20, beats popularity and goes into the bundle
    next_item = task(run, "recommend").data.recommendation.report
    names = {"popularity", "popularity_category", "knn", "markov", "sequence"}
    assert set(next_item["test"]) == names
    assert s["next_item_sequence_mrr_at_20"] > s["next_item_popularity_mrr_at_20"]
    assert s["next_item_mrr_at_20"] == s[f"next_item_{next_item['chosen']}_mrr_at_20"]
    # register: the first model becomes champion
    reg = first.registration
    assert reg is not None and reg["decision"] == "promoted" and reg["version"] == 1
    champ = registry.champion(settings, model_name=MODEL_NAME)
    assert champ is not None and champ.version == 1


def task(run: Any, step: str) -> Any:
    """The (single) task of a step of a finished run."""
    found = run[step].task
    assert found is not None, f"{run.pathspec} has no task for step {step}"
    return found


def card_payload(html: str) -> dict:
    """The components a Metaflow card embeds (base64 JSON in the page's script)."""
    match = re.search(r'window.__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', html)
    assert match, "no card data in the page"
    return json.loads(base64.b64decode(match.group(1)))


def test_the_card_shows_what_a_reader_needs(first: TrainOutcome) -> None:
    assert first.card_path is not None
    html = Path(first.card_path).read_text()
    payload = card_payload(html)
    text = json.dumps(payload)
    for needle in (
        "Challenge",
        "count baseline",
        "oracle",
        "ROC curve",
        "Rows per split",
        "The sweep",
        "dbt build at",
        "Next item",
        "by session length",
        "popularity percentile",
        "The champion/challenger gate",
        "No champion yet",
        "The learning curve (synthetic data",
    ):
        assert needle in text, needle
    types = re.findall(r'"type": "(\w+)"', text)
    assert types.count("vegaChart") == 3  # per-bucket accuracy, ROC, calibration
    assert "dag" in types and "table" in types
    s = first.summary
    assert s is not None
    assert f"{s['roc_auc']:.4f}" in text  # the card shows the run's own numbers


def test_the_bundle_predicts_what_the_flow_evaluated(first: TrainOutcome) -> None:
    from metaflow import Run, namespace

    namespace(None)
    run = Run(first.pathspec)
    data = task(run, "prepare").data.data
    report = task(run, "evaluate").data.report
    assert first.registration is not None
    predictor = IntentPredictor.load(Path(first.registration["bundle_dir"]))
    from smallboat.model.evaluate import predict_examples

    prob = predict_examples(predictor, data.test_events, data.test_examples)
    np.testing.assert_allclose(prob, report["test_predictions"], atol=1e-6)


@dataclass(frozen=True)
class Resumed:
    """A worse challenger's run that failed at `evaluate`, then resumed to its end (registered
    and gated: one run serves both the resume test and the worse-challenger test)."""

    failure: str  # the failed run's one-line error
    origin_run_id: str  # the failed run, as the error names it
    outcome: TrainOutcome  # the resumed run


@pytest.fixture(scope="module")
def resumed(
    home: tuple[Settings, Path], first: TrainOutcome, tmp_path_factory: pytest.TempPathFactory
) -> Resumed:
    settings, data = home
    oracle = tmp_path_factory.mktemp("resume") / "late" / ORACLE_FILE  # missing: evaluate fails
    with pytest.raises(SmallboatError, match="TrainFlow failed") as failure:
        run_train(
            settings,
            show_output=False,
            grid=WORSE,
            oracle=str(oracle),
            bootstrap=0,
            skip_transform=True,
            threads=1,
            next_item=WORSE_NEXT_ITEM,
        )
    message = str(failure.value)
    run_id = message.split("resume with `smallboat train --resume ")[1].split("`")[0]
    oracle.parent.mkdir(parents=True)
    shutil.copy(data / ORACLE_FILE, oracle)

    from smallboat.pipeline.runner import resume_train

    return Resumed(message, run_id, resume_train(settings, origin_run_id=run_id, show_output=False))


def test_a_worse_challenger_is_not_promoted(
    home: tuple[Settings, Path], first: TrainOutcome, resumed: Resumed
) -> None:
    settings, _ = home
    worse = resumed.outcome  # the untrained grid entry, gated once its run finished
    reg = worse.registration
    assert reg is not None
    assert reg["decision"] == "rejected", reg["summary"]
    assert reg["version"] == 2 and reg["champion_version"] == 1
    assert reg["champion_score"] > reg["challenger_score"]
    # DeLong's one-sided test finds no evidence that the untrained model is better.
    assert reg["alpha"] == 0.05 and reg["champion_invalid"] is None
    assert reg["p_value"] is not None and reg["p_value"] > 0.5, reg["summary"]
    assert f"p = {reg['p_value']:.3g} >= alpha 0.05" in reg["summary"]
    champ = registry.champion(settings, model_name=MODEL_NAME)
    assert champ is not None and champ.version == 1
    versions = {v.version: v for v in registry.model_versions(settings, model_name=MODEL_NAME)}
    assert versions[2].gate_decision == "rejected"
    assert versions[2].champion_score == pytest.approx(reg["champion_score"])
    assert versions[2].p_value == reg["p_value"]


def test_resume_reruns_only_from_the_failed_step(resumed: Resumed) -> None:
    assert "no oracle file" in resumed.failure
    run_id = resumed.origin_run_id
    outcome = resumed.outcome
    assert outcome.successful and outcome.run_id != run_id
    from metaflow import Run, namespace

    namespace(None)
    run = Run(outcome.pathspec)
    prepare = task(run, "prepare")
    evaluate = task(run, "evaluate")
    assert prepare.metadata_dict.get("origin-run-id") == run_id
    assert prepare.metadata_dict.get("origin-task-id")  # cloned from the failed run, not re-run
    assert evaluate.metadata_dict.get("origin-task-id") is None  # re-run
    assert "oracle_roc_auc" in (outcome.summary or {})

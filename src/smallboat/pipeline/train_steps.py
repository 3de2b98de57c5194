"""The bodies of TrainFlow's steps, as plain functions (the flow file stays a thin DAG).

Each takes and returns plain values or artifacts, so it can be called and tested without Metaflow.
The card and the register step (bundle, MLflow, the gate) are in `pipeline.publish`. Imports of
torch and of the model's modules stay inside the functions: Metaflow imports this module in every
step's task, and most steps need none of them.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.model.prepare import DataWindow, IntentData
from smallboat.pipeline.sweep import Branch, check_blend, load_model, pick_best

__all__ = ["Branch", "check_blend", "load_model", "pick_best"]  # the flow and publish use them

log = logging.getLogger(__name__)


def check_parameters(
    *, grid: str, window_start: str, window_end: str
) -> tuple[list[dict[str, Any]], DataWindow]:
    """Parse the sweep grid (a JSON list of IntentConfig overrides) and the data window."""
    from smallboat.model.gbm import KIND as GBM_KIND
    from smallboat.model.gbm import GbmConfig
    from smallboat.model.intent import IntentConfig

    try:
        entries = json.loads(grid)
    except json.JSONDecodeError as exc:
        raise SmallboatError(f"--grid is not JSON: {exc}") from None
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        raise SmallboatError("--grid must be a non-empty JSON list of objects")
    from pydantic import TypeAdapter, ValidationError

    # prod2vec is fitted once, before the sweep, at the default width: a branch cannot change it.
    gru_known = {f.name for f in fields(IntentConfig)} - {"sku_dim"}
    gbm_known = GbmConfig.field_names() - {"seed"}
    named = []
    for i, entry in enumerate(entries):
        kind = entry.get("kind", "gru")
        if kind not in ("gru", GBM_KIND):
            raise SmallboatError(
                f"--grid entry {i}: kind {kind!r} is not one of 'gru' (default), '{GBM_KIND}'"
            )
        known = gbm_known if kind == GBM_KIND else gru_known
        adapter: TypeAdapter[Any] = TypeAdapter(GbmConfig if kind == GBM_KIND else IntentConfig)
        unknown = sorted(set(entry) - known - {"name", "kind"})
        if unknown:
            raise SmallboatError(
                f"--grid entry {i}: unknown or fixed field(s) {unknown}; "
                f"a {kind} grid entry may set {sorted(known)}"
            )
        overrides = {k: v for k, v in entry.items() if k not in ("name", "kind")}
        try:  # types and ranges, here rather than deep inside a training branch
            checked = adapter.validate_python(overrides, strict=False)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise SmallboatError(f"--grid entry {i}: {where}: {problem['msg']}") from None
        except ValueError as exc:
            raise SmallboatError(f"--grid entry {i}: {exc}") from None
        values = {k: getattr(checked, k) for k in overrides}  # "32" -> 32, as validated
        if kind == GBM_KIND:
            values["kind"] = GBM_KIND
        named.append({**values, "name": str(entry.get("name", f"config{i}"))})
    names = [e["name"] for e in named]
    if len(set(names)) != len(names):
        raise SmallboatError(f"--grid names must be unique, got {names}")
    return named, DataWindow.parse(window_start or None, window_end or None)


def transform(*, skip: bool, dbt_vars: str) -> dict[str, Any]:
    """dbt build (the quality gate) or, when skipped, the recorded results of the build the live
    warehouse holds (not a later failed or interrupted attempt: the data is the live build's)."""
    from smallboat.warehouse.transform import run_transform

    s = Settings()
    if skip:
        from smallboat.warehouse.db import live_build

        live = live_build(s) if s.warehouse_path.exists() else None
        if live is not None:
            return dict(live["record"])
        latest = s.quality_dir / "latest.json"  # a warehouse built before builds were recorded
        return json.loads(latest.read_text()) if latest.is_file() else {}
    try:
        variables = json.loads(dbt_vars)
    except json.JSONDecodeError as exc:
        raise SmallboatError(f"--dbt-vars is not JSON: {exc}") from None
    return run_transform(s, vars=variables).to_dict()


def prepare(*, max_events: int, window: DataWindow) -> IntentData:
    """The intent examples read from the warehouse into compact tokenised arrays."""
    from smallboat.features import FeatureSpec
    from smallboat.model.prepare import prepare_intent_data

    return prepare_intent_data(Settings(), FeatureSpec(max_events=max_events), window=window)


def fit_sku_vectors(
    data: IntentData, *, window: DataWindow, seed: int
) -> tuple[np.ndarray, dict[str, float]]:
    from smallboat.model.intent import IntentConfig
    from smallboat.model.prepare import train_sku_sequences
    from smallboat.model.prod2vec import Prod2VecConfig, fit_prod2vec

    sequences = train_sku_sequences(Settings(), window=window)
    config = Prod2VecConfig(dim=IntentConfig().sku_dim, seed=seed)
    result = fit_prod2vec(sequences, data.vocab, config)
    stats = {
        "n_sequences": float(result.n_sequences),
        "coverage": result.coverage,
        "seconds": result.seconds,
    }
    return result.vectors, stats


def next_item_config(overrides: str, *, seed: int) -> Any:
    """The sequence recommender's NextItemConfig from a JSON object of overrides (checked here, at
    the start of the run, rather than after the intent sweep)."""
    from smallboat.model.next_item.sequence import NextItemConfig

    try:
        values = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise SmallboatError(f"--next-item is not JSON: {exc}") from None
    if not isinstance(values, dict):
        raise SmallboatError("--next-item must be a JSON object of NextItemConfig fields")
    known = {f.name for f in fields(NextItemConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SmallboatError(f"--next-item: unknown field(s) {unknown}; it may set {sorted(known)}")
    try:
        return NextItemConfig(**{"seed": seed, **values})
    except (TypeError, ValueError) as exc:
        raise SmallboatError(f"--next-item: {exc}") from None


def fit_next_item(
    data: IntentData,
    sku_vectors: np.ndarray,
    *,
    window: DataWindow,
    config: Any,
    threads: int,
    oracle: str = "",
    choose: str = "auto",
) -> Any:
    """Next-item examples from the warehouse (tokenised with the intent vocabulary), every
    recommender fitted and compared, the best by validation kept unless `choose` names one;
    returns a NextItemResult (report + chosen recommender).
    With `oracle` (the synthetic data folder) the report also holds the ceiling on test."""
    from smallboat.model.next_item.data import prepare_next_item_data
    from smallboat.model.next_item.evaluate import fit_and_compare

    examples = prepare_next_item_data(Settings(), data.vocab, data.spec, window=window)

    def progress(entry: dict[str, float]) -> None:  # the step's output: one line per epoch
        print(
            f"next-item sequence model epoch {int(entry['epoch'])}: train loss "
            f"{entry['train_loss']:.4f}, valid MRR@20 {entry['valid_mrr']:.4f}, "
            f"{entry['seconds']:.1f} s",
            flush=True,
        )

    return fit_and_compare(
        examples,
        sku_vectors,
        config=config,
        threads=threads,
        choose=choose,
        on_epoch=progress,
        oracle=Path(oracle) if oracle else None,
    )


def train_branch(
    entry: dict[str, Any], data: IntentData, sku_vectors: np.ndarray, *, seed: int, threads: int
) -> Branch:
    import dataclasses

    import torch

    from smallboat.model.fit import EpochLog, train_intent_model
    from smallboat.model.gbm import KIND as GBM_KIND
    from smallboat.model.intent import IntentConfig, Sizes, predict_proba

    if entry.get("kind") == GBM_KIND:
        return _train_gbm_branch(entry, data, sku_vectors, seed=seed, threads=threads)
    overrides = {k: v for k, v in entry.items() if k != "name"}
    config = IntentConfig(**{"seed": seed, **overrides})
    x_train, y_train = data.inputs("train")

    def progress(e: EpochLog) -> None:  # the step's output: one line per epoch
        print(
            f"{entry['name']} member {e.member}/{config.members} epoch {e.epoch}: "
            f"train loss {e.train_loss:.4f}, valid AUC {e.valid_auc:.4f}, "
            f"{e.seconds:.1f} s with validation",
            flush=True,
        )

    result = train_intent_model(
        config,
        Sizes.of(data.vocab, data.spec),
        (x_train, y_train),
        data.inputs("valid"),
        sku_vectors=sku_vectors,
        threads=threads,
        on_epoch=progress,
    )
    buffer = io.BytesIO()
    torch.save(result.model.state_dict(), buffer)
    return Branch(
        name=entry["name"],
        config=config.to_dict(),
        weights=buffer.getvalue(),
        summary=result.summary(),
        history=[dataclasses.asdict(h) for h in result.history],
        valid_predictions=predict_proba(result.model, data.inputs("valid")[0]),
    )


def _train_gbm_branch(
    entry: dict[str, Any], data: IntentData, sku_vectors: np.ndarray, *, seed: int, threads: int
) -> Branch:
    """A LightGBM grid entry: boosted on the prefixes' tabular features, stopped on valid AUC."""
    from smallboat.model.gbm import GbmConfig, train_gbm

    overrides = {k: v for k, v in entry.items() if k not in ("name", "kind")}
    config = GbmConfig(**{"seed": seed, **overrides})
    valid = data.inputs("valid")
    result = train_gbm(
        config, data.inputs("train"), valid, sku_vectors=sku_vectors, threads=threads
    )
    print(
        f"{entry['name']}: {result.best_rounds} boosting rounds, valid AUC "
        f"{result.best_valid_auc:.4f}, {result.seconds:.1f} s",
        flush=True,
    )
    return Branch(
        name=entry["name"],
        config=config.to_dict(),
        weights=result.model.to_bytes(),
        summary=result.summary(),
        history=[],
        valid_predictions=result.model.predict(valid[0]),
    )


def evaluate(
    best: Branch,
    data: IntentData,
    *,
    oracle: str,
    n_bootstrap: int,
    seed: int,
    extras: dict[str, Any],
    gate_alpha: float = 0.05,
    gate_max_oov: float = 0.5,
    min_improvement: float = 0.0,
) -> dict[str, Any]:
    """The TrainingReport: test reports per model, gaps, and what the card shows beside them,
    including the gate's evidence (`report["gate"]`: the champion scored on this test set)."""
    from smallboat.metrics.intent import flat_metrics
    from smallboat.model.evaluate import evaluate_intent
    from smallboat.model.intent import IntentEnsemble, predict_proba
    from smallboat.model.report import MODELS, summary_prefix
    from smallboat.pipeline.challenge import challenge_champion
    from smallboat.warehouse.quality import transform_digest

    x_test, _ = data.inputs("test")
    model = load_model(best, data)
    prob = (
        predict_proba(model, x_test) if isinstance(model, IntentEnsemble) else model.predict(x_test)
    )
    report = evaluate_intent(
        prob,
        data,
        oracle_path=Path(oracle) if oracle else None,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    report["test_predictions"] = prob
    report["quality"] = transform_digest(extras["quality"])
    report["row_counts"] = extras["row_counts"]
    report["sweep"] = extras["sweep"]
    report["prod2vec"] = extras["prod2vec"]
    report["best"] = {"name": best.name, "config": best.config, **best.summary}
    summary = flat_metrics(report["test"]["model"])
    for name in MODELS[1:]:
        if name in report["test"]:
            summary.update(flat_metrics(report["test"][name], prefix=summary_prefix(name)))
    if report["oracle_gap"]:
        summary.update({f"oracle_gap_{k}": v for k, v in report["oracle_gap"].items()})
    if extras.get("next_item") is not None:
        from smallboat.model.next_item.evaluate import summary_metrics

        report["next_item"] = extras["next_item"]
        summary.update(summary_metrics(report["next_item"]))
    summary.update({f"train_{k}": v for k, v in best.summary.items()})
    report["summary"] = summary
    report["gate"] = challenge_champion(
        Settings(),
        data,
        prob,
        alpha=gate_alpha,
        max_oov=gate_max_oov,
        min_improvement=min_improvement,
    )
    return report


def closing_lines(report: dict[str, Any], registration: dict[str, Any]) -> list[str]:
    s = report["summary"]
    lines = [
        f"test ROC-AUC {s['roc_auc']:.4f}, Challenge score {s['challenge_score']:.4f}"
        + (
            f" | oracle {s['oracle_roc_auc']:.4f} / {s['oracle_challenge_score']:.4f}"
            if "oracle_roc_auc" in s
            else ""
        )
        + f" | count baseline {s['count_baseline_roc_auc']:.4f}",
        *(
            [
                f"next item ({report['next_item']['chosen']}): test MRR@20 "
                f"{s['next_item_mrr_at_20']:.4f}, HR@20 {s['next_item_hr_at_20']:.4f}"
                + (
                    f" | oracle {s['next_item_oracle_mrr_at_20']:.4f} / "
                    f"{s['next_item_oracle_hr_at_20']:.4f} (MRR ratio "
                    f"{s.get('next_item_oracle_ratio_mrr_at_20', float('nan')):.3f})"
                    if "next_item_oracle_mrr_at_20" in s
                    else ""
                )
            ]
            if "next_item_mrr_at_20" in s
            else []
        ),
        f"gate: {registration['summary']}",
        f"bundle: {registration['bundle_dir']}",
        f"card: {registration['card_path']}",
        f"MLflow run {registration['mlflow_run_id']} at {registration['tracking_uri']}",
    ]
    return lines

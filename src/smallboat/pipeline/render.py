"""A TrainFlow run's figures for a person: the test split's tables (intent: model, baselines,
oracle; next item: the recommenders and, on synthetic data, their ceiling) and where the card, the
bundle and the MLflow run are. `smallboat train`, `retrain` and the demo print it."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from smallboat.model.report import LABELS, MODELS, summary_prefix
from smallboat.pipeline.runner import TrainOutcome


def render_training(outcome: TrainOutcome) -> Group:
    """The training run's figures as a table (model, baselines, oracle) and where things are."""
    s = outcome.summary or {}
    table = Table(title=f"TrainFlow/{outcome.run_id}: test split", title_justify="left")
    for col in ("model", "ROC-AUC", "Challenge score", "PR-AUC", "log-loss"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name in MODELS:
        prefix = summary_prefix(name)
        if f"{prefix}challenge_score" not in s:
            continue
        table.add_row(
            LABELS[name],
            *(
                f"{s[prefix + m]:.4f}" if prefix + m in s else "n/a"
                for m in ("roc_auc", "challenge_score", "pr_auc", "log_loss")
            ),
        )
    tables = [table]
    if any(key.startswith("next_item_") for key in s):
        tables.append(next_item_table(s))
    reg = outcome.registration or {}
    lines = [
        f"gate: {reg.get('summary')}",
        f"card: {reg.get('card_path')}",
        f"bundle: {reg.get('bundle_dir')}",
        f"MLflow: run {reg.get('mlflow_run_id')} in {reg.get('tracking_uri')}"
        f" (UI: mlflow ui --backend-store-uri {reg.get('tracking_uri')})",
    ]
    return Group(*tables, *lines)


def next_item_table(s: dict[str, float]) -> Table:
    """MRR@20 / HR@20 of each recommender and of the Bayes-optimal ranking (synthetic data), with
    each one's share of the ceiling's MRR@20."""
    from smallboat.model.next_item.evaluate import LABELS as NEXT_ITEM_LABELS

    table = Table(title="next item: test split", title_justify="left")
    for col in ("recommender", "MRR@20", "HR@20", "MRR / ceiling"):
        table.add_column(col, justify="right" if col != "recommender" else "left")
    ceiling = s.get("next_item_oracle_mrr_at_20")
    labels = {**NEXT_ITEM_LABELS, "oracle": "ceiling (Bayes-optimal ranking, synthetic only)"}
    for name, label in labels.items():
        mrr, hr = s.get(f"next_item_{name}_mrr_at_20"), s.get(f"next_item_{name}_hr_at_20")
        if mrr is None:
            continue
        ratio = f"{mrr / ceiling:.3f}" if ceiling else "n/a"
        table.add_row(label, f"{mrr:.4f}", "n/a" if hr is None else f"{hr:.4f}", ratio)
    return table

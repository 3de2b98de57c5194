"""A TrainFlow run's figures for a person: the test split's table (model, baselines, oracle) and
where the card, the bundle and the MLflow run are. `smallboat train`, `retrain` and the demo print
it."""

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
    reg = outcome.registration or {}
    lines = [
        f"gate: {reg.get('summary')}",
        f"card: {reg.get('card_path')}",
        f"bundle: {reg.get('bundle_dir')}",
        f"MLflow: run {reg.get('mlflow_run_id')} in {reg.get('tracking_uri')}"
        f" (UI: mlflow ui --backend-store-uri {reg.get('tracking_uri')})",
    ]
    return Group(table, *lines)

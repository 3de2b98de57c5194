"""TrainFlow's last steps: the card, and publishing the model (the bundle saved and checked
against the flow's own predictions, its reference table, MLflow run and version, and the
champion/challenger gate)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from smallboat.config import Settings
from smallboat.model.prepare import IntentData
from smallboat.pipeline.train_steps import Branch, load_model

EXPERIMENT = "smallboat-intent"
GATE_METRIC = "roc_auc"


def card_parts(report: dict[str, Any], graph: Any) -> list[Any]:
    from smallboat.model.report import card_components

    return card_components(report, dag=_dag_component(graph))


def _dag_component(graph: Any) -> Any:
    """Metaflow's own DAG drawing, inside our blank card (None when Metaflow cannot provide it)."""
    try:
        from metaflow.plugins.cards.card_modules.basic import DagComponent, transform_flow_graph
        from metaflow.plugins.cards.card_modules.components import UserComponent
    except ImportError:
        return None

    class Dag(UserComponent):
        def render(self) -> dict[str, Any]:
            rendered: dict[str, Any] = DagComponent(data=transform_flow_graph(graph)).render()
            return rendered

    return Dag() if graph else None


def card_html(card_task: str) -> str | None:
    """The rendered card of the `card` step, as self-contained HTML."""
    from metaflow import Task, namespace
    from metaflow.cards import get_cards

    namespace(None)
    cards = get_cards(Task(card_task), id="report")
    return cards[0].get() if len(cards) else None


def register(
    best: Branch,
    data: IntentData,
    report: dict[str, Any],
    *,
    card_task: str,
    run_pathspec: str,
    params: dict[str, Any],
    min_improvement: float,
    next_item: Any = None,
) -> dict[str, Any]:
    """Save the bundle, log it to MLflow, and let the gate decide whether it becomes champion.

    The champion was scored on THIS run's test examples with its own vocabulary by the evaluate
    step (`report["gate"]`, `pipeline.challenge`), so both numbers of the gate and DeLong's
    p-value come from the same test set; the gate refuses if the champion changed since.
    """
    from smallboat import registry
    from smallboat.bundle import CARD_FILE, MODEL_NAME, REFERENCE_FILE
    from smallboat.model.evaluate import predict_examples, reference_table
    from smallboat.model.predictor import IntentPredictor, save_bundle

    s = Settings()
    html = card_html(card_task)
    bundle_dir = s.home_dir / "bundles" / run_pathspec.replace("/", "-")
    save_bundle(
        bundle_dir,
        model=load_model(best, data),
        spec=data.spec,
        vocab=data.vocab,
        metrics=report["summary"],
        extra={"run_pathspec": run_pathspec, "best": report["best"]},
        card_html=html,
        next_item=next_item,
    )
    assert data.test_events is not None and data.test_examples is not None
    test = data.test_examples

    # The bundle as saved predicts exactly what the flow evaluated (no train/serve skew).
    fresh = predict_examples(IntentPredictor.load(bundle_dir), data.test_events, test)
    drift = float(np.max(np.abs(fresh - report["test_predictions"]))) if len(fresh) else 0.0
    assert drift < 1e-6, f"the saved bundle predicts differently from the flow: max diff {drift}"
    if next_item is not None:
        _check_saved_next_item(bundle_dir, next_item, data)
    reference_table(
        IntentPredictor.load(bundle_dir), data.test_events, test, report["test_predictions"]
    ).to_parquet(bundle_dir / REFERENCE_FILE, index=False)
    # The serving graph for ONNX Runtime (tests/integration/test_onnx_parity.py holds it to the
    # weights on every test example): the GRU ensemble (a blend's GRU half) and the sequence
    # recommender. LightGBM's trees are not in it: serving runs LightGBM's own predictor.
    saved = IntentPredictor.load(bundle_dir)
    if saved.has_serving_graph:
        saved.write_onnx(bundle_dir)

    gate = report["gate"]
    with tempfile.TemporaryDirectory() as tmp:
        card_path = None
        if html is not None:
            card_path = Path(tmp) / CARD_FILE
            card_path.write_text(html)
        published = registry.publish(
            s,
            experiment=EXPERIMENT,
            model_name=MODEL_NAME,
            run_name=run_pathspec,
            params={k: str(v) for k, v in params.items()},
            metrics={k: float(v) for k, v in report["summary"].items()},
            bundle_dir=bundle_dir,
            card_path=card_path,
            tags={"metaflow_run": run_pathspec, **chosen_tags(report["best"])},
            gate_metric=GATE_METRIC,
            champion_score=gate["champion_roc_auc"],
            champion_version=gate["champion_version"],
            min_improvement=min_improvement,
            p_value=gate["p_value"],
            alpha=gate["alpha"],
            test=gate["test"],
            champion_invalid=gate["champion_invalid"],
        )
    return {
        "bundle_dir": str(bundle_dir),
        "mlflow_run_id": published.run.run_id,
        "tracking_uri": published.run.tracking_uri,
        "model_name": MODEL_NAME,
        "version": published.version.version,
        "decision": published.decision.decision,
        "summary": published.decision.summary,
        "champion_version": published.decision.champion_version,
        "challenger_score": published.decision.challenger_score,
        "champion_score": published.decision.champion_score,
        "p_value": published.decision.p_value,
        "alpha": published.decision.alpha,
        "champion_invalid": published.decision.champion_invalid,
        "min_improvement": published.decision.min_improvement,
        "card_path": str(bundle_dir / CARD_FILE) if html is not None else None,
    }


def chosen_tags(best: dict[str, Any]) -> dict[str, str]:
    """What the sweep chose, as MLflow tags: its name, and for a blend its members and weight."""
    from smallboat.model.blend import KIND as BLEND_KIND

    config = best.get("config") or {}
    tags = {"intent_model": str(best["name"])}
    if config.get("kind") == BLEND_KIND:
        tags["blend"] = (
            f"{config['weight']:.2f} x {config['gru_name']} + {1 - config['weight']:.2f} x "
            f"{config['gbm_name']} ({config['space']})"
        )
    return tags


def _check_saved_next_item(bundle_dir: Path, state: Any, data: IntentData) -> None:
    """The bundle's next-item recommender scores the test prefixes as the flow's one did."""
    import torch

    from smallboat.model.next_item.store import from_state
    from smallboat.model.predictor import IntentPredictor

    saved = IntentPredictor.load(bundle_dir).next_item
    assert saved is not None, f"{bundle_dir} lost its next-item recommender"
    inputs, _ = data.inputs("test")
    sample = inputs.take(np.arange(min(len(inputs), 256)))
    torch.testing.assert_close(saved.scores(sample), from_state(state).scores(sample))

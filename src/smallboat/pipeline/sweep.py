"""The sweep's branches and the join's choice among them (TrainFlow's `join` step).

A `Branch` is one trained grid entry, small enough to travel as a Metaflow artifact. The join
ranks them by validation ROC-AUC; it also blends the best GRU and the best LightGBM branch
(`model.blend`, the weight fit on the validation split) and makes the blend a candidate when it
validates better than both. `load_model` turns any of them back into a model that predicts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from smallboat.errors import SmallboatError
from smallboat.model.prepare import IntentData

BLEND_NAME = "blend"
"""The join's blend entry in the sweep (the grid's names are the user's; this one is taken)."""

BLEND_MODES = ("auto", "always", "never")
"""--blend: the blend is a candidate when it validates better than both members / is chosen /
is left out."""


def check_blend(blend: str, entries: list[dict[str, Any]]) -> None:
    """--blend is one of auto/always/never; 'always' needs a GRU and a LightGBM grid entry."""
    from smallboat.model.gbm import KIND as GBM_KIND

    if blend not in BLEND_MODES:
        raise SmallboatError(f"--blend {blend!r} is not one of {', '.join(BLEND_MODES)}")
    kinds = {e.get("kind", "gru") for e in entries}
    if blend == "always" and kinds != {"gru", GBM_KIND}:
        raise SmallboatError(
            f"--blend always needs a GRU and a '{GBM_KIND}' entry in --grid, got kinds "
            f"{sorted(kinds)}"
        )
    if blend != "never" and any(e.get("name") == BLEND_NAME for e in entries):
        raise SmallboatError(
            f"--grid: the name {BLEND_NAME!r} is the join's blend; rename that entry "
            "(or pass --blend never)"
        )


@dataclass
class Branch:
    """One trained grid entry: small enough to travel as an artifact (weights as bytes)."""

    name: str
    config: dict[str, Any]
    weights: bytes
    summary: dict[str, float]
    history: list[dict[str, float]]
    # P(purchase) of each validation example: what the join fits a blend on (`pick_best`)
    valid_predictions: np.ndarray | None = None


def pick_best(
    branches: list[Branch], *, valid_labels: np.ndarray | None = None, blend: str = "auto"
) -> tuple[Branch, list[dict[str, Any]]]:
    """The branch with the highest validation AUC (ties: the earlier name), and the sweep table.

    With `valid_labels`, the best GRU and the best LightGBM branch are also blended
    (`model.blend`, the weight fit on validation) and the blend is a candidate when its
    validation AUC beats both (`blend="auto"`), always (`"always"`) or never (`"never"`)."""
    candidates = list(branches)
    mixed = blend_branch(branches, valid_labels) if valid_labels is not None else None
    if mixed is not None and blend != "never":
        if blend == "always":
            candidates = [mixed]
        elif mixed.summary["blend_beats_both"]:
            candidates.append(mixed)
    ranked = sorted(candidates, key=lambda b: (-_finite(b.summary["best_valid_auc"]), b.name))
    best = ranked[0]
    shown = branches + ([mixed] if mixed is not None and blend != "never" else [])
    sweep = [{"name": b.name, "chosen": b is best, "config": b.config, **b.summary} for b in shown]
    return best, sweep


def blend_branch(branches: list[Branch], valid_labels: np.ndarray) -> Branch | None:
    """The best GRU branch and the best LightGBM branch averaged, the weight and space fit on
    the validation split (None without one of each, or without their validation predictions)."""
    from smallboat.model.blend import BlendConfig, fit_blend, pack
    from smallboat.model.gbm import KIND as GBM_KIND

    def best_of(members: list[Branch]) -> Branch | None:
        usable = [b for b in members if b.valid_predictions is not None]
        return min(
            usable, key=lambda b: (-_finite(b.summary["best_valid_auc"]), b.name), default=None
        )

    gru = best_of([b for b in branches if b.config.get("kind", "gru") == "gru"])
    gbm = best_of([b for b in branches if b.config.get("kind") == GBM_KIND])
    if gru is None or gbm is None or not 0 < int(np.sum(valid_labels)) < len(valid_labels):
        return None  # nothing to blend, or no validation AUC to fit the weight on
    assert gru.valid_predictions is not None and gbm.valid_predictions is not None
    fit = fit_blend(gru.valid_predictions, gbm.valid_predictions, valid_labels)
    config = BlendConfig(
        weight=fit.weight,
        space=fit.space,
        gru_name=gru.name,
        gbm_name=gbm.name,
        gru={k: v for k, v in gru.config.items() if k != "kind"},
        gbm=gbm.config,
    )
    print(fit.describe(gru.name, gbm.name), flush=True)
    return Branch(
        name=BLEND_NAME,
        config=config.to_dict(),
        weights=pack(gru.weights, gbm.weights),
        summary={
            "best_valid_auc": fit.valid_auc,
            "best_epoch": 0.0,
            "epochs": 0.0,
            "members": gru.summary["members"] + gbm.summary["members"],
            "sequences_per_s": 0.0,
            "train_seconds": gru.summary["train_seconds"] + gbm.summary["train_seconds"],
            "blend_weight": fit.weight,
            "blend_logit": float(fit.space == "logit"),
            "blend_beats_both": float(fit.beats_both),
        },
        history=[],
        valid_predictions=None,
    )


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -1.0


def load_model(branch: Branch, data: IntentData) -> Any:
    """The branch's trained model: an IntentEnsemble, a GbmIntent for a LightGBM entry, or a
    BlendIntent for the sweep's blend."""
    import torch

    from smallboat.model.blend import KIND as BLEND_KIND
    from smallboat.model.blend import BlendConfig, BlendIntent
    from smallboat.model.gbm import KIND as GBM_KIND
    from smallboat.model.gbm import GbmConfig, GbmIntent
    from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes

    if branch.config.get("kind") == GBM_KIND:
        return GbmIntent.from_bytes(GbmConfig.from_dict(branch.config), branch.weights)
    if branch.config.get("kind") == BLEND_KIND:
        blend = BlendConfig.from_dict(branch.config)
        return BlendIntent.from_bytes(blend, branch.weights, Sizes.of(data.vocab, data.spec))
    config = IntentConfig.from_dict(branch.config)
    model = IntentEnsemble(config, Sizes.of(data.vocab, data.spec))
    model.load_state_dict(torch.load(io.BytesIO(branch.weights), weights_only=True))
    model.eval()
    return model

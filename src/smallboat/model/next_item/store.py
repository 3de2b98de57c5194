"""A next-item recommender as plain data: what travels between TrainFlow's steps and what the
model bundle keeps in its `next_item/` folder.

    next_item/recommender.json   kind and configuration
    next_item/arrays.npz         popularity counts, leaf categories, prod2vec vectors, the Markov
                                 recommender's sparse counts (as needed)
    next_item/weights.pt         the sequence model's state dict
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallboat.errors import SmallboatError
from smallboat.model.intent import Sizes
from smallboat.model.next_item.markov import (
    MarkovRecommender,
    markov_arrays,
    markov_from_arrays,
)
from smallboat.model.next_item.recommenders import (
    KnnRecommender,
    PopularityRecommender,
    Recommender,
)
from smallboat.model.next_item.sequence import NextItemConfig, NextItemModel, SequenceRecommender

CONFIG_FILE = "recommender.json"
ARRAYS_FILE = "arrays.npz"
WEIGHTS_FILE = "weights.pt"
KINDS = ("popularity", "popularity_category", "knn", "markov", "sequence")


@dataclass
class RecommenderState:
    """Everything needed to rebuild a recommender: small enough to be a Metaflow artifact."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    weights: bytes | None = None


def state_of(recommender: Recommender) -> RecommenderState:
    if isinstance(recommender, PopularityRecommender):
        arrays = {"popularity": recommender.popularity}
        if recommender.leaves is not None:
            arrays["leaves"] = recommender.leaves
        return RecommenderState(recommender.kind, {}, arrays)
    if isinstance(recommender, KnnRecommender):
        return RecommenderState(
            "knn",
            {"recent": recommender.recent, "decay": recommender.decay},
            {"unit": recommender.unit, "popularity": recommender.popularity},
        )
    if isinstance(recommender, MarkovRecommender):
        priors = {"prior": recommender.prior, "prior_away": recommender.prior_away}
        return RecommenderState("markov", priors, markov_arrays(recommender))
    if isinstance(recommender, SequenceRecommender):
        model = recommender.model
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        config = {
            "model": model.next_config.to_dict(),
            "sizes": {
                "n_sku": model.sizes.n_sku,
                "n_category": model.sizes.n_category,
                "n_gap": model.sizes.n_gap,
            },
        }
        return RecommenderState("sequence", config, {}, buffer.getvalue())
    raise TypeError(f"cannot store a {type(recommender).__name__}")


def from_state(state: RecommenderState) -> Recommender:
    if state.kind in ("popularity", "popularity_category"):
        return PopularityRecommender(
            state.arrays["popularity"],
            leaves=state.arrays.get("leaves"),
            within_category=state.kind == "popularity_category",
        )
    if state.kind == "knn":
        return KnnRecommender(
            state.arrays["unit"],
            state.arrays["popularity"],
            recent=int(state.config["recent"]),
            decay=float(state.config["decay"]),
        )
    if state.kind == "markov":
        config = state.config
        return markov_from_arrays(state.arrays, float(config["prior"]), float(config["prior_away"]))
    if state.kind == "sequence":
        assert state.weights is not None, "a sequence recommender's state needs its weights"
        model = NextItemModel(
            NextItemConfig.from_dict(state.config["model"]), Sizes(**state.config["sizes"])
        )
        model.load_state_dict(torch.load(io.BytesIO(state.weights), weights_only=True))
        return SequenceRecommender(model)
    raise SmallboatError(f"unknown next-item recommender kind {state.kind!r}; expected {KINDS}")


def save_state(folder: Path, state: RecommenderState) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(
        json.dumps({"kind": state.kind, "config": state.config}, indent=2)
    )
    if state.arrays:
        np.savez_compressed(folder / ARRAYS_FILE, allow_pickle=False, **state.arrays)
    if state.weights is not None:
        (folder / WEIGHTS_FILE).write_bytes(state.weights)


def load_state(folder: Path) -> RecommenderState:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise SmallboatError(f"{folder} holds no next-item recommender: it has no {CONFIG_FILE}")
    meta = json.loads(path.read_text())
    arrays: dict[str, np.ndarray] = {}
    if (folder / ARRAYS_FILE).is_file():
        with np.load(folder / ARRAYS_FILE) as stored:
            arrays = {name: stored[name] for name in stored.files}
    weights = (folder / WEIGHTS_FILE).read_bytes() if (folder / WEIGHTS_FILE).is_file() else None
    return RecommenderState(meta["kind"], meta.get("config", {}), arrays, weights)

"""The model bundle (DESIGN.md section 5): one directory that carries everything needed to predict.

    bundle.json          format, model name and version, feature spec, model config, sizes, metrics
    weights.pt           the PyTorch state dict
    vocab/               the fitted vocabularies (features.Vocabulary)
    card.html            the training run's card, when there is one
    next_item/           the next-item recommender, when the run trained one (model.next_item.store)

Serving loads a bundle with `IntentPredictor.load` and needs only `features` and `model`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallboat.errors import SmallboatError
from smallboat.features import FeatureSpec, ModelInputs, Vocabulary, encode_sessions
from smallboat.features.spec import SKU_FIRST
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes, predict_proba
from smallboat.model.next_item.data import sku_tokens
from smallboat.model.next_item.recommenders import Recommender, top_k
from smallboat.model.next_item.store import RecommenderState, from_state, load_state, save_state

BUNDLE_FORMAT = 1
MODEL_NAME = "smallboat-intent"
META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.pt"
VOCAB_DIR = "vocab"
CARD_FILE = "card.html"
NEXT_ITEM_DIR = "next_item"
REFERENCE_FILE = "reference.parquet"
"""The monitoring reference: the summaries (`features.summary`), predictions and labels of the
training run's held-out test examples; drift checks compare live traffic against it."""


def save_bundle(
    folder: Path,
    *,
    model: IntentEnsemble,
    spec: FeatureSpec,
    vocab: Vocabulary,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    card_html: str | None = None,
    next_item: RecommenderState | None = None,
) -> Path:
    """Write a bundle into `folder` (replacing what is there); returns the folder."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    vocab.save(folder / VOCAB_DIR)
    meta = {
        "format": BUNDLE_FORMAT,
        "model_name": MODEL_NAME,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "feature_spec": spec.to_dict(),
        "model_config": model.config.to_dict(),
        "sizes": {
            "n_sku": model.sizes.n_sku,
            "n_category": model.sizes.n_category,
            "n_gap": model.sizes.n_gap,
        },
        "metrics": metrics,
        **(extra or {}),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
    if card_html is not None:
        (folder / CARD_FILE).write_text(card_html)
    if next_item is not None:
        save_state(folder / NEXT_ITEM_DIR, next_item)
    return folder


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in bundle.json")


@dataclass
class IntentPredictor:
    """A loaded bundle: predicts P(purchase) from raw browsing events or encoded inputs."""

    model: IntentEnsemble
    spec: FeatureSpec
    vocab: Vocabulary
    meta: dict[str, Any]
    next_item: Recommender | None = None  # None for bundles written before the next-item task

    @property
    def version(self) -> str:
        """The registered version when the bundle knows it, else the run that trained it."""
        meta = self.meta
        return str(meta.get("model_version") or meta.get("run_pathspec") or "unregistered")

    @classmethod
    def load(cls, folder: Path) -> IntentPredictor:
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise SmallboatError(f"{folder} is not a model bundle: it has no {META_FILE}")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise SmallboatError(
                f"{meta_path}: bundle format {meta.get('format')!r}; this version reads "
                f"{BUNDLE_FORMAT}"
            )
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        model = IntentEnsemble(IntentConfig.from_dict(meta["model_config"]), Sizes(**meta["sizes"]))
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise SmallboatError(
                f"{folder}: the weights do not fit the model its bundle.json describes ({first}); "
                "the bundle is damaged or was written by an incompatible smallboat version"
            ) from None
        model.eval()
        next_item = None
        if (folder / NEXT_ITEM_DIR).is_dir():
            next_item = from_state(load_state(folder / NEXT_ITEM_DIR))
        return cls(
            model=model,
            spec=spec,
            vocab=Vocabulary.load(folder / VOCAB_DIR),
            meta=meta,
            next_item=next_item,
        )

    @cached_property
    def sku_names(self) -> np.ndarray:
        """SKU hash of each SKU token (empty for the special tokens), (n_sku_tokens,) object."""
        names = np.full(self.vocab.n_sku_tokens, "", dtype=object)
        names[SKU_FIRST:] = self.vocab.trained_skus()
        return names

    def recommend(
        self,
        inputs: ModelInputs,
        ks: Sequence[int],
        *,
        exclude: Sequence[Sequence[str | None] | None] | None = None,
    ) -> list[list[tuple[str, float]]] | None:
        """The next items of each encoded prefix: (SKU, score) pairs by descending score, at most
        `ks[i]` for row i; with `exclude[i]` (SKU hashes), none of those. None when the bundle
        has no next-item recommender (bundles older than the task)."""
        if self.next_item is None:
            return None
        scores = self.next_item.scores(inputs)  # (B, n_sku_tokens)
        excluded = None
        if exclude is not None and any(skus for skus in exclude):
            width = max(len(skus or ()) for skus in exclude)
            excluded = np.zeros((len(inputs), width), dtype=np.int64)  # 0 pads: never a SKU
            for row, skus in enumerate(exclude):
                if skus:
                    found = [s for s in skus if s is not None]
                    excluded[row, : len(found)] = sku_tokens(
                        self.vocab, np.array(found, dtype=object)
                    )
        tokens, values = top_k(scores, max(ks, default=0), exclude=excluded)
        names = self.sku_names
        return [
            [
                (str(names[t]), float(v))
                for t, v in zip(tokens[row, :k], values[row, :k], strict=True)
                if np.isfinite(v)
            ]
            for row, k in enumerate(ks)
        ]

    def predict_inputs(self, inputs: ModelInputs) -> np.ndarray:
        return predict_proba(self.model, inputs)

    def encode(self, sessions: list[list[dict[str, Any]]]) -> ModelInputs:
        return encode_sessions(sessions, self.vocab, self.spec)

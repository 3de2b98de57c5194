"""A model bundle's torch side: write one (`save_bundle`), load one to predict (`IntentPredictor`).

The bundle's layout and its bundle.json are the contract in `smallboat.bundle`; this module adds
the weights, vocabularies and next-item recommender. Serving loads a bundle with
`IntentPredictor.load` and needs only `features` and `model`.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallboat.bundle import (
    BUNDLE_FORMAT,
    CARD_FILE,
    GBM_DIR,
    META_FILE,
    MODEL_NAME,
    NEXT_ITEM_DIR,
    ONNX_FILE,
    VOCAB_DIR,
    WEIGHTS_FILE,
    BundleError,
    BundleMeta,
    read_current_meta,
    write_meta,
)
from smallboat.features import FeatureSpec, ModelInputs, Vocabulary, encode_sessions
from smallboat.features.spec import SKU_FIRST
from smallboat.model.blend import KIND as BLEND_KIND
from smallboat.model.blend import BlendIntent
from smallboat.model.fused import FusedIntent
from smallboat.model.gbm import KIND as GBM_KIND
from smallboat.model.gbm import GbmConfig, GbmIntent
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes, predict_proba
from smallboat.model.next_item.data import sku_tokens
from smallboat.model.next_item.recommenders import Recommender, top_k
from smallboat.model.next_item.sequence import SequenceRecommender
from smallboat.model.next_item.store import RecommenderState, from_state, load_state, save_state
from smallboat.model.onnx_intent import OnnxIntent, onnx_bytes


def save_bundle(
    folder: Path,
    *,
    model: IntentEnsemble | GbmIntent | BlendIntent,
    spec: FeatureSpec,
    vocab: Vocabulary,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    card_html: str | None = None,
    next_item: RecommenderState | None = None,
) -> Path:
    """Write a bundle into `folder` (replacing what is there); returns the folder.

    `extra` adds keys to bundle.json (`BundleMeta`'s run_pathspec and best, or any other)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if isinstance(model, GbmIntent):
        model.save(folder / GBM_DIR)
        sizes = None
    else:
        if isinstance(model, BlendIntent):  # both members: the GRU's weights and GBM_DIR
            model.save(folder)
        else:
            torch.save(model.state_dict(), folder / WEIGHTS_FILE)
        sizes = {
            "n_sku": model.sizes.n_sku,
            "n_category": model.sizes.n_category,
            "n_gap": model.sizes.n_gap,
        }
    vocab.save(folder / VOCAB_DIR)
    meta = {
        "format": BUNDLE_FORMAT,
        "model_name": MODEL_NAME,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "feature_spec": spec.to_dict(),
        "model_config": model.config.to_dict(),
        "sizes": sizes,
        "metrics": metrics,
        **(extra or {}),
    }
    write_meta(folder, BundleMeta.from_dict(meta))
    if card_html is not None:
        (folder / CARD_FILE).write_text(card_html)
    if next_item is not None:
        save_state(folder / NEXT_ITEM_DIR, next_item)
    return folder


@dataclass
class IntentPredictor:
    """A loaded bundle: predicts P(purchase) from raw browsing events or encoded inputs.

    `model` is a GRU ensemble, a LightGBM model (`model.gbm`, when the sweep chose one) or a
    blend of both (`model.blend`). The serving graph (`serving_graph`, `onnx`) holds what is
    neural: the GRU ensemble (a blend's GRU half) and the sequence recommender; LightGBM's trees
    score with LightGBM's own predictor, and `predict_inputs` combines the two."""

    model: IntentEnsemble | GbmIntent | BlendIntent
    spec: FeatureSpec
    vocab: Vocabulary
    meta: BundleMeta
    next_item: Recommender | None = None  # None for bundles written before the next-item task

    @property
    def version(self) -> str:
        """The registered version when the bundle knows it, else the run that trained it."""
        return self.meta.version

    @classmethod
    def load(cls, folder: Path) -> IntentPredictor:
        meta = read_current_meta(folder)
        spec = FeatureSpec.from_dict(meta.require("feature_spec", folder))
        config = meta.require("model_config", folder)
        if config.get("kind") == GBM_KIND:
            return cls._with_model(folder, meta, spec, _load_gbm(folder, config))
        if config.get("kind") == BLEND_KIND:
            sizes = meta.require("sizes", folder)
            return cls._with_model(folder, meta, spec, _load_blend(folder, config, sizes))
        model = IntentEnsemble(
            IntentConfig.from_dict(config),
            Sizes(**meta.require("sizes", folder)),
        )
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise BundleError(
                f"{folder}: the weights do not fit the model its {META_FILE} describes ({first}); "
                "the bundle is damaged or was written by an incompatible smallboat version"
            ) from None
        model.eval()
        return cls._with_model(folder, meta, spec, model)

    @classmethod
    def _with_model(
        cls,
        folder: Path,
        meta: BundleMeta,
        spec: FeatureSpec,
        model: IntentEnsemble | GbmIntent | BlendIntent,
    ) -> IntentPredictor:
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

    @property
    def ensemble(self) -> IntentEnsemble | None:
        """The GRU ensemble, None when the bundle's intent model is LightGBM or a blend."""
        return self.model if isinstance(self.model, IntentEnsemble) else None

    @property
    def gru(self) -> IntentEnsemble | None:
        """The GRU ensemble the intent model runs: the model itself or a blend's GRU half; None
        for a LightGBM model."""
        if isinstance(self.model, BlendIntent):
            return self.model.gru
        return self.ensemble

    @property
    def has_serving_graph(self) -> bool:
        """Something of the bundle runs on ONNX Runtime: a GRU ensemble (a blend's too) or the
        sequence recommender."""
        return self.gru is not None or isinstance(self.next_item, SequenceRecommender)

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
        scores: np.ndarray | None = None,
        top: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[list[tuple[str, float]]] | None:
        """The next items of each encoded prefix: (SKU, score) pairs by descending score, at most
        `ks[i]` for row i; with `exclude[i]` (SKU hashes), none of those. None when the bundle
        has no next-item recommender (bundles older than the task). `scores`: the recommender's
        scores of `inputs` already computed (the serving graph's second output); or `top`: its
        best tokens and scores per row already taken, best first ((N, K) each, the serving
        graph's TopK), K at least `top_k_wanted(ks, exclude)` or every SKU token."""
        if self.next_item is None:
            return None
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
        if top is not None:
            tokens, values = top
            if excluded is not None:  # what a -inf at the excluded tokens leaves of the top K
                return self._named(*_without(tokens, values, excluded), ks)
        else:
            # (B, n_sku_tokens)
            scored = self.next_item.scores(inputs) if scores is None else torch.from_numpy(scores)
            tokens, values = top_k(scored, max(ks, default=0), exclude=excluded)
        return self._named(tokens.tolist(), values.tolist(), ks)

    @staticmethod
    def top_k_wanted(
        ks: Sequence[int], exclude: Sequence[Sequence[str | None] | None] | None = None
    ) -> int:
        """How many best tokens per row `recommend(..., top=...)` needs: the largest k, plus
        the most SKUs a row excludes (each may be among the best)."""
        width = max((len(skus or ()) for skus in exclude), default=0) if exclude else 0
        return max(ks, default=0) + width

    def _named(
        self, tokens: list[list[int]], values: list[list[float]], ks: Sequence[int]
    ) -> list[list[tuple[str, float]]]:
        """Rows of tokens and scores as (SKU, score) pairs, at most k a row, the finite ones
        (a -inf is a special token or an excluded one)."""
        names = self.sku_name_list
        # Whole rows to Python values at once: a NumPy scalar per item costs ~1 us per call.
        return [
            [
                (names[t], v)
                for t, v in zip(token_row[:k], value_row[:k], strict=True)
                if math.isfinite(v)
            ]
            for token_row, value_row, k in zip(tokens, values, ks, strict=True)
        ]

    @cached_property
    def sku_name_list(self) -> list[str]:
        """`sku_names` as a list of str (for `recommend`'s per-item lookups)."""
        return [str(name) for name in self.sku_names]

    def serving_graph(self, fused: FusedIntent | None = None) -> bytes:
        """The bundle's serving graph (`model.onnx_intent`): the fused GRU ensemble (`fused`,
        else fused here from `gru`; none for a LightGBM model), and the sequence recommender's
        scores and their top k when the bundle has one (other recommenders score in NumPy)."""
        next_model = (
            self.next_item.model if isinstance(self.next_item, SequenceRecommender) else None
        )
        gru = self.gru
        if fused is None and gru is not None:
            fused = FusedIntent.from_ensemble(gru)
        if fused is None and next_model is None:
            raise BundleError(
                "a LightGBM intent model without a sequence recommender has no ONNX serving graph"
            )
        return onnx_bytes(fused, next_model)

    def onnx(self, folder: Path, fused: FusedIntent | None = None) -> OnnxIntent:
        """The serving graph on ONNX Runtime: the bundle's ONNX_FILE, or derived from the
        weights for a bundle written before it had one (or whose graph lacks the next-item
        output its recommender needs). A graph written before TopK was in it (every SKU's
        score out) is served as it is: the scorer ranks its scores itself."""
        needs_next = isinstance(self.next_item, SequenceRecommender)
        path = folder / ONNX_FILE
        if path.is_file():
            loaded = OnnxIntent(path)
            if (loaded.has_next_item, loaded.has_probability) == (needs_next, self.gru is not None):
                return loaded
        return OnnxIntent(self.serving_graph(fused))

    def write_onnx(self, folder: Path) -> Path:
        """Write the serving graph into the bundle `folder` (publish does, after saving)."""
        path = folder / ONNX_FILE
        path.write_bytes(self.serving_graph())
        return path

    def predict_inputs(
        self, inputs: ModelInputs, *, gru_probability: np.ndarray | None = None
    ) -> np.ndarray:
        """P(purchase) of every row of `inputs`, (N,) float64. `gru_probability`: the GRU
        ensemble's (`gru`'s) already computed (the serving graph's), used in its place."""
        if isinstance(self.model, GbmIntent):
            return self.model.predict(inputs)
        if isinstance(self.model, BlendIntent):
            return self.model.predict(inputs, p_gru=gru_probability)
        if gru_probability is not None:
            return gru_probability
        return predict_proba(self.model, inputs)

    def encode(self, sessions: list[list[dict[str, Any]]]) -> ModelInputs:
        return encode_sessions(sessions, self.vocab, self.spec)


def _without(
    tokens: np.ndarray, values: np.ndarray, excluded: np.ndarray
) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's tokens and scores, best first, without its `excluded` tokens (0 pads)."""
    kept_tokens, kept_values = [], []
    for token_row, value_row, drop in zip(
        tokens.tolist(), values.tolist(), excluded.tolist(), strict=True
    ):
        dropped = set(drop)
        kept = [(t, v) for t, v in zip(token_row, value_row, strict=True) if t not in dropped]
        kept_tokens.append([t for t, _ in kept])
        kept_values.append([v for _, v in kept])
    return kept_tokens, kept_values


def _load_gbm(folder: Path, config: dict[str, Any]) -> GbmIntent:
    try:
        return GbmIntent.load(GbmConfig.from_dict(config), folder / GBM_DIR)
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(
            f"{folder}: its LightGBM model ({GBM_DIR}/) cannot be loaded ({first}); the bundle is "
            "damaged or was written by an incompatible smallboat version"
        ) from None


def _load_blend(folder: Path, config: dict[str, Any], sizes: dict[str, int]) -> BlendIntent:
    try:
        return BlendIntent.load(folder, config, sizes)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(
            f"{folder}: its blend ({WEIGHTS_FILE} and {GBM_DIR}/) cannot be loaded ({first}); the "
            "bundle is damaged or was written by an incompatible smallboat version"
        ) from None

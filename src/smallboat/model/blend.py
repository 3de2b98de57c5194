"""The blend intent candidate: the sweep's best GRU ensemble and best LightGBM model averaged.

The two see the same prefixes differently (a sequence encoder vs trees on tabular features), so
their errors are partly independent and a convex average can rank better than either. The
weight `w` (on the GRU; 1 - w on LightGBM) and the space the average is taken in (probabilities,
or logits) are chosen on the validation split by `fit_blend`; w = 0 or 1 is a single model, so
the sweep picks the blend only when its validation ROC-AUC beats both of its members'.

A blend bundle holds both members in their usual places (the GRU's WEIGHTS_FILE and sizes, the
LightGBM model's GBM_DIR) and the blend's config in bundle.json. Its serving graph (written at
publish, like a GRU champion's) holds the GRU half and the recommender; serving combines the
graph's GRU probability with LightGBM's own (`IntentPredictor.predict_inputs`, `combine`).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallboat.bundle import GBM_DIR, WEIGHTS_FILE
from smallboat.features import ModelInputs
from smallboat.metrics.intent import roc_auc
from smallboat.model.gbm import GbmConfig, GbmIntent
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes, predict_proba

KIND = "blend"
"""The bundle's and the sweep entry's `kind` of a blend."""
SPACES = ("probability", "logit")
WEIGHT_STEPS = 100
"""The weight grid: 0, 0.01, ..., 1. Finer steps only fit the validation split's noise."""
_EPS = 1e-7  # probabilities are clipped this far from 0 and 1 before a logit


@dataclass(frozen=True)
class BlendConfig:
    """What the blend averages, and how."""

    weight: float  # on the GRU ensemble's output; 1 - weight on LightGBM's
    space: str  # "probability" or "logit": where the average is taken
    gru_name: str  # the sweep entries the members come from (the card names them)
    gbm_name: str
    gru: dict[str, Any]  # IntentConfig.to_dict()
    gbm: dict[str, Any]  # GbmConfig.to_dict()

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"blend weight must be in [0, 1], got {self.weight}")
        if self.space not in SPACES:
            raise ValueError(f"blend space must be one of {SPACES}, got {self.space!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlendConfig:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


def combine(p_gru: np.ndarray, p_gbm: np.ndarray, *, weight: float, space: str) -> np.ndarray:
    """The blended P(purchase), (N,) float64: the members' probabilities averaged with weight
    `weight` on the GRU, in probability or logit space."""
    a = np.asarray(p_gru, dtype=np.float64)
    b = np.asarray(p_gbm, dtype=np.float64)
    if space == "probability":
        return weight * a + (1.0 - weight) * b
    z = weight * _logit(a) + (1.0 - weight) * _logit(b)
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


@dataclass(frozen=True)
class BlendFit:
    """The weight search's answer: the best (weight, space) on validation and the members'
    own validation ROC-AUCs beside it."""

    weight: float
    space: str
    valid_auc: float
    gru_valid_auc: float
    gbm_valid_auc: float

    @property
    def beats_both(self) -> bool:
        """The blend ranks validation strictly better than either member alone."""
        return self.valid_auc > max(self.gru_valid_auc, self.gbm_valid_auc)

    def describe(self, gru_name: str, gbm_name: str) -> str:
        """One line for the join step's output."""
        verdict = "beats both" if self.beats_both else "does not beat both"
        return (
            f"blend: {self.weight:.2f} x {gru_name} + {1 - self.weight:.2f} x {gbm_name} "
            f"(in {self.space} space), valid AUC {self.valid_auc:.4f} vs {gru_name} "
            f"{self.gru_valid_auc:.4f}, {gbm_name} {self.gbm_valid_auc:.4f}: {verdict}"
        )


def fit_blend(
    p_gru: np.ndarray, p_gbm: np.ndarray, labels: np.ndarray, *, steps: int = WEIGHT_STEPS
) -> BlendFit:
    """The weight in {0, 1/steps, ..., 1} and the space with the highest validation ROC-AUC
    (ties: the weight nearest 0.5, then probability space, so the answer does not depend on the
    order of the search)."""
    p_gru, p_gbm = np.asarray(p_gru), np.asarray(p_gbm)
    labels = np.asarray(labels)
    if not len(p_gru) == len(p_gbm) == len(labels):
        raise ValueError(
            f"blend: {len(p_gru)} GRU and {len(p_gbm)} LightGBM predictions for "
            f"{len(labels)} validation labels; each needs one per example"
        )
    if steps < 1:
        raise ValueError(f"blend: steps must be >= 1, got {steps}")
    gru_auc, gbm_auc = roc_auc(p_gru, labels), roc_auc(p_gbm, labels)
    if gru_auc is None or gbm_auc is None:
        raise ValueError("blend: the validation labels hold one class only; no ROC-AUC to fit")
    best: tuple[float, float, int] | None = None  # (auc, -|w - 0.5|, -space index)
    chosen = (1.0, SPACES[0])
    for s, space in enumerate(SPACES):
        for step in range(steps + 1):
            weight = step / steps
            auc = roc_auc(combine(p_gru, p_gbm, weight=weight, space=space), labels)
            key = (-math.inf if auc is None else auc, -abs(weight - 0.5), -s)
            if best is None or key > best:
                best, chosen = key, (weight, space)
    assert best is not None
    return BlendFit(
        weight=chosen[0],
        space=chosen[1],
        valid_auc=best[0],
        gru_valid_auc=gru_auc,
        gbm_valid_auc=gbm_auc,
    )


class BlendIntent:
    """A GRU ensemble and a LightGBM model whose probabilities are averaged (`combine`)."""

    def __init__(self, config: BlendConfig, gru: IntentEnsemble, gbm: GbmIntent) -> None:
        self.config = config
        self.gru = gru.eval()
        self.gbm = gbm

    @property
    def sizes(self) -> Sizes:
        return self.gru.sizes

    def predict(self, inputs: ModelInputs, *, p_gru: np.ndarray | None = None) -> np.ndarray:
        """P(purchase) for every prefix, (N,) float64; `p_gru`: the GRU half's already computed
        (the serving graph's), else the GRU runs here."""
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        return combine(
            predict_proba(self.gru, inputs) if p_gru is None else p_gru,
            self.gbm.predict(inputs),
            weight=self.config.weight,
            space=self.config.space,
        )

    @classmethod
    def from_bytes(cls, config: BlendConfig, blob: bytes, sizes: Sizes) -> BlendIntent:
        """From `pack`'s blob (the sweep's blend entry)."""
        with np.load(io.BytesIO(blob)) as arrays:
            gru_state, gbm_blob = arrays["gru"].tobytes(), arrays["gbm"].tobytes()
        gru = IntentEnsemble(IntentConfig.from_dict(config.gru), sizes)
        gru.load_state_dict(torch.load(io.BytesIO(gru_state), weights_only=True))
        return cls(config, gru, GbmIntent.from_bytes(GbmConfig.from_dict(config.gbm), gbm_blob))

    def save(self, folder: Path) -> None:
        """Both members in their bundle places: WEIGHTS_FILE and GBM_DIR."""
        torch.save(self.gru.state_dict(), folder / WEIGHTS_FILE)
        self.gbm.save(folder / GBM_DIR)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], sizes: dict[str, int]) -> BlendIntent:
        """A bundle's blend; raises OSError, ValueError, TypeError or RuntimeError when a member
        is missing or does not fit (the predictor turns them into a BundleError)."""
        blend = BlendConfig.from_dict(config)
        gru = IntentEnsemble(IntentConfig.from_dict(blend.gru), Sizes(**sizes))
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        gru.load_state_dict(state)
        gbm = GbmIntent.load(GbmConfig.from_dict(blend.gbm), folder / GBM_DIR)
        return cls(blend, gru, gbm)


def pack(gru_state: bytes, gbm_blob: bytes) -> bytes:
    """The members' artifacts (a GRU entry's state dict, a LightGBM entry's blob) as one blob."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        gru=np.frombuffer(gru_state, dtype=np.uint8),
        gbm=np.frombuffer(gbm_blob, dtype=np.uint8),
    )
    return buffer.getvalue()

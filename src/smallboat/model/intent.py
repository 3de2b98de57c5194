"""The purchase-intent model: per-event embeddings -> GRU encoder -> purchase-probability head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from smallboat.features import COUNT_FEATURES, FeatureSpec, ModelInputs, Vocabulary
from smallboat.features.encode import TOKEN_COLUMNS
from smallboat.features.spec import ACTIONS, MOVE_OTHER, N_STAGE_TOKENS, PRICE_NONE


@dataclass(frozen=True)
class IntentConfig:
    """Architecture and optimisation knobs; the grid of the training sweep varies some of them."""

    sku_dim: int = 32  # the prod2vec vector size: SKU embeddings start from those vectors
    action_dim: int = 8  # five actions need few dimensions
    gap_dim: int = 8  # ~22 time-gap buckets
    price_dim: int = 4  # ten price deciles
    category_dim: int = 8  # top-level categories: tens at most
    move_dim: int = 4  # same / other / unknown / n.a. category move
    stage_dim: int = 8  # ~20 funnel stages (events since the first add x cart state)
    # GRU width: 16, 32 and 64 scored alike on 500k synthetic sessions (bench/train_quality.py);
    # 32 trains fastest among them without losing AUC.
    hidden: int = 32
    dropout: float = 0.1  # on the encoder output; the data is large, little regularisation needed
    lr: float = 3e-3  # AdamW; GRUs of this size are stable at this rate with clipping
    weight_decay: float = 1e-3  # the model overfits after ~3 epochs on 20k training sessions
    batch_size: int = 512  # big enough for fast CPU steps, small enough for ~100 steps per epoch
    max_epochs: int = 30  # an upper bound: early stopping usually ends sooner
    patience: int = 3  # epochs without a validation-AUC gain before stopping
    lr_decay: float = 0.3  # multiply the rate by this after an epoch without a validation gain
    grad_clip: float = 1.0
    # Keep the prod2vec vectors fixed: trainable SKU embeddings memorise sessions (test AUC 0.82
    # vs 0.85 frozen on 100k synthetic sessions).
    freeze_sku: bool = True
    seed: int = 0  # member i trains from seed + i
    # Members trained from different seeds, their probabilities averaged: on 500k synthetic
    # sessions 5 members lift test ROC-AUC from 0.900 to 0.904 (the single model overfits after
    # ~3 epochs; averaging cancels much of that variance). Training time grows linearly.
    members: int = 5

    def __post_init__(self) -> None:
        at_least_one = ("members", "batch_size", "max_epochs", "patience", "hidden")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0.0 or not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(
                f"lr must be > 0 and lr_decay in (0, 1], got {self.lr}, {self.lr_decay}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntentConfig:
        return cls(**data)


@dataclass(frozen=True)
class Sizes:
    """Vocabulary sizes the embeddings need, fixed when the model is built."""

    n_sku: int
    n_category: int
    n_gap: int

    @classmethod
    def of(cls, vocab: Vocabulary, spec: FeatureSpec) -> Sizes:
        return cls(
            n_sku=vocab.n_sku_tokens, n_category=vocab.n_category_tokens, n_gap=spec.n_gap_tokens
        )


def token_tables(config: IntentConfig, sizes: Sizes) -> dict[str, tuple[int, int]]:
    """Each per-event token column's embedding table, (vocabulary size, dimension), in
    TOKEN_COLUMNS order: the one place the model lists the columns it embeds."""
    c = config
    tables = {
        "action": (len(ACTIONS) + 1, c.action_dim),
        "sku": (sizes.n_sku, c.sku_dim),
        "gap": (sizes.n_gap, c.gap_dim),
        "price": (PRICE_NONE + 11, c.price_dim),
        "category": (sizes.n_category, c.category_dim),
        "move": (MOVE_OTHER + 1, c.move_dim),
        "stage": (N_STAGE_TOKENS, c.stage_dim),
    }
    assert tuple(tables) == TOKEN_COLUMNS, f"tables {list(tables)} vs columns {TOKEN_COLUMNS}"
    return tables


class IntentModel(nn.Module):
    def __init__(
        self, config: IntentConfig, sizes: Sizes, sku_vectors: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.sizes = sizes
        c = config
        tables = token_tables(c, sizes)
        # One nn.Embedding per column, registered under the column's name (`self.sku`, ...: the
        # state_dict keys bundles are saved with) in column order (the order their weights are
        # drawn in); `embeddings` reaches them by name.
        self.embeddings: dict[str, nn.Embedding] = {}
        for name, (n, dim) in tables.items():
            self.embeddings[name] = nn.Embedding(n, dim, padding_idx=0)
            self.add_module(name, self.embeddings[name])
        sku = self.embeddings["sku"]
        if sku_vectors is not None:
            assert sku_vectors.shape == (sizes.n_sku, c.sku_dim), (
                f"prod2vec vectors {sku_vectors.shape} do not fit ({sizes.n_sku}, {c.sku_dim})"
            )
            with torch.no_grad():
                sku.weight.copy_(torch.from_numpy(sku_vectors.astype(np.float32)))
                sku.weight[0].zero_()
        sku.weight.requires_grad_(not c.freeze_sku)
        d_in = sum(dim for _, dim in tables.values())
        d_in += 1  # the exact log gap, beside its bucket's embedding
        self.encoder = nn.GRU(d_in, c.hidden, batch_first=True)
        self.counts = nn.Linear(len(COUNT_FEATURES), c.hidden)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Sequential(
            nn.Linear(2 * c.hidden, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 1)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of purchase, (B,)."""
        return self.head(self.encode(batch)).squeeze(-1)  # (B,)

    def probability(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(purchase), (B,)."""
        return torch.sigmoid(self(batch))

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The prefix as one vector, (B, 2H): the GRU's state after the last event beside the
        embedded prefix counts. What the heads read (the next-item model reuses it)."""
        embedded = [self.embeddings[name](batch[name]) for name in TOKEN_COLUMNS]  # (B, L, d_c)
        x = torch.cat([*embedded, batch["log_gap"].unsqueeze(-1)], dim=-1)  # (B, L, d_in)
        out, _ = self.encoder(x)  # (B, L, H)
        last = self.dropout(out[:, -1])  # (B, H): windows are left-padded, the last event is last
        counts = torch.relu(self.counts(torch.log1p(batch["counts"])))  # (B, H)
        return torch.cat([last, counts], dim=-1)  # (B, 2H)


PROB_CLAMP = 1e-7
"""An ensemble of two members or more clamps its mean probability to [PROB_CLAMP, 1 - PROB_CLAMP],
so it never states certainty; FusedIntent clamps the same way."""


class IntentEnsemble(nn.Module):
    """`config.members` IntentModels; P(purchase) is the mean of the members' probabilities."""

    def __init__(
        self, config: IntentConfig, sizes: Sizes, sku_vectors: np.ndarray | None = None
    ) -> None:
        super().__init__()
        assert config.members >= 1, f"members must be >= 1, got {config.members}"
        self.config = config
        self.sizes = sizes
        self.members = nn.ModuleList(
            IntentModel(config, sizes, sku_vectors) for _ in range(config.members)
        )

    @classmethod
    def of(cls, members: list[IntentModel]) -> IntentEnsemble:
        first = members[0]
        ensemble = cls(replace(first.config, members=len(members)), first.sizes)
        ensemble.members = nn.ModuleList(members)
        return ensemble

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(purchase), (B,): the mean of the members' probabilities. Unlike a member's, the
        output is a probability, since the members are averaged in probability space."""
        members = cast(list[IntentModel], list(self.members))
        if len(members) == 1:
            return members[0].probability(batch)
        prob = torch.stack([m.probability(batch) for m in members]).mean(dim=0)  # (B,)
        return prob.clamp(PROB_CLAMP, 1 - PROB_CLAMP)

    def probability(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(purchase), (B,): what `forward` gives."""
        prob: torch.Tensor = self(batch)
        return prob


def to_tensors(
    inputs: ModelInputs, rows: np.ndarray | slice | None = None
) -> dict[str, torch.Tensor]:
    """A batch of ModelInputs as tensors (token windows as int64, counts as float32)."""
    sel = slice(None) if rows is None else rows
    batch = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(inputs, name)[sel], dtype=np.int64))
        for name in TOKEN_COLUMNS
    }
    for name in ("log_gap", "counts"):
        batch[name] = torch.from_numpy(
            np.ascontiguousarray(getattr(inputs, name)[sel], dtype=np.float32)
        )
    return batch


@torch.no_grad()
def predict_proba(model: nn.Module, inputs: ModelInputs, *, batch_size: int = 4096) -> np.ndarray:
    """P(purchase) for every prefix, in input order, (N,) float64, of an IntentModel or an
    IntentEnsemble."""
    assert isinstance(model, IntentModel | IntentEnsemble), f"not an intent model: {model!r:.80}"
    model.eval()
    out = np.empty(len(inputs), dtype=np.float64)
    for start in range(0, len(inputs), batch_size):
        rows = slice(start, start + batch_size)
        out[rows] = model.probability(to_tensors(inputs, rows)).numpy()
    return out

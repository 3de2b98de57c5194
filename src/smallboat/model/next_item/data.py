"""Warehouse -> next-item examples as compact token arrays (TrainFlow's `next_item` step).

Reads `next_item_examples` and the prefix events of their sessions from `session_events`, and
tokenises them with the intent task's vocabulary and feature spec, so both heads read the same
`ModelInputs` (in serving, one encoding of a session feeds both). A target SKU outside the
training vocabulary keeps the token SKU_OOV: no model can rank it, and evaluation counts it as a
miss, so reported scores are what a shopper would see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from smallboat.config import Settings
from smallboat.features import EventTokens, FeatureSpec, ModelInputs, Vocabulary, tokenize, windows
from smallboat.features.spec import SKU_FIRST
from smallboat.model.prepare import (
    DataWindow,
    read_examples,
    split_rows,
    train_sku_counts,
)

log = logging.getLogger(__name__)


@dataclass
class NextItemExamples:
    """The next-item examples of one split, pointing into NextItemData.tokens."""

    session: np.ndarray  # (N,) int64 index into the tokens' sessions
    session_id: np.ndarray  # (N,) object: session_id_hash
    prefix_length: np.ndarray  # (N,) int32: events before the target
    n_prior: np.ndarray  # (N,) int32: detail views before the target
    target: np.ndarray  # (N,) int64: the target's SKU token (SKU_OOV outside the vocabulary)
    target_sku: np.ndarray | None = None  # (N,) object: the target's SKU hash (for the oracle)

    def __len__(self) -> int:
        return len(self.target)

    def take(self, rows: np.ndarray) -> NextItemExamples:
        return NextItemExamples(
            session=self.session[rows],
            session_id=self.session_id[rows],
            prefix_length=self.prefix_length[rows],
            n_prior=self.n_prior[rows],
            target=self.target[rows],
            target_sku=None if self.target_sku is None else self.target_sku[rows],
        )


@dataclass
class NextItemData:
    spec: FeatureSpec
    vocab: Vocabulary
    tokens: EventTokens
    popularity: np.ndarray  # (n_sku_tokens,) float64: training-split detail views per SKU token
    splits: dict[str, NextItemExamples] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        """Recommendable SKUs: the training vocabulary."""
        return int(self.vocab.n_sku_tokens - SKU_FIRST)

    def inputs(self, split: str, rows: np.ndarray | slice | None = None) -> ModelInputs:
        """Model inputs of a split's examples (all, or the given rows): built on demand, since
        (N, L) windows of every example would take far more memory than the tokens."""
        ex = self.splits[split]
        sel = slice(None) if rows is None else rows
        return windows(self.tokens, ex.session[sel], ex.prefix_length[sel], self.spec)

    def row_counts(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "examples": len(ex),
                "sessions": len(np.unique(ex.session)),
                "oov_target_rate": float((ex.target < SKU_FIRST).mean()) if len(ex) else 0.0,
            }
            for name, ex in self.splits.items()
        }


def prepare_next_item_data(
    settings: Settings,
    vocab: Vocabulary,
    spec: FeatureSpec,
    *,
    window: DataWindow | None = None,
) -> NextItemData:
    """Read the next-item examples and tokenise their sessions with the intent vocabulary."""
    from smallboat.warehouse.db import connect

    with connect(settings, read_only=True) as con:
        examples, table, session_ids = read_examples(
            con,
            "next_item_examples",
            "prefix_length, n_prior_details, target_sku_hash",
            order_by="detail_position",
            window=window,
            missing="sessions need two detail views or more; load data and run "
            "`smallboat transform`",
        )
        views = train_sku_counts(con, window, action="detail")

    data = NextItemData(
        spec=spec,
        vocab=vocab,
        tokens=tokenize(table, vocab, spec),
        popularity=sku_popularity(vocab, views.product_sku_hash.to_numpy(), views.n.to_numpy()),
    )
    target_skus = examples.column("target_sku_hash").to_numpy(zero_copy_only=False)
    targets = sku_tokens(vocab, target_skus)
    for name, sel, session, ids in split_rows(examples, session_ids):
        data.splits[name] = NextItemExamples(
            session=session,
            session_id=ids,
            prefix_length=examples.column("prefix_length").to_numpy()[sel].astype(np.int32),
            n_prior=examples.column("n_prior_details").to_numpy()[sel].astype(np.int32),
            target=targets[sel],
            target_sku=target_skus[sel],
        )
    log.info("prepared next-item examples %s", data.row_counts())
    return data


def sku_tokens(vocab: Vocabulary, skus: np.ndarray) -> np.ndarray:
    """The SKU token of each SKU hash (SKU_OOV outside the training vocabulary), int64."""
    from smallboat.features.spec import SKU_OOV

    row = vocab.lookup(np.asarray(skus, dtype=object))
    found = row >= 0
    out = np.full(len(row), SKU_OOV, dtype=np.int64)
    out[found] = vocab.sku_token[row[found]]
    return out


def sku_popularity(vocab: Vocabulary, skus: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Views per SKU token, (n_sku_tokens,) float64; special tokens and OOV SKUs get 0."""
    tokens = sku_tokens(vocab, skus)
    popularity = np.zeros(vocab.n_sku_tokens, dtype=np.float64)
    known = tokens >= SKU_FIRST
    np.add.at(popularity, tokens[known], np.asarray(counts, dtype=np.float64)[known])
    return popularity

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
import pandas as pd

from smallboat.config import Settings
from smallboat.errors import DataError
from smallboat.features import EventTokens, FeatureSpec, ModelInputs, Vocabulary, tokenize, windows
from smallboat.features.spec import SKU_FIRST
from smallboat.model.prepare import SPLITS, DataWindow, _event_table, prefix_events

log = logging.getLogger(__name__)


@dataclass
class NextItemExamples:
    """The next-item examples of one split, pointing into NextItemData.tokens."""

    session: np.ndarray  # (N,) int64 index into the tokens' sessions
    session_id: np.ndarray  # (N,) object: session_id_hash
    prefix_length: np.ndarray  # (N,) int32: events before the target
    n_prior: np.ndarray  # (N,) int32: detail views before the target
    target: np.ndarray  # (N,) int64: the target's SKU token (SKU_OOV outside the vocabulary)

    def __len__(self) -> int:
        return len(self.target)

    def take(self, rows: np.ndarray) -> NextItemExamples:
        return NextItemExamples(
            session=self.session[rows],
            session_id=self.session_id[rows],
            prefix_length=self.prefix_length[rows],
            n_prior=self.n_prior[rows],
            target=self.target[rows],
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

    where = (window or DataWindow()).sql("session_started_at_ms")
    with connect(settings, read_only=True) as con:
        examples = con.sql(
            f"""
            select session_id_hash, prefix_length, n_prior_details, target_sku_hash, split
            from next_item_examples
            where {where}
            order by session_id_hash, detail_position
            """
        ).to_arrow_table()
        if examples.num_rows == 0:
            raise DataError(
                "no next-item examples in the warehouse"
                + ("" if window is None else " inside the data window")
                + ": sessions need two detail views or more; load data and run "
                "`smallboat transform`"
            )
        events = prefix_events(con, "next_item_examples", where)
        views = con.sql(
            f"""
            select session_events.product_sku_hash, count(*) as n
            from session_events
            inner join sessions
                on sessions.session_id_hash = session_events.session_id_hash
            where sessions.split = 'train'
                and session_events.action = 'detail'
                and session_events.product_sku_hash is not null
                and {(window or DataWindow()).sql("sessions.started_at_ms")}
            group by session_events.product_sku_hash
            """
        ).to_df()

    table, session_ids = _event_table(events)
    data = NextItemData(
        spec=spec,
        vocab=vocab,
        tokens=tokenize(table, vocab, spec),
        popularity=sku_popularity(vocab, views.product_sku_hash.to_numpy(), views.n.to_numpy()),
    )
    position = pd.Index(session_ids)
    split_col = examples.column("split").to_numpy(zero_copy_only=False)
    ids = examples.column("session_id_hash").to_numpy(zero_copy_only=False)
    targets = sku_tokens(vocab, examples.column("target_sku_hash").to_numpy(zero_copy_only=False))
    for name in SPLITS:
        sel = split_col == name
        session = position.get_indexer(ids[sel])
        assert (session >= 0).all(), "every next-item example's session must have events"
        data.splits[name] = NextItemExamples(
            session=session.astype(np.int64),
            session_id=ids[sel],
            prefix_length=examples.column("prefix_length").to_numpy()[sel].astype(np.int32),
            n_prior=examples.column("n_prior_details").to_numpy()[sel].astype(np.int32),
            target=targets[sel],
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

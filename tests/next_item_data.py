"""In-memory next-item data with a planted signal, for model and serving tests (no warehouse).

Each session views SKUs one after another; with probability `follow` the next SKU is the
previous one's planted successor (a fixed random permutation), else a SKU drawn by popularity.
Examples are built as the warehouse's `next_item_examples` builds them: every detail view from
the second on is a target, the events before it the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from smallboat.features import FeatureSpec, event_table, fit_vocabulary, tokenize
from smallboat.model.next_item.data import (
    NextItemData,
    NextItemExamples,
    sku_popularity,
    sku_tokens,
)

SPEC = FeatureSpec(max_events=10)
BASE_MS = 1_600_000_000_000


def sku_name(i: int) -> str:
    return f"sku{i:03d}"


def planted_sessions(
    n_sessions: int, *, n_skus: int = 60, follow: float = 0.9, seed: int = 0
) -> tuple[list[list[tuple[str, str | None, int]]], dict[str, str]]:
    """Collapsed sessions (action, sku, timestamp_ms) and each SKU's planted successor."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(n_skus)
    popularity = 1.0 / np.arange(1, n_skus + 1)
    popularity /= popularity.sum()
    sessions = []
    for s in range(n_sessions):
        t = BASE_MS + s * 3_600_000
        sku = int(rng.choice(n_skus, p=popularity))
        events: list[tuple[str, str | None, int]] = []
        for _ in range(int(rng.integers(2, 7))):
            if rng.random() < 0.2:  # a plain page between two product views
                t += int(rng.integers(1_000, 60_000))
                events.append(("pageview", None, t))
            t += int(rng.integers(1_000, 60_000))
            events.append(("detail", sku_name(sku), t))
            nxt = successor[sku] if rng.random() < follow else rng.choice(n_skus, p=popularity)
            sku = int(nxt)
        sessions.append(events)
    return sessions, {sku_name(i): sku_name(int(successor[i])) for i in range(n_skus)}


def catalog(n_skus: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_sku_hash": [sku_name(i) for i in range(n_skus)],
            "category_hash": [f"top{i % 2}/leaf{i % 6}" for i in range(n_skus)],
            "price_bucket": [1 + i % 10 for i in range(n_skus)],
        }
    )


def planted_data(n_sessions: int = 3_000, *, seed: int = 0, **kwargs: Any) -> NextItemData:
    """Sessions split 70/15/15 in time order, vocabulary and popularity from the train split."""
    sessions, _ = planted_sessions(n_sessions, seed=seed, **kwargs)
    n_train, n_valid = int(0.7 * n_sessions), int(0.15 * n_sessions)
    split = np.array(["train"] * n_train + ["valid"] * n_valid)
    split = np.concatenate([split, ["test"] * (n_sessions - len(split))])
    train_skus = [e[1] for s, sp in zip(sessions, split, strict=True) if sp == "train" for e in s]
    counts = pd.Series([s for s in train_skus if s is not None]).value_counts()
    vocab = fit_vocabulary(counts.to_dict(), catalog(), SPEC)
    table = event_table(sessions)
    data = NextItemData(
        spec=SPEC,
        vocab=vocab,
        tokens=tokenize(table, vocab, SPEC),
        popularity=sku_popularity(vocab, counts.index.to_numpy(), counts.to_numpy()),
    )
    rows: dict[str, list[tuple[int, int, int, str]]] = {"train": [], "valid": [], "test": []}
    for i, events in enumerate(sessions):
        views = [j for j, e in enumerate(events) if e[0] == "detail"]
        for prior, j in enumerate(views[1:], start=1):
            rows[str(split[i])].append((i, j, prior, str(events[j][1])))
    for name, examples in rows.items():
        session, prefix, n_prior, target = zip(*examples, strict=True)
        data.splits[name] = NextItemExamples(
            session=np.array(session, dtype=np.int64),
            session_id=np.array([f"s{i}" for i in session], dtype=object),
            prefix_length=np.array(prefix, dtype=np.int32),
            n_prior=np.array(n_prior, dtype=np.int32),
            target=sku_tokens(vocab, np.array(target, dtype=object)),
        )
    return data

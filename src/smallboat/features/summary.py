"""A prefix's summary: the few numbers monitoring watches, from the model's own inputs.

Serving logs one summary per prediction (the prediction log); training stores the summaries of its
held-out test examples in the bundle as the drift reference. Both come from `summarize` on
`ModelInputs`, which training and serving already build with the same code, so the reference and
the live figures cannot disagree by construction (a skew between them is real drift).

`drift_frame` turns summaries (raw counts) into the columns the drift checks compare: session
length, duration, the action mix as shares, the out-of-vocabulary share, the last product's price
decile and top category, and the prediction itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from smallboat.features.encode import ModelInputs
from smallboat.features.spec import (
    CATEGORY_FIRST,
    COUNT_FEATURES,
    COUNTED_ACTIONS,
    PRICE_NONE,
    SKU_OOV,
)
from smallboat.features.vocab import Vocabulary

UNKNOWN = "unknown"
"""Price or category of a last product event the catalog does not describe (or no product)."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    *COUNT_FEATURES,
    "events_used",
    "oov_skus",
    "sku_events",
    "last_price",
    "last_category",
)
"""What `summarize` returns per prefix (columns of the prediction log's landing table too)."""

DRIFT_NUMERICAL: tuple[str, ...] = (
    "n_events",
    "duration_s",
    "share_pageview",
    "share_detail",
    "share_add",
    "share_remove",
    "oov_share",
    "probability",
)
DRIFT_CATEGORICAL: tuple[str, ...] = ("last_price", "last_category")

SMALL_SUMMARY_ROWS = 8
"""Up to this many prefixes, `summary_rows` reads the summaries off the inputs in Python."""
_PRICE_NAMES = (UNKNOWN, UNKNOWN, *(str(d) for d in range(1, 11)))
"""Name of each price token (PAD and PRICE_NONE: UNKNOWN; 2..11: deciles "1".."10")."""
_INT_COUNTS = ("n_events", "n_pageview", "n_detail", "n_add", "n_remove")
_COUNT_INDEX = {name: k for k, name in enumerate(COUNT_FEATURES)}


def summarize(inputs: ModelInputs, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Per prefix: whole-prefix counts and duration, window SKU/OOV counts, last product's price
    decile ("1".."10") and top category (UNKNOWN when the catalog has none)."""
    counts = inputs.counts
    out: dict[str, np.ndarray] = {
        name: counts[:, COUNT_FEATURES.index(name)].astype(np.int64) for name in _INT_COUNTS
    }
    out["duration_s"] = counts[:, COUNT_FEATURES.index("duration_s")].astype(np.float64)
    out["events_used"] = np.asarray(inputs.events_used, dtype=np.int64)
    out["oov_skus"] = np.asarray(inputs.oov_skus, dtype=np.int64)
    has_product = inputs.sku >= SKU_OOV  # (N, L): a SKU event (known or not), not padding
    out["sku_events"] = has_product.sum(axis=1).astype(np.int64)
    width = inputs.sku.shape[1]
    # The last product column of each row: the first hit scanning from the right.
    last = width - 1 - np.argmax(has_product[:, ::-1], axis=1)
    any_product = has_product.any(axis=1)
    rows = np.arange(len(inputs))
    price = np.where(any_product, inputs.price[rows, last], PRICE_NONE)
    category = np.where(any_product, inputs.category[rows, last], 0)
    price_names = np.array(_PRICE_NAMES, dtype=object)
    out["last_price"] = price_names[np.clip(price, 0, len(price_names) - 1)]
    category_names = np.array([UNKNOWN] * CATEGORY_FIRST + list(vocab.top_categories), dtype=object)
    out["last_category"] = category_names[np.clip(category, 0, len(category_names) - 1)]
    return out


def summary_rows(inputs: ModelInputs, vocab: Vocabulary) -> list[dict[str, Any]]:
    """`summarize`'s values as one dict of Python values per prefix (what the prediction log's
    JSON takes). A few prefixes are read off the inputs in Python: `summarize`'s ~30 NumPy
    calls cost ~0.05 ms whatever the batch, a serving request's row ~0.01 ms this way; the
    values are the same (tests/unit/test_small_batch.py compares them)."""
    if len(inputs) > SMALL_SUMMARY_ROWS:
        columns = {name: values.tolist() for name, values in summarize(inputs, vocab).items()}
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    categories = [UNKNOWN] * CATEGORY_FIRST + list(vocab.top_categories)
    top_price, top_category = len(_PRICE_NAMES) - 1, len(categories) - 1
    rows = []
    for counts, skus, prices, tops, used, oov in zip(
        inputs.counts.tolist(),
        inputs.sku.tolist(),
        inputs.price.tolist(),
        inputs.category.tolist(),
        inputs.events_used.tolist(),
        inputs.oov_skus.tolist(),
        strict=True,
    ):
        row: dict[str, Any] = {name: int(counts[_COUNT_INDEX[name]]) for name in _INT_COUNTS}
        row["duration_s"] = counts[_COUNT_INDEX["duration_s"]]
        row["events_used"] = int(used)
        row["oov_skus"] = int(oov)
        products = [j for j, sku in enumerate(skus) if sku >= SKU_OOV]  # not padding, a SKU
        row["sku_events"] = len(products)
        last = products[-1] if products else None
        price, category = (PRICE_NONE, 0) if last is None else (prices[last], tops[last])
        row["last_price"] = _PRICE_NAMES[min(max(price, 0), top_price)]
        row["last_category"] = categories[min(max(category, 0), top_category)]
        rows.append(row)
    return rows


def events_after_first_add(collapsed: Sequence[tuple[str, str | None, int]]) -> int | None:
    """Events after the first add of a collapsed prefix (the intent task's k); None without one."""
    for i, (action, _, _) in enumerate(collapsed):
        if action == "add":
            return len(collapsed) - 1 - i
    return None


def drift_frame(summaries: pd.DataFrame | Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The drift checks' columns (DRIFT_NUMERICAL + DRIFT_CATEGORICAL) from summary columns plus
    `probability`."""
    frame = pd.DataFrame(summaries) if not isinstance(summaries, pd.DataFrame) else summaries
    n = frame["n_events"].astype(np.float64).clip(lower=1.0)
    sku_events = frame["sku_events"].astype(np.float64)
    out = pd.DataFrame(
        {
            "n_events": frame["n_events"].astype(np.float64),
            "duration_s": frame["duration_s"].astype(np.float64),
            **{
                f"share_{action}": frame[f"n_{action}"].astype(np.float64) / n
                for action in COUNTED_ACTIONS
            },
            "oov_share": np.where(
                sku_events > 0, frame["oov_skus"].astype(np.float64) / sku_events.clip(lower=1), 0.0
            ),
            "probability": frame["probability"].astype(np.float64),
            "last_price": frame["last_price"].astype(str),
            "last_category": frame["last_category"].astype(str),
        }
    )
    return out.reset_index(drop=True)

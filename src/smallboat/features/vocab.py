"""Vocabularies fitted on the training split, and the SKU attributes the tokens are looked up in.

SKU ids come from the training split only (a SKU first seen in validation, test or live traffic
gets the out-of-vocabulary id). Price and category come from the catalog, which is shop metadata
known in advance, not behaviour, so every catalogued SKU has them whichever split it shows up in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smallboat.features.spec import (
    CATEGORY_FIRST,
    CATEGORY_NONE,
    PRICE_NONE,
    SKU_FIRST,
    SKU_OOV,
    FeatureSpec,
)

VOCAB_FILE = "vocabulary.parquet"
_SMALL_LOOKUP = 512  # up to this many SKUs, `Vocabulary.lookup` uses a dict
CATEGORIES_FILE = "categories.json"


@dataclass
class Vocabulary:
    """Token lookups for SKUs. `skus` holds every SKU with a known attribute or a trained id."""

    skus: pd.Index  # (V,) SKU hashes, unique
    sku_token: np.ndarray  # (V,) int32: SKU_FIRST.. for training-vocabulary SKUs, else SKU_OOV
    price_token: np.ndarray  # (V,) int8: PRICE_NONE or 2..11
    category_token: np.ndarray  # (V,) int16: top-level category token
    leaf_code: np.ndarray  # (V,) int32: leaf category code, -1 when unknown
    top_categories: list[str]  # token CATEGORY_FIRST + i

    @property
    def n_sku_tokens(self) -> int:
        return int(self.sku_token.max(initial=SKU_OOV)) + 1

    @property
    def n_category_tokens(self) -> int:
        return CATEGORY_FIRST + len(self.top_categories)

    def trained_skus(self) -> list[str]:
        """The training-vocabulary SKUs in token order (token SKU_FIRST + i)."""
        known = self.sku_token >= SKU_FIRST
        order = np.argsort(self.sku_token[known], kind="stable")
        return [str(s) for s in np.asarray(self.skus)[known][order]]

    def lookup(self, skus: np.ndarray) -> np.ndarray:
        """Row of each SKU in this vocabulary, -1 when absent (None counts as absent)."""
        if len(skus) <= _SMALL_LOOKUP:
            rows = self._rows
            return np.fromiter((rows.get(s, -1) for s in skus), dtype=np.int64, count=len(skus))
        return np.asarray(self.skus.get_indexer(pd.Index(skus, dtype=object)), dtype=np.int64)

    @cached_property
    def _rows(self) -> dict[str, int]:
        """SKU -> row, for small lookups: a serving request's 20 SKUs cost ~5 us in a dict
        against ~160 us of building a pandas Index (which wins from thousands of SKUs on)."""
        return {str(sku): row for row, sku in enumerate(self.skus)}

    @cached_property
    def sku_attributes(self) -> dict[str, tuple[int, int, int, int]]:
        """SKU -> (sku token, price token, category token, leaf code), as Python ints: what
        `features.small_batch` reads per event (a dict hit, where NumPy scalars cost ~0.1 us
        each). Built once per loaded vocabulary (serving builds it at load)."""
        return dict(
            zip(
                (str(sku) for sku in self.skus),
                zip(
                    self.sku_token.tolist(),
                    self.price_token.tolist(),
                    self.category_token.tolist(),
                    self.leaf_code.tolist(),
                    strict=True,
                ),
                strict=True,
            )
        )

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "product_sku_hash": pa.array(np.asarray(self.skus, dtype=object), pa.string()),
                "sku_token": self.sku_token,
                "price_token": self.price_token,
                "category_token": self.category_token,
                "leaf_code": self.leaf_code,
            }
        )
        pq.write_table(table, folder / VOCAB_FILE, compression="zstd")
        (folder / CATEGORIES_FILE).write_text(json.dumps(self.top_categories))

    @classmethod
    def load(cls, folder: Path) -> Vocabulary:
        table = pq.read_table(folder / VOCAB_FILE)
        return cls(
            skus=pd.Index(table.column("product_sku_hash").to_pylist(), dtype=object),
            sku_token=table.column("sku_token").to_numpy().astype(np.int32),
            price_token=table.column("price_token").to_numpy().astype(np.int8),
            category_token=table.column("category_token").to_numpy().astype(np.int16),
            leaf_code=table.column("leaf_code").to_numpy().astype(np.int32),
            top_categories=list(json.loads((folder / CATEGORIES_FILE).read_text())),
        )


def fit_vocabulary(
    train_sku_counts: Mapping[str, int],
    sku_attributes: pd.DataFrame,
    spec: FeatureSpec,
) -> Vocabulary:
    """Fit token tables.

    `train_sku_counts`: events per SKU in the training split; a SKU gets its own id when it has at
    least `spec.min_sku_count`, most frequent first (ties by hash, so the fit is deterministic).
    `sku_attributes`: one row per SKU with `product_sku_hash`, `category_hash` ('/'-separated path,
    may be null) and `price_bucket` (1..10, may be null).
    """
    kept = [(str(s), int(c)) for s, c in train_sku_counts.items() if c >= spec.min_sku_count]
    ordered = sorted(kept, key=lambda kv: (-kv[1], kv[0]))
    trained = [str(sku) for sku, _ in ordered]

    attrs = sku_attributes.drop_duplicates("product_sku_hash").set_index("product_sku_hash")
    all_skus = pd.Index(sorted(set(attrs.index.astype(str)) | set(trained)), dtype=object)
    attrs = attrs.reindex(all_skus)

    sku_token = np.full(len(all_skus), SKU_OOV, dtype=np.int32)
    sku_token[all_skus.get_indexer(pd.Index(trained, dtype=object))] = np.arange(
        SKU_FIRST, SKU_FIRST + len(trained), dtype=np.int32
    )

    price = pd.to_numeric(attrs["price_bucket"], errors="coerce").astype("float64").to_numpy()
    price_ok = (price >= 1) & (price <= 10)
    price_token = np.full(len(all_skus), PRICE_NONE, dtype=np.int8)
    price_token[price_ok] = (price[price_ok] + 1).astype(np.int8)

    leaf = attrs["category_hash"].where(attrs["category_hash"].notna(), None)
    leaf = leaf.map(lambda c: c if isinstance(c, str) and c else None)
    leaf_codes, _ = pd.factorize(leaf, use_na_sentinel=True)
    top = leaf.map(lambda c: c.split("/")[0] if c else None)
    top_categories = sorted({t for t in top if t})
    top_index = pd.Index(top_categories, dtype=object)
    top_pos = top_index.get_indexer(pd.Index(top.to_numpy(), dtype=object))
    category_token = np.where(top_pos >= 0, top_pos + CATEGORY_FIRST, CATEGORY_NONE)

    return Vocabulary(
        skus=all_skus,
        sku_token=sku_token,
        price_token=price_token,
        category_token=category_token.astype(np.int16),
        leaf_code=np.asarray(leaf_codes, dtype=np.int32),
        top_categories=top_categories,
    )

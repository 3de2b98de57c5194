"""REES46 "eCommerce behavior data from multi category store" CSV -> browsing events and a catalog.

Mapping (/work/shared/data/README.md): user_session -> session_id_hash; event_type view -> detail,
cart -> add, remove_from_cart -> remove, purchase -> purchase (all `event_product` rows); product_id
-> product_sku_hash; event_time "2019-10-01 00:00:00 UTC" -> epoch ms; hashed_url NULL.

The catalog has one row per product: category_hash is category_code with '.' turned into '/'
(category_id when the code is empty), price_bucket is the decile 1..10 of the product's last seen
price among the file's distinct priced products. Deciles need every price, so the catalog comes out
after the last event batch; until then only one row per product is kept (memory grows with the
number of products, not of rows). A price of 0 means "no price" in this data: its bucket is NULL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smallboat import schema
from smallboat.data.sources import parse
from smallboat.data.sources.base import (
    Problems,
    ReadStats,
    RowChecks,
    files_with_suffix,
    make_batch,
)
from smallboat.data.sources.csvstream import CsvStream
from smallboat.schema import Table

ACTIONS: dict[str, str] = {
    "view": "detail",
    "cart": "add",
    "remove_from_cart": "remove",
    "purchase": "purchase",
}
"""REES46 event_type -> canonical product_action."""

REQUIRED_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "price",
    "user_session",
)
"""Columns the mapping reads (brand and user_id may be present; they are not used)."""

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

_COMPACT_ROWS = 1 << 20
"""Merge the per-batch product rows once this many have piled up (bounds memory by #products)."""


_PRODUCTS = pa.schema([("sku", pa.string()), ("category", pa.string()), ("price", pa.float64())])


class _CatalogBuilder:
    """One row per product (its last category and price), kept in Arrow, merged vectorised."""

    def __init__(self) -> None:
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._floor = _COMPACT_ROWS

    def add(self, skus: pa.Array, categories: pa.Array, prices: pa.Array) -> None:
        self._parts.append(pa.table([skus, categories, prices], schema=_PRODUCTS))
        self._rows += len(skus)
        if self._rows >= self._floor:
            merged = self._merged()
            self._parts, self._rows = [merged], merged.num_rows
            self._floor = max(_COMPACT_ROWS, 2 * merged.num_rows)

    def _merged(self) -> pa.Table:
        if not self._parts:
            return _PRODUCTS.empty_table()
        # use_threads=False keeps input order, so "last" is the latest row of each product;
        # "last" skips NULLs: a product keeps its last known category and price.
        grouped = (
            pa.concat_tables(self._parts)
            .group_by("sku", use_threads=False)
            .aggregate([("category", "last"), ("price", "last")])
        )
        return grouped.rename_columns(["sku", "category", "price"])

    def finish(self) -> pa.RecordBatch:
        """The catalog batch, with price deciles over the distinct priced products."""
        products = self._merged()
        prices = products.column("price").to_numpy(zero_copy_only=False)
        priced = np.nan_to_num(prices.astype(np.float64), nan=0.0) > 0
        buckets = np.zeros(len(prices), dtype=np.int8)
        if priced.any():
            ranks = pc.rank(
                pa.array(prices[priced]), sort_keys="ascending", tiebreaker="min"
            ).to_numpy()
            buckets[priced] = (ranks - 1) * 10 // priced.sum() + 1
        bucket_array = pa.array(buckets, type=pa.int8(), mask=~priced)
        nulls = pa.nulls(products.num_rows, pa.list_(pa.float32()))
        arrays = [
            products.column("sku").combine_chunks(),
            nulls,
            products.column("category").combine_chunks(),
            nulls,
            bucket_array,
        ]
        return make_batch(schema.CATALOG, arrays, None)


def _events(raw: pa.RecordBatch, checks: RowChecks) -> tuple[list[pa.Array], pa.Array]:
    """Check one batch of REES46 rows and convert them: (canonical event columns, prices)."""
    text = raw.column("event_time")
    checks.flag("event_time", pc.is_null(text), "is empty; every event needs a time")
    times = pc.strptime(text, format=TIME_FORMAT, unit="ms", error_is_null=True)
    checks.flag(
        "event_time",
        pc.and_(pc.is_valid(text), pc.is_null(times)),
        "is not a time like '2019-10-01 00:00:00 UTC'",
    )
    index = pc.index_in(raw.column("event_type"), value_set=pa.array(list(ACTIONS)))
    checks.flag("event_type", pc.is_null(index), f"is not one of {', '.join(ACTIONS)}")
    sku = raw.column("product_id")
    checks.flag("product_id", pc.is_null(sku), "is empty; every event needs a product")
    price, bad_price = parse.parse_float64(raw.column("price"))
    negative = pc.fill_null(pc.less(price, 0), False)
    checks.flag("price", pc.or_(bad_price, negative), "is not a non-negative number")
    session = raw.column("user_session")
    checks.flag("user_session", pc.is_null(session), "is empty; every event needs a session")
    n = raw.num_rows
    events = [
        session,
        pa.repeat(pa.scalar("event_product"), n),
        pc.take(pa.array(list(ACTIONS.values())), index),
        sku,
        pc.cast(times, pa.int64()),
        pa.nulls(n, pa.string()),
    ]
    return events, price


class Rees46Source:
    """REES46 monthly CSVs (e.g. 2019-Oct.csv): browsing events plus a derived catalog."""

    name = "rees46"

    def files_in(self, folder: Path) -> list[Path]:
        """Every .csv file in `folder`, by name."""
        return files_with_suffix(folder, ".csv", "REES46")

    def tables(self, path: Path) -> tuple[Table, ...]:
        """Events, then the catalog derived from them."""
        return (schema.BROWSING_EVENTS, schema.CATALOG)

    def read(
        self, path: Path, *, problems: Problems, stats: ReadStats, block_size: int
    ) -> Iterator[tuple[Table, pa.RecordBatch]]:
        """Stream events batch by batch; the catalog comes last."""
        stream = CsvStream(path, required=REQUIRED_COLUMNS, block_size=block_size, stats=stats)
        catalog = _CatalogBuilder()
        for batch in stream.batches():
            checks = batch.checks()
            events, price = _events(batch.data, checks)
            problems.report_all(batch.structural, checks.problems())
            keep = checks.keep()
            yield schema.BROWSING_EVENTS, make_batch(schema.BROWSING_EVENTS, events, keep)

            code = batch.data.column("category_code")
            category = pc.if_else(
                pc.is_valid(code),
                pc.replace_substring(code, ".", "/"),
                batch.data.column("category_id"),
            )
            sku = batch.data.column("product_id")
            if keep is not None:
                sku, category, price = (pc.filter(a, keep) for a in (sku, category, price))
            catalog.add(sku, category, price)
        problems.report_all(stream.trailing())
        yield schema.CATALOG, catalog.finish()

"""Hand-made landing data for warehouse tests: sessions written in a compact notation.

A session is a start time and a string of *moments* separated by spaces; each moment is one or
more items joined by '+' that share a timestamp, and moments are `step_ms` apart:

    pv      a plain pageview
    d:SKU   a product page as Coveo logs it: a `detail` event AND a `pageview` at the same
            millisecond (the warehouse collapses the pair into one event)
    v:SKU   a `detail` event alone (as the REES46 and OTTO adapters produce)
    a:SKU   add to cart      r:SKU   remove from cart      p:SKU   purchase

So `"pv d:A a:A+p:A"` is 5 landed rows and 4 collapsed events: pageview, detail A, add A,
purchase A (add and purchase at the same millisecond).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from smallboat import schema
from smallboat.config import Settings

BASE_MS = 1_600_000_000_000
STEP_MS = 60_000
_ACTIONS = {"v": "detail", "a": "add", "r": "remove", "p": "purchase"}


@dataclass(frozen=True)
class SessionSpec:
    """One session: its id, its first moment's timestamp and its moments (see module docstring)."""

    session_id: str
    start_ms: int
    moments: str
    step_ms: int = STEP_MS

    def timestamp_of_moment(self, position: int) -> int:
        """Timestamp of the 1-based `position`-th moment."""
        return self.start_ms + (position - 1) * self.step_ms


def browsing_row(
    session_id: str,
    ts: int,
    action: str | None = None,
    sku: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """One canonical browsing row: a plain pageview when `action` is None, else an
    `event_product`."""
    return {
        "session_id_hash": session_id,
        "event_type": "pageview" if action is None else "event_product",
        "product_action": action,
        "product_sku_hash": sku,
        "server_timestamp_epoch_ms": ts,
        "hashed_url": url,
    }


def browsing_rows(spec: SessionSpec) -> list[dict[str, Any]]:
    """The canonical browsing rows a session logs, in time order."""
    rows: list[dict[str, Any]] = []
    for position, moment in enumerate(spec.moments.split(), start=1):
        ts = spec.timestamp_of_moment(position)
        for item in moment.split("+"):
            rows.extend(_item_rows(spec.session_id, ts, item))
    return rows


def _item_rows(session_id: str, ts: int, item: str) -> list[dict[str, Any]]:
    if item == "pv":
        return [browsing_row(session_id, ts, url=f"url-{session_id}-{ts}")]
    code, _, sku = item.partition(":")
    if not sku:
        raise ValueError(f"item {item!r}: expected pv or <d|v|a|r|p>:<sku>")
    if code == "d":
        url = f"url-product-{sku}"
        return [
            browsing_row(session_id, ts, "detail", sku, url),
            browsing_row(session_id, ts, url=url),
        ]
    if code not in _ACTIONS:
        raise ValueError(f"item {item!r}: unknown code {code!r}; expected one of pv, d, v, a, r, p")
    return [browsing_row(session_id, ts, _ACTIONS[code], sku, f"url-{code}-{sku}")]


def browsing_table(
    specs: Iterable[SessionSpec],
    *,
    shuffle_seed: int | None = 0,
    extra_rows: Iterable[dict[str, Any]] = (),
) -> pa.Table:
    """All sessions' rows as one canonical table, shuffled by default (landed rows are unsorted)."""
    rows = [r for spec in specs for r in browsing_rows(spec)]
    rows += list(extra_rows)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    return pa.Table.from_pylist(rows, schema=schema.BROWSING_EVENTS.arrow_schema)


def catalog_table(rows: Iterable[tuple[str, str | None, int | None, bool]]) -> pa.Table:
    """Catalog rows from (sku, category_hash, price_bucket, has_vectors) tuples."""
    vector = [0.5] * schema.VECTOR_DIM
    records = [
        {
            "product_sku_hash": sku,
            "description_vector": vector if has_vectors else None,
            "category_hash": category,
            "image_vector": vector if has_vectors else None,
            "price_bucket": price,
        }
        for sku, category, price, has_vectors in rows
    ]
    return pa.Table.from_pylist(records, schema=schema.CATALOG.arrow_schema)


def write_landing(settings: Settings, table: str, data: pa.Table, name: str = "part-0") -> Path:
    """Write `data` as `<home>/landing/<table>/<name>.parquet`, as the loader would."""
    folder = settings.table_landing_dir(table)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    pq.write_table(data, path)
    return path

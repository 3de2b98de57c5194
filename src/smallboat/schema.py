"""The canonical tables: the one source of truth for their columns, types and allowed values.

The canonical form is the Coveo SIGIR eCom 2021 Data Challenge schema with proper types:
empty text becomes NULL, vectors become lists of float32, SKU lists become lists of strings and
`price_bucket` becomes a small integer. Adapters, the landing files, the dbt sources and the
feature code all derive their columns from the tables below.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = ("pageview", "event_product")
PRODUCT_ACTIONS: tuple[str, ...] = ("detail", "add", "remove", "purchase")
"""Actions of `event_product` rows; a plain pageview has a NULL product_action."""


def product_columns_problem(
    event_type: str, product_action: str | None, product_sku_hash: str | None
) -> str | None:
    """What is wrong with a browsing event's product columns, or None: a pageview has neither a
    product action nor a SKU, an `event_product` has both."""
    if event_type == "pageview" and (product_action is not None or product_sku_hash is not None):
        return "is a pageview: product_action and product_sku_hash must be null"
    if event_type == "event_product" and (product_action is None or product_sku_hash is None):
        return "is an event_product: product_action and product_sku_hash are required"
    return None


SESSION_GAP_MS = 30 * 60 * 1000
"""A session ends after 30 minutes of inactivity, as in the Coveo data."""

VECTOR_DIM = 50
"""Length of query, description and image vectors in the Coveo release."""

PRICE_BUCKETS: tuple[int, ...] = tuple(range(1, 11))
"""Price deciles 1..10 (NULL when the catalog has no price)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    grain: str
    columns: tuple[Column, ...]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name} has no column {name!r}; it has {self.column_names}")

    def empty(self) -> pa.Table:
        return self.arrow_schema.empty_table()


_vector = pa.list_(pa.float32())
_skus = pa.list_(pa.string())

BROWSING_EVENTS = Table(
    name="browsing_events",
    grain="one row per logged browsing event (a product page may log a detail AND a pageview)",
    columns=(
        Column("session_id_hash", pa.string(), False, "session id (hashed)"),
        Column("event_type", pa.string(), False, "pageview | event_product"),
        Column(
            "product_action",
            pa.string(),
            True,
            "detail | add | remove | purchase; NULL for a plain pageview",
        ),
        Column("product_sku_hash", pa.string(), True, "SKU (hashed); NULL for a plain pageview"),
        Column("server_timestamp_epoch_ms", pa.int64(), False, "event time, epoch milliseconds"),
        Column("hashed_url", pa.string(), True, "page URL (hashed)"),
    ),
)

SEARCH_EVENTS = Table(
    name="search_events",
    grain="one row per search query",
    columns=(
        Column("session_id_hash", pa.string(), False, "session id (hashed)"),
        Column("query_vector", _vector, True, "dense query embedding, 50 floats"),
        Column("clicked_skus_hash", _skus, True, "SKUs clicked in the results"),
        Column("product_skus_hash", _skus, True, "SKUs shown in the results"),
        Column("server_timestamp_epoch_ms", pa.int64(), False, "query time, epoch milliseconds"),
    ),
)

CATALOG = Table(
    name="catalog",
    grain="one row per SKU and load (the warehouse keeps the latest per SKU)",
    columns=(
        Column("product_sku_hash", pa.string(), False, "SKU (hashed)"),
        Column("description_vector", _vector, True, "dense description embedding, 50 floats"),
        Column("category_hash", pa.string(), True, "'/'-separated hashed category path"),
        Column("image_vector", _vector, True, "dense image embedding, 50 floats"),
        Column("price_bucket", pa.int8(), True, "price decile 1..10"),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (BROWSING_EVENTS, SEARCH_EVENTS, CATALOG)}

PREDICTIONS = Table(
    name="predictions",
    grain="one row per prediction the service made (its prediction log, landed like events)",
    columns=(
        Column("prediction_id", pa.string(), False, "unique id of the prediction"),
        Column("request_id", pa.string(), False, "the HTTP request (X-Request-ID or generated)"),
        Column("route", pa.string(), False, "route template that answered, e.g. /v1/predict"),
        Column("replica", pa.string(), False, "the serving process (host-port) that answered"),
        Column("session_id_hash", pa.string(), True, "session id, when the caller gave one"),
        Column("predicted_at_ms", pa.int64(), False, "server clock at the answer, epoch ms"),
        Column("event_time_ms", pa.int64(), True, "time of the prefix's last event, epoch ms"),
        Column("model_version", pa.string(), False, "the model version that answered"),
        Column("purchase_probability", pa.float64(), True, "NULL: nothing to predict from"),
        Column("latency_ms", pa.float64(), False, "request start to answer, milliseconds"),
        Column("n_events", pa.int32(), False, "collapsed events of the prefix"),
        Column("n_pageview", pa.int32(), False, "pageviews in the prefix"),
        Column("n_detail", pa.int32(), False, "details in the prefix"),
        Column("n_add", pa.int32(), False, "adds in the prefix"),
        Column("n_remove", pa.int32(), False, "removes in the prefix"),
        Column("duration_s", pa.float64(), False, "first to last event of the prefix, seconds"),
        Column(
            "events_after_add",
            pa.int32(),
            True,
            "events after the first add (the intent task's k); NULL without an add",
        ),
        Column("events_used", pa.int32(), False, "events inside the model's window"),
        Column("oov_skus", pa.int32(), False, "out-of-vocabulary SKU events in the window"),
        Column("sku_events", pa.int32(), False, "events with a SKU in the window"),
        Column("last_price", pa.string(), False, "price decile of the last product event"),
        Column("last_category", pa.string(), False, "top category of the last product event"),
    ),
)
"""The prediction log's landing table: written by the service, read by monitoring."""

LANDING_TABLES: dict[str, Table] = {**TABLES, PREDICTIONS.name: PREDICTIONS}
"""Every table dbt reads from landing/: the canonical data and the prediction log."""

COVEO_FILES: dict[str, str] = {
    "browsing_events": "browsing_train.csv",
    "search_events": "search_train.csv",
    "catalog": "sku_to_content.csv",
}
"""File name of each canonical table in the Coveo release (and in `smallboat data synth` output)."""

ORACLE_FILE = "oracle_intent.parquet"
"""Beside the synthetic Coveo CSVs: the true P(purchase | prefix) per (session, k)."""

NEXT_ITEM_ORACLE_FILE = "oracle_next_item.parquet"
"""Beside it: the Bayes-optimal top-20 next SKUs per next-item example (session, prefix_length)."""

INTENT_PREDICTION_POINTS: tuple[int, ...] = (0, 2, 4, 6, 8, 10)
"""Events after the first add at which the intent task predicts (DESIGN.md section 4)."""

INTENT_BUCKET_WEIGHTS: dict[int, float] = {0: 1.0, 2: 0.9, 4: 0.8, 6: 0.7, 8: 0.6, 10: 0.5}
"""The Data Challenge's weight of each prediction point in its score (max 4.5)."""

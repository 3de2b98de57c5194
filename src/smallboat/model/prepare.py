"""Warehouse -> compact training arrays for the intent task (TrainFlow's `prepare` step).

Reads `intent_examples`, the prefix events of their sessions from `session_events`, the SKU
attributes from `sku_features` and training-split SKU counts; fits the vocabulary on the training
split only; tokenises every event once with `smallboat.features`. The result is a few NumPy
arrays (a few bytes per event), small enough to travel as a Metaflow artifact, so no step assumes
a local path another step wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from smallboat.config import Settings
from smallboat.errors import DataError
from smallboat.features import (
    EventTable,
    EventTokens,
    FeatureSpec,
    ModelInputs,
    Vocabulary,
    fit_vocabulary,
    tokenize,
    windows,
)

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class DataWindow:
    """Sessions that started in [start, end) (UTC dates; None = unbounded)."""

    start: date | None = None
    end: date | None = None

    def sql(self, column: str) -> str:
        parts = ["true"]
        if self.start is not None:
            parts.append(f"{column} >= {_epoch_ms(self.start)}")
        if self.end is not None:
            parts.append(f"{column} < {_epoch_ms(self.end)}")
        return " and ".join(parts)

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> DataWindow:
        def one(text: str | None, name: str) -> date | None:
            if not text:
                return None
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise DataError(f"{name} {text!r} is not a date like 2019-01-31") from None

        return cls(one(start, "window start"), one(end, "window end"))


def _epoch_ms(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=UTC).timestamp() * 1000)


@dataclass
class ExampleSet:
    """The intent examples of one split, pointing into IntentData.tokens."""

    session: np.ndarray  # (N,) int64 index into tokens' sessions
    session_id: np.ndarray  # (N,) object: session_id_hash (to join the oracle)
    k: np.ndarray  # (N,) int8 prediction point
    prefix_length: np.ndarray  # (N,) int32
    label: np.ndarray  # (N,) int8

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class IntentData:
    spec: FeatureSpec
    vocab: Vocabulary
    tokens: EventTokens
    splits: dict[str, ExampleSet] = field(default_factory=dict)
    test_events: EventTable | None = None  # raw collapsed events of the test sessions
    test_examples: ExampleSet | None = None  # the test split, pointing into test_events

    def inputs(self, split: str) -> tuple[ModelInputs, np.ndarray]:
        ex = self.splits[split]
        return windows(self.tokens, ex.session, ex.prefix_length, self.spec), ex.label

    def row_counts(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "examples": len(ex),
                "sessions": len(np.unique(ex.session)),
                "positive_rate": float(ex.label.mean()) if len(ex) else float("nan"),
            }
            for name, ex in self.splits.items()
        }


def prepare_intent_data(
    settings: Settings, spec: FeatureSpec, *, window: DataWindow | None = None
) -> IntentData:
    """Read the warehouse and build the tokenised training data (vocabulary fit on train).

    The live warehouse is always one whole build (`warehouse/db.py`); a newer build that is
    running, was interrupted or failed beside it is logged as a warning, never mixed in. It is
    the warehouse of the target `settings.dbt_target` names: DuckDB's file, or on Spark the live
    build's Parquet marts (read through DuckDB's read_parquet), giving the same arrays."""
    from smallboat.warehouse.db import build_warnings, connect

    with connect(settings, read_only=True) as con:
        for line in build_warnings(settings, con):
            log.warning("training on the last complete warehouse: %s", line)
        examples, table, session_ids = read_examples(
            con,
            "intent_examples",
            "k, prefix_length, label",
            order_by="k",
            window=window,
            missing="load data with add-to-cart sessions and run `smallboat transform`",
        )
        counts = train_sku_counts(con, window)
        attributes = con.sql(
            "select product_sku_hash, category_hash, price_bucket from sku_features"
        ).to_df()

    vocab = fit_vocabulary(
        dict(zip(counts.product_sku_hash, counts.n, strict=True)), attributes, spec
    )
    tokens = tokenize(table, vocab, spec)
    data = IntentData(spec=spec, vocab=vocab, tokens=tokens)
    for name, sel, session, ids in split_rows(examples, session_ids):
        data.splits[name] = ExampleSet(
            session=session,
            session_id=ids,
            k=examples.column("k").to_numpy()[sel].astype(np.int8),
            prefix_length=examples.column("prefix_length").to_numpy()[sel].astype(np.int32),
            label=examples.column("label").to_numpy()[sel].astype(np.int8),
        )
    for name, ex in data.splits.items():
        if len(np.unique(ex.label)) < 2:
            raise DataError(
                f"the {name} split has {len(ex)} intent example(s), all with label "
                f"{int(ex.label[0]) if len(ex) else 'none'}: a model cannot be trained and scored "
                "without both outcomes in every split; load more sessions"
            )
    data.test_events, data.test_examples = _subset(table, data.splits["test"])
    log.info("prepared %s", data.row_counts())
    return data


def read_examples(
    con: Any, table: str, columns: str, *, order_by: str, window: DataWindow | None, missing: str
) -> tuple[pa.Table, EventTable, np.ndarray]:
    """An examples table's rows inside the window (session_id_hash, `columns`, split; ordered by
    session, then `order_by`), the collapsed events their prefixes need (`prefix_events`) and
    those events' session ids in order. No rows is a DataError whose fix is `missing`."""
    where = (window or DataWindow()).sql("session_started_at_ms")
    examples = con.sql(
        f"""
        select session_id_hash, {columns}, split
        from {table}
        where {where}
        order by session_id_hash, {order_by}
        """
    ).to_arrow_table()
    if examples.num_rows == 0:
        task = table.removesuffix("_examples").replace("_", "-")
        raise DataError(
            f"no {task} examples in the warehouse"
            + ("" if window is None else " inside the data window")
            + f": {missing}"
        )
    events, session_ids = _event_table(prefix_events(con, table, where))
    return examples, events, session_ids


def split_rows(
    examples: pa.Table, session_ids: np.ndarray
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per split (train, valid, test): which rows of `examples` it holds (a boolean mask), their
    sessions as int64 positions in `session_ids` (the event table's order) and their session ids."""
    position = pd.Index(session_ids)
    split_col = examples.column("split").to_numpy(zero_copy_only=False)
    ids = examples.column("session_id_hash").to_numpy(zero_copy_only=False)
    for name in SPLITS:
        sel = split_col == name
        session = position.get_indexer(ids[sel])
        assert (session >= 0).all(), f"every {name} example's session must have events"
        yield name, sel, session.astype(np.int64), ids[sel]


def prefix_events(con: Any, examples: str, where: str) -> pa.Table:
    """The collapsed events an examples table's prefixes need (each session up to its longest
    prefix), in session and event order: the rows both tasks tokenise."""
    return con.sql(
        f"""
        with needed as (
            select session_id_hash, max(prefix_length) as max_prefix_length
            from {examples}
            where {where}
            group by session_id_hash
        )
        select
            session_events.session_id_hash,
            session_events.action,
            session_events.product_sku_hash,
            session_events.server_timestamp_epoch_ms
        from session_events
        inner join needed
            on needed.session_id_hash = session_events.session_id_hash
        where session_events.event_index <= needed.max_prefix_length
        order by session_events.session_id_hash, session_events.event_index
        """
    ).to_arrow_table()


def _subset(table: EventTable, examples: ExampleSet) -> tuple[EventTable, ExampleSet]:
    """The events of the sessions `examples` use, and the examples re-pointed at them.

    Kept untokenised, so a model with another vocabulary (the champion) can be scored on exactly
    these test examples, and so serving can be checked against the flow's offline predictions.
    """
    used, remap = np.unique(examples.session, return_inverse=True)
    starts, ends = table.offsets[used], table.offsets[used + 1]
    pieces = [np.arange(a, b) for a, b in zip(starts, ends, strict=True)]
    rows = np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)
    sub = EventTable(
        offsets=np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64),
        actions=table.actions[rows],
        skus=table.skus[rows],
        timestamps_ms=table.timestamps_ms[rows],
    )
    return sub, replace(examples, session=remap.astype(np.int64))


def train_sku_counts(con: Any, window: DataWindow | None, *, action: str | None = None) -> Any:
    """Training-split product events per SKU inside the window (of one action, or all), a
    DataFrame (product_sku_hash, n): the SKU vocabulary is fit on all, next-item popularity
    counts details."""
    return con.sql(
        f"""
        select session_events.product_sku_hash, count(*) as n
        {_train_product_events(window, action=action)}
        group by session_events.product_sku_hash
        """
    ).to_df()


def _train_product_events(window: DataWindow | None, *, action: str | None = None) -> str:
    """FROM/WHERE of the training split's product events inside the window (of one action, or
    all): what SKUs are counted on and prod2vec is trained on."""
    only = "" if action is None else f"\n                and session_events.action = '{action}'"
    return f"""
            from session_events
            inner join sessions
                on sessions.session_id_hash = session_events.session_id_hash
            where sessions.split = 'train'{only}
                and session_events.product_sku_hash is not null
                and {(window or DataWindow()).sql("sessions.started_at_ms")}"""


def _event_table(events: pa.Table) -> tuple[EventTable, np.ndarray]:
    """Flat events (sorted by session, event_index) -> EventTable and the session ids in order."""
    sessions = events.column("session_id_hash").to_numpy(zero_copy_only=False)
    n = len(sessions)
    if n:
        change = np.flatnonzero(sessions[1:] != sessions[:-1]) + 1
        starts = np.concatenate([[0], change])
    else:
        starts = np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([starts, [n]]).astype(np.int64)
    table = EventTable(
        offsets=offsets,
        actions=events.column("action").to_numpy(zero_copy_only=False),
        skus=events.column("product_sku_hash").to_numpy(zero_copy_only=False),
        timestamps_ms=events.column("server_timestamp_epoch_ms").to_numpy(),
    )
    return table, sessions[starts]


def train_sku_sequences(
    settings: Settings, *, window: DataWindow | None = None, min_length: int = 2
) -> list[list[str]]:
    """Each training-split session's SKUs in order (product events only), for prod2vec, sessions
    in a fixed order: a parallel GROUP BY returns groups in any order, and Word2Vec's vectors
    depend on the order of its sentences, so two runs on the same data could differ."""
    from smallboat.warehouse.db import connect

    with connect(settings, read_only=True) as con:
        rows = con.sql(
            f"""
            select list(session_events.product_sku_hash order by session_events.event_index) as skus
            {_train_product_events(window)}
            group by session_events.session_id_hash
            having count(*) >= {int(min_length)}
            order by session_events.session_id_hash
            """
        ).to_arrow_table()
    sequences: list[list[str]] = rows.column("skus").to_pylist()
    return sequences

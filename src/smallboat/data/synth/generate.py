"""`smallboat data synth`: a Coveo-format dataset at any scale, with the exact purchase oracle.

Writes `browsing_train.csv`, `search_train.csv` and `sku_to_content.csv` with the release's columns
and text formats (unsorted rows, detail+pageview pairs, vectors and lists as text, empty fields,
price buckets like `7.0`), plus `oracle_intent.parquet`: for every (session, k) of the intent task,
the true P(purchase | prefix) under the generating model (see `dynamics`), and
`oracle_next_item.parquet`: for every example of the next-item task, the Bayes-optimal top-20 next
SKUs given the prefix (see `next_view`). Sessions are simulated and written in batches, so memory
stays bounded whatever the number of sessions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table as RichTable

from smallboat.data.synth import dynamics as dy
from smallboat.data.synth import release
from smallboat.data.synth.catalog import (
    Catalog,
    build_catalog,
    catalog_size,
    catalog_table,
    hex_ids,
    vector_text,
)
from smallboat.data.synth.next_view import TOP_K, NextViewRanker
from smallboat.data.synth.simulate import Batch, simulate_batch
from smallboat.errors import SmallboatError
from smallboat.metrics.intent import challenge_score  # the one definition; tests import it here
from smallboat.schema import COVEO_FILES, NEXT_ITEM_ORACLE_FILE, ORACLE_FILE, VECTOR_DIM

RELEASE_START_MS = 1_547_510_400_000  # 2019-01-15 00:00 UTC
RELEASE_DAYS = 90
BATCH_SESSIONS = 50_000
SEARCH_SESSION_SHARE = release.SEARCH_SESSIONS / release.SESSIONS
SEARCH_ROWS_PER_SESSION = release.SEARCH_ROWS / release.SEARCH_SESSIONS
SEARCH_CLICK_SHARE = release.SEARCH_ROWS_WITH_CLICKS / release.SEARCH_ROWS

ORACLE_SCHEMA = pa.schema(
    [
        pa.field("session_id_hash", pa.string(), nullable=False),
        pa.field("k", pa.int8(), nullable=False),
        pa.field("prefix_length", pa.int32(), nullable=False),
        pa.field("p_purchase", pa.float64(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
    ]
)

NEXT_ITEM_ORACLE_SCHEMA = pa.schema(
    [
        pa.field("session_id_hash", pa.string(), nullable=False),
        pa.field("prefix_length", pa.int32(), nullable=False),
        pa.field("p_stay", pa.float64(), nullable=False),
        pa.field("skus", pa.list_(pa.dictionary(pa.int32(), pa.string())), nullable=False),
        pa.field("probs", pa.list_(pa.float64()), nullable=False),
    ]
)
"""One row per next-item example (joins `next_item_examples` on session_id_hash, prefix_length):
the next SKU's most probable values, best first (up to 20), and their probabilities."""

_ROWS, _CATALOG = release.BROWSING_ROWS, release.CATALOG_ROWS
TARGETS: dict[str, float] = {
    "share of sessions with an add": release.SESSIONS_WITH_ADD / release.SESSIONS,
    "share of sessions with a purchase": release.SESSIONS_WITH_PURCHASE / release.SESSIONS,
    "session length median": release.SESSION_LENGTH_MEDIAN,
    "session length p90": release.SESSION_LENGTH_P90,
    "session length p95": release.SESSION_LENGTH_P95,
    "session length max": release.SESSION_LENGTH_MAX,
    "pageview share of rows": release.PAGEVIEWS / _ROWS,
    "detail share of rows": release.DETAILS / _ROWS,
    "add share of rows": release.ADDS / _ROWS,
    "remove share of rows": release.REMOVES / _ROWS,
    "purchase share of rows": release.PURCHASES / _ROWS,
    "rows per session": _ROWS / release.SESSIONS,
    "share of sessions with a search": SEARCH_SESSION_SHARE,
    "search rows per searching session": SEARCH_ROWS_PER_SESSION,
    "share of search rows with clicks": SEARCH_CLICK_SHARE,
    "catalog share with description": release.CATALOG_WITH_DESCRIPTION / _CATALOG,
    "catalog share with image": release.CATALOG_WITH_IMAGE / _CATALOG,
    "catalog share with no price": release.CATALOG_WITH_NO_PRICE / _CATALOG,
    "share of catalog seen in browsing": release.SKUS_SEEN / _CATALOG,
}
"""The release's figures (DESIGN.md section 3), printed beside the generated ones."""


@dataclass(frozen=True)
class SynthConfig:
    sessions: int
    seed: int = 0
    dynamics: dy.Dynamics = field(default_factory=dy.Dynamics)


@dataclass
class SynthReport:
    out: Path
    seconds: float
    figures: dict[str, float]
    counts: dict[str, int]
    oracle: dict[str, float]

    def render(self) -> RichTable:
        table = RichTable(title=f"synthetic dataset in {self.out} ({self.seconds:.1f} s)")
        table.add_column("figure")
        table.add_column("generated", justify="right")
        table.add_column("release (target)", justify="right")
        for name, count in self.counts.items():
            table.add_row(name, f"{count:,}", "")
        for name, figure in self.figures.items():
            target = TARGETS.get(name)
            table.add_row(name, _fmt(figure), "" if target is None else _fmt(target))
        for name, figure in self.oracle.items():
            table.add_row(name, _fmt(figure), "")
        return table


def _fmt(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}"


class _Stats:
    """Running figures over the batches (bounded memory: histograms and counters)."""

    def __init__(self, n_skus: int) -> None:
        self.length_hist = np.zeros(1024, np.int64)
        self.actions = np.zeros(5, np.int64)
        self.rows = 0
        self.sessions = 0
        self.with_add = 0
        self.with_purchase = 0
        self.search_rows = 0
        self.search_sessions = 0
        self.search_clicks = 0
        self.sku_seen = np.zeros(n_skus, bool)
        self.capped = 0
        self.oracle_p: list[np.ndarray] = []
        self.oracle_k: list[np.ndarray] = []
        self.oracle_y: list[np.ndarray] = []

    def add(self, batch: Batch, n_search: int, n_search_sessions: int, n_clicks: int) -> None:
        ev = batch.events
        n = len(batch.start_ms)
        lengths = np.bincount(ev.session, minlength=n)
        self.length_hist += np.bincount(np.minimum(lengths, 1023), minlength=1024)
        self.actions += np.bincount(ev.action, minlength=5)[:5]
        self.rows += len(ev.session)
        self.sessions += n
        self.with_add += int(np.unique(ev.session[ev.action == dy.ADD]).size)
        self.with_purchase += int(batch.purchased.sum())
        self.search_rows += n_search
        self.search_sessions += n_search_sessions
        self.search_clicks += n_clicks
        self.sku_seen[ev.sku[ev.sku >= 0]] = True
        self.capped += batch.capped
        # Keep a bounded sample of oracle rows for the summary figures.
        if sum(len(p) for p in self.oracle_p) < 2_000_000:
            self.oracle_p.append(batch.oracle.p_purchase)
            self.oracle_k.append(batch.oracle.k)
            self.oracle_y.append(batch.purchased[batch.oracle.session])

    def quantile(self, q: float) -> int:
        cum = np.cumsum(self.length_hist)
        return int(np.searchsorted(cum, q * cum[-1]))

    def figures(self, cat: Catalog) -> dict[str, float]:
        per = lambda x: float(x) / max(self.rows, 1)  # noqa: E731
        return {
            "share of sessions with an add": self.with_add / self.sessions,
            "share of sessions with a purchase": self.with_purchase / self.sessions,
            "session length median": self.quantile(0.5),
            "session length p90": self.quantile(0.9),
            "session length p95": self.quantile(0.95),
            "session length max": int(np.flatnonzero(self.length_hist)[-1]),
            "pageview share of rows": per(self.actions[dy.PAGEVIEW]),
            "detail share of rows": per(self.actions[dy.DETAIL]),
            "add share of rows": per(self.actions[dy.ADD]),
            "remove share of rows": per(self.actions[dy.REMOVE]),
            "purchase share of rows": per(self.actions[dy.PURCHASE]),
            "rows per session": self.rows / self.sessions,
            "share of sessions with a search": self.search_sessions / self.sessions,
            "search rows per searching session": self.search_rows / max(self.search_sessions, 1),
            "share of search rows with clicks": self.search_clicks / max(self.search_rows, 1),
            "catalog share with description": float(cat.has_description.mean()),
            "catalog share with image": float(cat.has_image.mean()),
            "catalog share with no price": float(1 - cat.price_observed.mean()),
            "share of catalog seen in browsing": float(self.sku_seen.mean()),
        }

    def oracle_figures(self) -> dict[str, float]:
        if not self.oracle_p:
            return {}
        p, k, y = (np.concatenate(x) for x in (self.oracle_p, self.oracle_k, self.oracle_y))
        if len(p) == 0:
            return {}
        score = challenge_score(p, y, k)
        majority = challenge_score(np.full(len(y), float(y.mean() >= 0.5)), y, k)
        return {
            "intent examples (sample)": len(p),
            "intent positive rate": float(y.mean()),
            "oracle Challenge score (max 4.5)": score,
            "majority-class Challenge score": majority,
            "shopper sessions capped at the length limit": self.capped,
        }


def synthesize(config: SynthConfig, out: Path, *, progress: bool = False) -> SynthReport:
    """Write the three Coveo-format CSVs and the oracle file for `config.sessions` sessions."""
    t0 = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SmallboatError(f"cannot create output folder {out}: {exc.strerror}") from None
    root = np.random.SeedSequence(config.seed)
    cat_seed, page_seed, *batch_seeds = root.spawn(2 + -(-config.sessions // BATCH_SESSIONS))
    cat_rng = np.random.default_rng(cat_seed)
    cat = build_catalog(cat_rng, catalog_size(config.sessions))
    n_pages = max(1_000, cat.size * 3)
    pages = hex_ids(np.random.default_rng(page_seed), n_pages)
    stats = _Stats(cat.size)

    files = (*COVEO_FILES.values(), ORACLE_FILE, NEXT_ITEM_ORACLE_FILE)
    tmp = {name: out / f".{name}.tmp" for name in files}
    # Browsing values never hold a comma, so they are written bare as in the release; search and
    # catalog rows hold vectors and lists, so their text values are quoted.
    browsing = _csv_writer(tmp[COVEO_FILES["browsing_events"]], _BROWSING_SCHEMA, quoting="none")
    search = _csv_writer(tmp[COVEO_FILES["search_events"]], _SEARCH_SCHEMA, quoting="needed")
    oracle = pq.ParquetWriter(tmp[ORACLE_FILE], ORACLE_SCHEMA)
    next_oracle = pq.ParquetWriter(tmp[NEXT_ITEM_ORACLE_FILE], NEXT_ITEM_ORACLE_SCHEMA)
    ranker = NextViewRanker(cat, TOP_K)
    bar = Progress(
        TextColumn("synth"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} sessions"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    )
    try:
        with bar:
            task = bar.add_task("synth", total=config.sessions)
            for i, seed in enumerate(batch_seeds):
                rng = np.random.default_rng(seed)
                n = min(BATCH_SESSIONS, config.sessions - i * BATCH_SESSIONS)
                start = RELEASE_START_MS + rng.integers(0, RELEASE_DAYS * 86_400_000, n)
                batch = simulate_batch(rng, config.dynamics, cat, start, n_pages, ranker)
                session_ids = hex_ids(rng, n)
                browsing.write_table(_browsing_table(rng, batch, cat, pages, session_ids))
                search_table, n_search_sessions, n_clicks = _search_table(
                    rng, batch, cat, session_ids
                )
                search.write_table(search_table)
                oracle.write_table(_oracle_table(batch, session_ids))
                next_oracle.write_table(_next_item_oracle_table(batch, cat, session_ids))
                stats.add(batch, search_table.num_rows, n_search_sessions, n_clicks)
                bar.advance(task, n)
        browsing.close()
        search.close()
        oracle.close()
        next_oracle.close()
        catalog = catalog_table(cat_rng, cat)
        with _csv_writer(tmp[COVEO_FILES["catalog"]], catalog.schema, quoting="needed") as writer:
            writer.write_table(catalog)
        for name, path in tmp.items():
            os.replace(path, out / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    counts = {
        "sessions": stats.sessions,
        "browsing rows": stats.rows,
        "search rows": stats.search_rows,
        "catalog rows": cat.size,
    }
    return SynthReport(
        out=out,
        seconds=time.perf_counter() - t0,
        figures=stats.figures(cat),
        counts=counts,
        oracle=stats.oracle_figures(),
    )


def _csv_writer(path: Path, schema: pa.Schema, *, quoting: str) -> pacsv.CSVWriter:
    """A CSV writer with a bare header line, as in the release."""
    sink = pa.OSFile(str(path), "wb")
    sink.write((",".join(schema.names) + "\n").encode())
    options = pacsv.WriteOptions(include_header=False, quoting_style=quoting)
    return pacsv.CSVWriter(sink, schema, write_options=options)


_BROWSING_SCHEMA = pa.schema(
    [
        ("session_id_hash", pa.string()),
        ("event_type", pa.string()),
        ("product_action", pa.string()),
        ("product_sku_hash", pa.string()),
        ("server_timestamp_epoch_ms", pa.int64()),
        ("hashed_url", pa.string()),
    ]
)
_SEARCH_SCHEMA = pa.schema(
    [
        ("session_id_hash", pa.string()),
        ("query_vector", pa.string()),
        ("clicked_skus_hash", pa.string()),
        ("product_skus_hash", pa.string()),
        ("server_timestamp_epoch_ms", pa.int64()),
    ]
)
_ACTION_TEXT = pa.array([None, "detail", "add", "remove", "purchase"], pa.string())
_EVENT_TYPE_TEXT = pa.array(["pageview", "event_product"], pa.string())


def _browsing_table(
    rng: np.random.Generator, batch: Batch, cat: Catalog, pages: pa.Array, session_ids: pa.Array
) -> pa.Table:
    """browsing_train.csv rows of a batch, shuffled (the release's rows are not sorted)."""
    ev = batch.events
    order = rng.permutation(len(ev.session))
    action = ev.action[order]
    sku = ev.sku[order]
    page = ev.page[order]
    is_product = action != dy.PAGEVIEW
    sku_text = cat.sku_hash.take(pa.array(np.maximum(sku, 0)))
    url = pc.if_else(
        pa.array(page >= 0),
        pages.take(pa.array(np.maximum(page, 0))),
        cat.sku_url.take(pa.array(np.maximum(sku, 0))),
    )
    return pa.table(
        {
            "session_id_hash": session_ids.take(pa.array(ev.session[order])),
            "event_type": _EVENT_TYPE_TEXT.take(pa.array(is_product.astype(np.int64))),
            "product_action": _ACTION_TEXT.take(pa.array(action)),
            "product_sku_hash": pc.if_else(
                pa.array(is_product), sku_text, pa.scalar(None, pa.string())
            ),
            "server_timestamp_epoch_ms": pa.array(ev.ts[order]),
            "hashed_url": url,
        },
        schema=_BROWSING_SCHEMA,
    )


def _search_table(
    rng: np.random.Generator, batch: Batch, cat: Catalog, session_ids: pa.Array
) -> tuple[pa.Table, int, int]:
    """search_train.csv rows: ~11% of sessions search, results come from one category."""
    n = len(batch.start_ms)
    searching = np.flatnonzero(rng.random(n) < SEARCH_SESSION_SHARE)
    per = rng.geometric(1 / SEARCH_ROWS_PER_SESSION, len(searching))
    session = np.repeat(searching, per)
    m = len(session)
    span = np.maximum(batch.end_ms[session] - batch.start_ms[session], 1)
    ts = batch.start_ms[session] + (rng.random(m) * span).astype(np.int64)
    leaf = np.minimum(
        np.searchsorted(
            cat.leaf_popularity_cum, rng.random(m) * cat.leaf_popularity_cum[-1], "right"
        ),
        cat.n_leaves - 1,
    )
    query = cat.centroid[leaf] + rng.normal(0.0, 0.5, (m, VECTOR_DIM))
    shown = np.stack([cat.sample_in_leaf(rng, leaf) for _ in range(10)], axis=1)  # (m, 10)
    clicks = rng.random(m) < SEARCH_CLICK_SHARE
    n_click = np.where(clicks, rng.integers(1, 3, m), 0)
    return (
        pa.table(
            {
                "session_id_hash": session_ids.take(pa.array(session)),
                "query_vector": vector_text(query, rng.random(m) >= 0.01),
                "clicked_skus_hash": _nullify_empty(_sku_list_text(cat, shown, n_click)),
                "product_skus_hash": _sku_list_text(cat, shown, np.full(m, 10)),
                "server_timestamp_epoch_ms": pa.array(ts),
            },
            schema=_SEARCH_SCHEMA,
        ),
        len(searching),
        int(clicks.sum()),
    )


def _sku_list_text(cat: Catalog, skus: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Python-list text like "['h1', 'h2']" of the first `lengths[i]` SKUs of each row."""
    keep = np.arange(skus.shape[1])[None, :] < lengths[:, None]
    flat = cat.sku_hash.take(pa.array(skus[keep]))
    quoted = pc.binary_join_element_wise("'", flat, "'", "")
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, quoted), ", ")
    text = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(pa.array(lengths > 0), text, "")


def _nullify_empty(arr: pa.Array) -> pa.Array:
    """Empty text is written as an empty field (no quotes), as in the release."""
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def _oracle_table(batch: Batch, session_ids: pa.Array) -> pa.Table:
    o = batch.oracle
    return pa.table(
        {
            "session_id_hash": session_ids.take(pa.array(o.session)),
            "k": pa.array(o.k.astype(np.int8)),
            "prefix_length": pa.array(o.prefix_length.astype(np.int32)),
            "p_purchase": pa.array(o.p_purchase.astype(np.float64)),
            "label": pa.array(batch.purchased[o.session].astype(np.int8)),
        },
        schema=ORACLE_SCHEMA,
    )


def _next_item_oracle_table(batch: Batch, cat: Catalog, session_ids: pa.Array) -> pa.Table:
    v = batch.next_views
    ranked = v.top >= 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(ranked.sum(axis=1))]).astype(np.int32))
    skus = pa.DictionaryArray.from_arrays(pa.array(v.top[ranked].astype(np.int32)), cat.sku_hash)
    return pa.table(
        {
            "session_id_hash": session_ids.take(pa.array(v.session)),
            "prefix_length": pa.array(v.prefix_length.astype(np.int32)),
            "p_stay": pa.array(v.p_stay.astype(np.float64)),
            "skus": pa.ListArray.from_arrays(offsets, skus),
            "probs": pa.ListArray.from_arrays(offsets, pa.array(v.top_p[ranked])),
        },
        schema=NEXT_ITEM_ORACLE_SCHEMA,
    )

"""Training and serving see the same numbers: the warehouse path against the Python path.

A small synthetic dataset, plus hand-made sessions with the awkward parts of real logs (exact
duplicates, same-millisecond ties, a purchase sharing its millisecond with other events, a purchase
first, NULL URLs) and a few hundred random sessions dense in all of those, is landed unsorted and
transformed by the real dbt project on a real DuckDB file. Then:

1. for every session, `collapse_session` of its raw landed rows equals the warehouse's
   `session_events` rows before the first purchase;
2. for every intent example, the model inputs built the training way (`prepare_intent_data`: flat
   arrays read from the warehouse) equal those built the serving way (`encode_sessions` on the raw
   rows a server would have received by the end of the prefix), every column exactly, the float
   `log_gap` included;
3. the funnel stage and log_gap of two hand-made sessions are the hand-computed ones on both paths.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from smallboat import schema
from smallboat.config import Settings
from smallboat.data.synth.generate import RELEASE_START_MS
from smallboat.features import (
    FeatureSpec,
    ModelInputs,
    collapse_session,
    encode_sessions,
    event_table,
    fit_vocabulary,
    tokenize,
    windows,
)
from smallboat.features.spec import SKU_OOV
from smallboat.model.prepare import SPLITS, prepare_intent_data
from smallboat.warehouse.db import connect
from smallboat.warehouse.transform import run_transform
from tests.landing_data import SessionSpec, browsing_row, browsing_rows, write_landing
from tests.synthetic_home import synthetic_home

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000
Row = dict[str, Any]
Event = tuple[str, str | None, int]

# Hand-made sessions in the notation of tests/landing_data.py; K1..K3 become frequent synthetic
# SKUs (trained ids), X a SKU of that session's split only (out of vocabulary outside train).
TRICKY: dict[str, str] = {
    # same-millisecond ties of every kind, and long enough for k = 10 and a truncated window
    "ties": "pv d:K1 a:K1+r:K2+pv d:K2+a:K2 pv pv d:K3+v:K1 a:K3" + " pv" * 12,
    # an unknown SKU, and a purchase late enough for every prediction point
    "oov": "pv d:K1 a:X pv d:X pv pv pv pv pv pv pv pv pv pv pv p:K1 pv",
    # the purchase shares its millisecond with a pageview, an add and a remove: they stay
    "purchase_tie": "d:K1 a:K1 pv a:K2+p:K2+r:K1+pv pv d:K3",
    # a purchase first: nothing before it, no example
    "purchase_first": "p:K1 a:K1 pv",
    # adds at one moment with several SKUs and a pageview of another URL
    "many_adds": "pv a:K3+a:K1+a:K2+pv d:K1 pv r:K1 pv d:K2 pv pv pv",
}
TRICKY_DAYS = (3, 78, 89)  # early (train), late (valid) and last (test) in the 90 synthetic days


def tricky_rows(skus: dict[str, str]) -> list[Row]:
    """Raw rows of the tricky sessions, with duplicates and NULL URLs added, in no order."""
    rng = random.Random(7)
    rows: list[Row] = []
    for day in TRICKY_DAYS:
        for name, moments in TRICKY.items():
            for code, sku in skus.items():
                moments = moments.replace(f":{code}", f":{sku}")
            moments = moments.replace(":X", f":never-seen-{day}")  # in one split only
            start = RELEASE_START_MS + day * DAY_MS + rng.randrange(DAY_MS // 2)
            spec = SessionSpec(f"tricky-{name}-{day}", start, moments, step_ms=rng.choice([1, 700]))
            session = browsing_rows(spec)
            for row in rng.sample(session, k=min(3, len(session))):
                row["hashed_url"] = None  # NULL URLs take part in the tie-break
            session += [dict(r) for r in rng.sample(session, k=min(4, len(session)))]  # duplicates
            rows += session
    rng.shuffle(rows)
    return rows


FUZZ_SESSIONS = 300


def fuzz_rows(skus: list[str], n: int = FUZZ_SESSIONS) -> list[Row]:
    """Random sessions, denser in ties, duplicates, NULLs and purchases than any real log."""
    rng = random.Random(11)
    rows: list[Row] = []
    for i in range(n):
        session_id = f"fuzz-{i:03d}"
        ts = RELEASE_START_MS + rng.randrange(90 * DAY_MS)
        session: list[Row] = []
        for _ in range(rng.randint(1, 30)):
            ts += rng.choice([0, 0, 1, 500, 3_000, 60_000])
            url = rng.choice([None, "u-a", "u-b", f"u-{rng.randrange(100)}"])
            if rng.random() < 0.35:
                session.append(browsing_row(session_id, ts, url=url))
                continue
            action = rng.choices(["detail", "add", "remove", "purchase"], [10, 4, 3, 1])[0]
            sku = rng.choice([*skus, None, f"fuzz-sku-{rng.randrange(50)}"])
            session.append(browsing_row(session_id, ts, action, sku, url))
            if action == "detail" and rng.random() < 0.8:
                session.append(browsing_row(session_id, ts, url=url))
        session += [dict(r) for r in rng.sample(session, k=rng.randint(0, min(3, len(session))))]
        rows += session
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with synthetic_home(tmp_path_factory.mktemp("feature_parity"), sessions=3_000, seed=23) as (
        settings,
        _,
    ):
        yield with_hand_made_sessions(settings)


def with_hand_made_sessions(settings: Settings) -> Settings:
    """Tricky and fuzzed hand-made sessions landed beside the synthetic ones, then transformed."""
    with duckdb.connect() as con:
        popular = con.sql(
            f"""
            select product_sku_hash from read_parquet('{_landing_glob(settings)}')
            where product_sku_hash is not null
            group by 1 order by count(*) desc, 1 limit 12
            """
        ).fetchall()
    skus = {"K1": popular[0][0], "K2": popular[1][0], "K3": popular[2][0]}
    rows = tricky_rows(skus) + fuzz_rows([sku for (sku,) in popular])
    table = pa.Table.from_pylist(rows, schema=schema.BROWSING_EVENTS.arrow_schema)
    write_landing(settings, "browsing_events", table, name="hand-made")
    run_transform(settings)
    return settings


def _landing_glob(settings: Settings) -> Path:
    return settings.table_landing_dir("browsing_events") / "*.parquet"


def raw_sessions(settings: Settings) -> dict[str, list[Row]]:
    """Every landed browsing row, as the canonical dicts a server receives, by session."""
    with duckdb.connect() as con:
        rows = con.sql(f"select * from read_parquet('{_landing_glob(settings)}')").to_arrow_table()
    sessions: dict[str, list[Row]] = defaultdict(list)
    for row in rows.to_pylist():
        sessions[row["session_id_hash"]].append(row)
    return dict(sessions)


def warehouse_events(settings: Settings) -> dict[str, list[Row]]:
    """session_events rows before the first purchase, by session, in event_index order."""
    with connect(settings, read_only=True) as con:
        rows = con.sql(
            """
            select * from session_events
            where is_before_first_purchase
            order by session_id_hash, event_index
            """
        ).to_arrow_table()
    sessions: dict[str, list[Row]] = defaultdict(list)
    for row in rows.to_pylist():
        sessions[row["session_id_hash"]].append(row)
    return dict(sessions)


def _triple(row: Row) -> Event:
    return (row["action"], row["product_sku_hash"], row["server_timestamp_epoch_ms"])


def test_collapse_session_equals_the_warehouse_for_every_session(warehouse: Settings) -> None:
    raw = raw_sessions(warehouse)
    collapsed = warehouse_events(warehouse)
    assert len(raw) == 3_000 + len(TRICKY) * len(TRICKY_DAYS) + FUZZ_SESSIONS
    assert set(collapsed) <= set(raw)
    mismatched = {}
    for session_id, rows in raw.items():
        expected = [_triple(r) for r in collapsed.get(session_id, [])]
        assert [r["event_index"] for r in collapsed.get(session_id, [])] == list(
            range(1, len(expected) + 1)
        )
        got = collapse_session(rows)
        if got != expected:
            mismatched[session_id] = (got, expected)
    assert not mismatched, (
        f"{len(mismatched)} sessions differ, e.g. {next(iter(mismatched.items()))}"
    )
    # The hand-made sessions really exercise what they are for.
    ties = collapsed[f"tricky-ties-{TRICKY_DAYS[0]}"]
    assert [r["action"] for r in ties[:7]] == [
        "pageview",
        "detail",
        "pageview",  # a pageview, an add and a remove at one millisecond: funnel order
        "add",
        "remove",
        "detail",  # a detail, its pageview and an add at one millisecond
        "add",
    ]
    assert f"tricky-purchase_first-{TRICKY_DAYS[0]}" not in collapsed
    purchase_tie = [_triple(r)[0] for r in collapsed[f"tricky-purchase_tie-{TRICKY_DAYS[0]}"]]
    assert purchase_tie == ["detail", "add", "pageview", "pageview", "add", "remove"]


def _order_key(row: Row) -> tuple[Any, ...]:
    """session_events' window order (its SQL, spelled in Python): time, funnel rank, raw columns."""
    rank = {"pageview": 1, "detail": 2, "add": 3, "remove": 4, "purchase": 5}
    action = "pageview" if row["event_type"] == "pageview" else row["product_action"]
    sku, url, product_action = row["product_sku_hash"], row["hashed_url"], row["product_action"]
    return (
        row["server_timestamp_epoch_ms"],
        rank.get(action, 6),
        sku is not None,
        sku or "",
        url is not None,
        url or "",
        row["event_type"],
        product_action is not None,
        product_action or "",
    )


def served_prefix(rows: list[Row], last_event: Row) -> list[Row]:
    """The raw rows a server holds once the prefix's last event (a session_events row) arrived:
    every landed row up to it in the warehouse's order."""
    end = _order_key(last_event)
    return [r for r in rows if _order_key(r) <= end]


def _assert_inputs_equal(served: ModelInputs, trained: ModelInputs, where: str) -> None:
    for name, value in trained.to_arrays().items():
        other = getattr(served, name)
        assert other.dtype == value.dtype, (where, name, other.dtype, value.dtype)
        bad = np.flatnonzero((other != value).reshape(len(value), -1).any(axis=1))
        assert len(bad) == 0, f"{where}: {name} differs in {len(bad)} rows, e.g. row {bad[0]}"


@pytest.mark.parametrize("max_events", [6, 20])
def test_training_and_serving_build_the_same_inputs(warehouse: Settings, max_events: int) -> None:
    spec = FeatureSpec(max_events=max_events)
    data = prepare_intent_data(warehouse, spec)
    raw = raw_sessions(warehouse)
    collapsed = warehouse_events(warehouse)
    compared = 0
    for split in SPLITS:
        examples = data.splits[split]
        assert len(examples) > 0, split
        trained, _ = data.inputs(split)
        prefixes = []
        for session_id, length in zip(examples.session_id, examples.prefix_length, strict=True):
            events = collapsed[session_id]
            prefix = served_prefix(raw[session_id], events[int(length) - 1])
            assert collapse_session(prefix) == [_triple(r) for r in events[: int(length)]]
            prefixes.append(prefix)
        served = encode_sessions(prefixes, data.vocab, spec)
        _assert_inputs_equal(served, trained, f"{split} split, L={max_events}")
        compared += len(examples)
    assert compared > 300
    tricky = [s for s in data.splits["test"].session_id if str(s).startswith("tricky-")]
    assert len(set(tricky)) == 4  # every tricky session with an add has test examples
    # Truncation happens, and the served SKUs include known and out-of-vocabulary ones.
    everything = [data.inputs(split)[0] for split in SPLITS]
    assert any((inputs.events_used < inputs.counts[:, 0]).any() for inputs in everything)
    assert any((inputs.oov_skus > 0).any() for inputs in everything)
    assert any((inputs.sku >= 3).any() for inputs in everything)
    # The per-event inputs added later are compared too, and take their telling values here:
    # before an add (1), the cap in a cart (20) and a cart emptied after an add (odd, >= 3).
    assert {"stage", "log_gap"} <= set(trained.to_arrays())
    stage = np.concatenate([inputs.stage.ravel() for inputs in everything])
    assert {1, 20} <= set(stage.tolist()) and (stage[stage > 1] % 2 == 1).any()
    log_gap = np.concatenate([inputs.log_gap.ravel() for inputs in everything])
    assert ((log_gap > 0) & (log_gap < 1)).any()


def test_training_and_serving_build_the_same_tabular_features(warehouse: Settings) -> None:
    """The LightGBM candidate's rows (features.tabular) of every example, from training's arrays
    and from serving's encoding of the raw events, are identical (NaN where NaN)."""
    from smallboat.features.funnel import FUNNEL_FEATURES
    from smallboat.features.tabular import TABULAR_FEATURES, tabular_features

    spec = FeatureSpec(max_events=6)
    data = prepare_intent_data(warehouse, spec)
    vectors = np.random.default_rng(0).normal(size=(data.vocab.n_sku_tokens, 8))
    raw = raw_sessions(warehouse)
    collapsed = warehouse_events(warehouse)
    funnel = [TABULAR_FEATURES.index(name) for name in FUNNEL_FEATURES]
    seen = []
    for split in SPLITS:
        examples = data.splits[split]
        trained = tabular_features(data.inputs(split)[0], vectors)
        prefixes = [
            served_prefix(raw[session_id], collapsed[session_id][int(length) - 1])
            for session_id, length in zip(examples.session_id, examples.prefix_length, strict=True)
        ]
        served = tabular_features(encode_sessions(prefixes, data.vocab, spec), vectors)
        np.testing.assert_array_equal(served, trained, err_msg=f"{split} split")
        # the similarities are computed, not all missing, on these sessions
        assert np.isfinite(trained).all(axis=0).sum() < trained.shape[1]
        assert np.isfinite(trained).any(axis=0).all(), split
        seen.append(trained[:, funnel])
    # every funnel sum takes several values here (a window of 6 cuts many first adds off, so
    # the sums' inference of the stage before a window's first event is compared too)
    varied = np.nanmax(np.concatenate(seen), axis=0) > np.nanmin(np.concatenate(seen), axis=0)
    assert varied.all(), [name for name, v in zip(FUNNEL_FEATURES, varied, strict=True) if not v]


def test_test_events_kept_for_scoring_encode_like_the_training_arrays(warehouse: Settings) -> None:
    spec = FeatureSpec(max_events=8)
    data = prepare_intent_data(warehouse, spec)
    assert data.test_events is not None and data.test_examples is not None
    tokens = tokenize(data.test_events, data.vocab, spec)
    again = windows(tokens, data.test_examples.session, data.test_examples.prefix_length, spec)
    trained, _ = data.inputs("test")
    _assert_inputs_equal(again, trained, "test_events")


def test_vocabulary_is_fitted_on_the_training_split_only(warehouse: Settings) -> None:
    spec = FeatureSpec()
    data = prepare_intent_data(warehouse, spec)
    with connect(warehouse, read_only=True) as con:
        rows = con.sql(
            """
            select session_events.product_sku_hash as sku, sessions.split, count(*) as n
            from session_events
            inner join sessions on sessions.session_id_hash = session_events.session_id_hash
            where session_events.product_sku_hash is not null
            group by all
            """
        ).fetchall()
    train = {sku: n for sku, split, n in rows if split == "train"}
    later = {sku for sku, split, _ in rows if split != "train"} - set(train)
    expected = sorted(
        (s for s, n in train.items() if n >= spec.min_sku_count), key=lambda s: (-train[s], s)
    )
    assert data.vocab.trained_skus() == expected
    assert f"never-seen-{TRICKY_DAYS[0]}" in expected
    assert {f"never-seen-{day}" for day in TRICKY_DAYS[1:]} <= later
    row = data.vocab.lookup(np.array(sorted(later), dtype=object))
    assert (data.vocab.sku_token[row[row >= 0]] == SKU_OOV).all()


# Stage = 1 + 2 * (events since the first add, capped at 8; -1 before it) + (cart holds something);
# log_gap = ln(1 + gap s) / ln 1801, in units of the session's step (its moments are 1 or 700 ms
# apart, drawn per session): 0 for the first event and for events in the same moment.
HAND_MADE: dict[str, tuple[list[int], list[int]]] = {
    # detail; add (since 0, cart 1): 4; pv, pv: 6, 8; in one moment: pv (counted above), add
    # (since 3, cart 2): 1 + 8 + 1 = 10, remove (since 4, cart 1): 1 + 10 + 1 = 12; then the cut
    "purchase_tie": ([1, 4, 6, 8, 10, 12], [0, 1, 1, 1, 0, 0]),
    # pv; in one moment pv, add, add, add: 1, 4, 6, 8 (cart 1, 2, 3); detail 10, pv 12, the remove
    # leaves 2 in the cart: 1 + 2 * 6 + 1 = 14; pv 16, detail 18, then capped at since 8: 20
    "many_adds": (
        [1, 1, 4, 6, 8, 10, 12, 14, 16, 18, 20, 20, 20],
        [0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
    ),
}
LOG_GAP_OF_STEP_MS = {
    1: 0.00013333609,  # ln 1.001 = 0.00099950033; / ln 1801 = 7.49609735
    700: 0.07078727,  # ln 1.7 = 0.53062825
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_stage_and_log_gap_of_hand_made_sessions_on_both_paths(
    warehouse: Settings, name: str
) -> None:
    stages, steps = HAND_MADE[name]
    spec = FeatureSpec()  # 20 events: the whole session in view
    empty = pd.DataFrame({"product_sku_hash": [], "category_hash": [], "price_bucket": []})
    vocab = fit_vocabulary({}, empty, spec)  # neither column depends on the SKUs
    raw = raw_sessions(warehouse)
    collapsed = warehouse_events(warehouse)
    pad = spec.max_events - len(stages)
    for day in TRICKY_DAYS:
        session_id = f"tricky-{name}-{day}"
        events = [_triple(r) for r in collapsed[session_id]]
        step_ms = events[1][2] - events[0][2]
        expected = [LOG_GAP_OF_STEP_MS[step_ms] * k for k in steps]
        trained = tokenize(event_table([events]), vocab, spec)  # the warehouse's order
        assert trained.stage.tolist() == stages, session_id
        assert trained.log_gap.tolist() == pytest.approx(expected, rel=1e-6, abs=0.0), session_id
        served = encode_sessions([raw[session_id]], vocab, spec)  # the raw rows, unsorted
        assert served.stage[0].tolist() == [0] * pad + stages, session_id
        assert served.log_gap[0].tolist() == [0.0] * pad + trained.log_gap.tolist(), session_id

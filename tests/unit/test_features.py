"""smallboat.features on hand-built sessions: every expected token is written out by hand.

The vocabulary used throughout (`VOCAB`, min_sku_count 2) is fitted on these training counts and
catalog rows, so its tokens can be read off here:

    SKU  train events  catalog (category, price bucket)   sku token   price  top category  leaf
    A    5             c1/x, 3                              3 (1st)     4      2 (c1)        c1/x
    B    5             c1/y, 10                             4 (2nd)     11     2 (c1)        c1/y
    F    3             (not in the catalog)                 5 (3rd)     1      1 (none)      -
    C    2             c2/x, none                           6 (4th)     1      3 (c2)        c2/x
    D    0             none, 1                              2 (OOV)     2      1 (none)      -
    E    1             (not in the catalog)                 2 (OOV)     1      1 (none)      -

The spec's gap edges are (1, 10, 100) s: gap token 1 = a session's first event, 2 = under 1 s,
3 = [1, 10) s, 4 = [10, 100) s, 5 = 100 s or more.

Funnel stage after an event = 1 + 2 * (events since the session's first add, capped at 8; -1 before
it) + (the cart holds something: adds minus removes so far, never below 0). So 1 = before any add,
even = something in the cart, odd >= 3 = the cart emptied after an add, 20 = the cap, in the cart.

log_gap = ln(1 + gap seconds) / ln(1 + 1800) (ln 1801 = 7.49609735), 0 for a session's first event
and for padding.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smallboat.features import (
    COUNT_FEATURES,
    TOKEN_COLUMNS,
    EventTable,
    FeatureSpec,
    ModelInputs,
    Vocabulary,
    collapse_session,
    encode_sessions,
    event_table,
    fit_vocabulary,
    tokenize,
    windows,
)
from smallboat.features.spec import (
    GAP_FIRST,
    MOVE_NA,
    MOVE_OTHER,
    MOVE_SAME,
    MOVE_UNKNOWN,
    N_STAGE_TOKENS,
    PAD,
    PRICE_NONE,
    SKU_NONE,
    SKU_OOV,
    STAGE_BEFORE_ADD,
)
from tests.landing_data import browsing_row

Event = tuple[str, str | None, int]

SPEC = FeatureSpec(max_events=4, min_sku_count=2, gap_edges_s=(1.0, 10.0, 100.0))
TRAIN_COUNTS = {"A": 5, "B": 5, "C": 2, "E": 1, "F": 3}
CATALOG = pd.DataFrame(
    {
        "product_sku_hash": ["A", "B", "C", "D"],
        "category_hash": ["c1/x", "c1/y", "c2/x", None],
        "price_bucket": [3, 10, None, 1],
    }
)
VOCAB = fit_vocabulary(TRAIN_COUNTS, CATALOG, SPEC)
T0 = 1_600_000_000_000


# --- raw canonical browsing rows ------------------------------------------------------------------


def pageview(ts: int, url: str | None = "u-page") -> dict[str, Any]:
    return browsing_row("s", ts, url=url)


def product(ts: int, action: str, sku: str | None, url: str | None = None) -> dict[str, Any]:
    return browsing_row("s", ts, action, sku, f"u-{sku}" if url is None else url)


# --- collapse_session -----------------------------------------------------------------------------


def test_collapse_folds_a_detail_and_its_pageview_into_one_detail() -> None:
    rows = [
        pageview(T0, "u-home"),
        product(T0 + 5, "detail", "A", "u-A"),
        pageview(T0 + 5, "u-A"),  # the product page's own pageview: dropped
        pageview(T0 + 5, "u-other"),  # any pageview at a detail's millisecond is dropped
        pageview(T0 + 6, "u-A"),  # one millisecond later: a page of its own
    ]
    assert collapse_session(rows) == [
        ("pageview", None, T0),
        ("detail", "A", T0 + 5),
        ("pageview", None, T0 + 6),
    ]


def test_collapse_keeps_exact_duplicates_once_but_not_near_duplicates() -> None:
    rows = [
        pageview(T0, "u1"),
        pageview(T0, "u1"),  # exact duplicate
        product(T0 + 1, "add", "A"),
        product(T0 + 1, "add", "A"),  # exact duplicate
        product(T0 + 1, "add", "A"),  # and again
        product(T0 + 2, "add", "A", url="u-x"),
        product(T0 + 2, "add", "A", url="u-y"),  # another URL: another event
    ]
    assert collapse_session(rows) == [
        ("pageview", None, T0),
        ("add", "A", T0 + 1),
        ("add", "A", T0 + 2),
        ("add", "A", T0 + 2),
    ]


def test_collapse_sorts_unsorted_rows_whatever_their_order() -> None:
    rows = [
        pageview(T0),
        product(T0 + 1000, "detail", "A"),
        pageview(T0 + 1000, "u-A"),
        product(T0 + 2000, "add", "A"),
        pageview(T0 + 3000, "u-cart"),
        product(T0 + 4000, "remove", "A"),
    ]
    expected = [
        ("pageview", None, T0),
        ("detail", "A", T0 + 1000),
        ("add", "A", T0 + 2000),
        ("pageview", None, T0 + 3000),
        ("remove", "A", T0 + 4000),
    ]
    for order in itertools.permutations(rows):
        assert collapse_session(list(order)) == expected


def test_collapse_orders_same_millisecond_events_by_funnel_rank_then_sku() -> None:
    t = T0 + 10
    rows = [
        product(t, "remove", "B"),
        product(t, "add", "Z"),
        product(t, "add", "A"),
        product(t, "add", None),  # a product event without SKU: NULLs sort first
        pageview(t, "u-list"),  # no detail at this millisecond: kept, and first
        product(t + 1, "add", "A"),
        product(t + 1, "detail", "A"),  # detail before add at the same millisecond
    ]
    assert collapse_session(rows) == [
        ("pageview", None, t),
        ("add", None, t),
        ("add", "A", t),
        ("add", "Z", t),
        ("remove", "B", t),
        ("detail", "A", t + 1),
        ("add", "A", t + 1),
    ]


def test_collapse_cuts_at_the_first_purchase_keeping_its_same_millisecond_events() -> None:
    t = T0 + 3000
    rows = [
        pageview(T0),
        product(T0 + 1000, "detail", "A"),
        product(t, "purchase", "A"),
        product(t, "add", "A"),  # same millisecond as the purchase, ranks before it: kept
        product(t, "remove", "B"),  # likewise
        pageview(t, "u-checkout"),  # likewise (no detail at this millisecond)
        pageview(t + 1),  # after the first purchase: cut
        product(t + 2, "detail", "C"),
        product(t + 5, "purchase", "C"),  # a second purchase: cut
    ]
    assert collapse_session(rows) == [
        ("pageview", None, T0),
        ("detail", "A", T0 + 1000),
        ("pageview", None, t),
        ("add", "A", t),
        ("remove", "B", t),
    ]


def test_collapse_of_a_session_that_starts_with_a_purchase_is_empty() -> None:
    rows = [product(T0, "purchase", "A"), pageview(T0 + 1), product(T0 + 2, "add", "A")]
    assert collapse_session(rows) == []
    assert collapse_session([]) == []


def test_collapse_accepts_integer_like_timestamps() -> None:
    rows = [pageview(T0), product(T0 + 1, "add", "A")]
    rows[0]["server_timestamp_epoch_ms"] = np.int64(T0)
    rows[1]["server_timestamp_epoch_ms"] = str(T0 + 1)
    assert collapse_session(rows) == [("pageview", None, T0), ("add", "A", T0 + 1)]


# --- tokenize -------------------------------------------------------------------------------------

GAPS_MS = [999, 1000, 10_000, 100_000, 99_999, 0, 5_000, 5_000, 20_000, 1, 1_000_000]
STEPS: list[tuple[str, str | None]] = [
    ("pageview", None),
    ("detail", "A"),
    ("add", "A"),
    ("detail", "B"),
    ("pageview", None),
    ("detail", "D"),
    ("remove", "B"),
    ("detail", "E"),
    ("detail", "F"),
    ("detail", "C"),
    ("add", "C"),
    ("detail", "A"),
]
TIMES = [T0, *(T0 + int(x) for x in np.cumsum(GAPS_MS))]
LONG: list[Event] = [(a, s, t) for (a, s), t in zip(STEPS, TIMES, strict=True)]
"""Twelve events exercising every token; the expected tokens per event follow."""
LONG_TOKENS: dict[str, list[int]] = {
    "action": [1, 2, 3, 2, 1, 2, 4, 2, 2, 2, 3, 2],
    "sku": [SKU_NONE, 3, 3, 4, SKU_NONE, SKU_OOV, 4, SKU_OOV, 5, 6, 6, 3],
    # gaps 0.999 s, exactly 1 s, exactly 10 s, exactly 100 s, 99.999 s, 0, 5, 5, 20, 0.001, 1000
    "gap": [GAP_FIRST, 2, 3, 4, 5, 4, 2, 3, 3, 4, 2, 5],
    "price": [1, 4, 4, 11, 1, 2, 11, 1, 1, 1, 1, 4],  # 1 = PRICE_NONE
    "category": [1, 2, 2, 2, 1, 1, 2, 1, 1, 3, 3, 2],
    "move": [
        MOVE_NA,  # a pageview
        MOVE_NA,  # the session's first product
        MOVE_SAME,  # A after A
        MOVE_OTHER,  # B (c1/y) after A (c1/x): same top category, another leaf
        MOVE_NA,  # a pageview
        MOVE_UNKNOWN,  # D has no category
        MOVE_UNKNOWN,  # B after D (unknown)
        MOVE_UNKNOWN,  # E is not in the vocabulary at all
        MOVE_UNKNOWN,  # F is trained but not catalogued
        MOVE_UNKNOWN,  # C after F (unknown)
        MOVE_SAME,  # C after C
        MOVE_OTHER,  # A (c1/x) after C (c2/x)
    ],
    # 1 + 2 * (since + 1) + in_cart; the first add is event 3 (index 2)
    "stage": [
        1,  # pageview, before any add
        1,  # detail, before any add
        4,  # add: since 0, cart 1 -> 1 + 2 * 1 + 1
        6,  # since 1, cart 1 -> 1 + 4 + 1
        8,  # since 2 -> 1 + 6 + 1
        10,  # since 3 -> 1 + 8 + 1
        11,  # remove: since 4, cart 1 - 1 = 0 -> 1 + 10 + 0
        13,  # since 5, cart 0 -> 1 + 12
        15,  # since 6 -> 1 + 14
        17,  # since 7 -> 1 + 16
        20,  # the second add: since 8 (the cap), cart 1 -> 1 + 18 + 1
        20,  # since 9, capped at 8, cart 1 -> 1 + 18 + 1
    ],
    "is_oov": [False, False, False, False, False, True, False, True, False, False, False, False],
}
LONG_LOG_GAP = [
    0.0,  # the session's first event
    0.09240102,  # 0.999 s: ln 1.999 = 0.69264706; / 7.49609735
    0.09246774,  # 1 s: ln 2 = 0.69314718
    0.31988582,  # 10 s: ln 11 = 2.39789527
    0.61566977,  # 100 s: ln 101 = 4.61512052
    0.61566845,  # 99.999 s: ln 100.999 = 4.61511062
    0.0,  # 0 s: ln 1 = 0
    0.23902564,  # 5 s: ln 6 = 1.79175947
    0.23902564,  # 5 s
    0.40614767,  # 20 s: ln 21 = 3.04452244
    0.00013333609,  # 0.001 s: ln 1.001 = 0.00099950033
    0.92164689,  # 1000 s: ln 1001 = 6.90875478
]


def test_vocabulary_tokens_are_the_ones_the_module_docstring_lists() -> None:
    assert VOCAB.trained_skus() == ["A", "B", "F", "C"]
    row = VOCAB.lookup(np.array(["A", "B", "F", "C", "D", "E", None], dtype=object))
    assert row[-2:].tolist() == [-1, -1]  # E is neither trained nor catalogued; None is no SKU
    known = row[:5]
    assert VOCAB.sku_token[known].tolist() == [3, 4, 5, 6, SKU_OOV]
    assert VOCAB.price_token[known].tolist() == [4, 11, PRICE_NONE, PRICE_NONE, 2]
    assert VOCAB.category_token[known].tolist() == [2, 2, 1, 3, 1]
    assert VOCAB.top_categories == ["c1", "c2"]
    assert VOCAB.n_sku_tokens == 7
    assert VOCAB.n_category_tokens == 4


def test_tokenize_writes_every_token_by_hand() -> None:
    tokens = tokenize(event_table([LONG]), VOCAB, SPEC)
    for name, expected in LONG_TOKENS.items():
        assert getattr(tokens, name).tolist() == expected, name
    assert tokens.log_gap.dtype == np.float32
    assert tokens.log_gap.tolist() == pytest.approx(LONG_LOG_GAP, rel=1e-6, abs=1e-12)
    assert tokens.stage.dtype == np.int8
    assert tokens.timestamps_ms.tolist() == TIMES
    assert tokens.offsets.tolist() == [0, 12]


@pytest.mark.parametrize(
    ("gap_ms", "token"),
    [
        (0, 2),
        (999, 2),
        (1_000, 3),  # exactly on an edge: the upper bucket
        (1_001, 3),
        (9_999, 3),
        (10_000, 4),
        (99_999, 4),
        (100_000, 5),
        (10**9, 5),
    ],
)
def test_gap_buckets_at_and_around_the_edges(gap_ms: int, token: int) -> None:
    table = event_table([[("pageview", None, T0), ("pageview", None, T0 + gap_ms)]])
    assert tokenize(table, VOCAB, SPEC).gap.tolist() == [GAP_FIRST, token]


@pytest.mark.parametrize(
    ("gap_ms", "log_gap"),
    [
        (0, 0.0),  # ln 1 = 0
        (1, 0.00013333609),  # ln 1.001 = 0.00099950033; / ln 1801 = 7.49609735
        (1_000, 0.09246774),  # ln 2 = 0.69314718
        (60_000, 0.54840188),  # ln 61 = 4.11087386
        (1_800_000, 1.0),  # the session cut: ln 1801 / ln 1801, exactly
        (3_600_000, 1.09243070),  # not clipped: ln 3601 = 8.18896686
    ],
)
def test_log_gap_at_known_gaps(gap_ms: int, log_gap: float) -> None:
    table = event_table([[("pageview", None, T0), ("pageview", None, T0 + gap_ms)]])
    values = tokenize(table, VOCAB, SPEC).log_gap.tolist()
    assert values[0] == 0.0  # a session's first event
    assert values[1] == pytest.approx(log_gap, rel=1e-6, abs=0.0)
    if log_gap in (0.0, 1.0):
        assert values[1] == log_gap  # exactly


def test_default_gap_edges_put_exact_millisecond_edges_in_the_upper_bucket() -> None:
    spec = FeatureSpec()
    edges_ms = [round(e * 1000) for e in spec.gap_edges_s]
    times = [T0]
    for edge in edges_ms:  # one event exactly at each edge's gap, one just below it
        times += [times[-1] + edge - 1, times[-1] + edge - 1 + edge]
    table = event_table([[("pageview", None, t) for t in times]])
    gap = tokenize(table, VOCAB, spec).gap.tolist()
    below, at = gap[1::2], gap[2::2]
    assert below == list(range(2, 2 + len(edges_ms)))
    assert at == list(range(3, 3 + len(edges_ms)))
    assert max(gap) == spec.n_gap_tokens - 1


def test_session_boundaries_restart_gaps_and_category_moves() -> None:
    s1 = [("pageview", None, T0 + 50_000), ("detail", "A", T0 + 60_000)]  # ends with product A
    s2 = [  # starts earlier than s1 ended: its gaps must not look back into s1
        ("pageview", None, T0),
        ("detail", "A", T0 + 2_000),  # first product of s2: MOVE_NA although s1 ended with A
        ("add", "A", T0 + 2_500),
    ]
    s3 = [("detail", "A", T0 + 90_000), ("detail", "B", T0 + 90_500)]  # starts with a product
    s4 = [("pageview", None, T0), ("detail", "C", T0 + 1)]  # first product after a pageview
    tokens = tokenize(event_table([s1, s2, s3, s4]), VOCAB, SPEC)
    assert tokens.offsets.tolist() == [0, 2, 5, 7, 9]
    assert tokens.gap.tolist() == [GAP_FIRST, 4, GAP_FIRST, 3, 2, GAP_FIRST, 2, GAP_FIRST, 2]
    assert tokens.move.tolist() == [
        MOVE_NA,
        MOVE_NA,
        MOVE_NA,
        MOVE_NA,
        MOVE_SAME,
        MOVE_NA,
        MOVE_OTHER,
        MOVE_NA,
        MOVE_NA,
    ]
    # s1's last gap is 10 s and s2 starts 60 s before it ended: each first event is 0, not
    # ln(1 + a negative or cross-session gap).
    assert tokens.log_gap.tolist() == pytest.approx(
        [
            0.0,
            0.31988582,  # 10 s: ln 11 = 2.39789527; / 7.49609735
            0.0,
            0.14655790,  # 2 s: ln 3 = 1.09861229
            0.05409016,  # 0.5 s: ln 1.5 = 0.40546511
            0.0,
            0.05409016,  # 0.5 s
            0.0,
            0.00013333609,  # 0.001 s: ln 1.001 = 0.00099950033
        ],
        rel=1e-6,
        abs=0.0,
    )
    # s2 adds A: its stages start at 1 again, and s3 after it does not inherit its cart.
    assert tokens.stage.tolist() == [1, 1, 1, 1, 4, 1, 1, 1, 1]


def test_tokenize_skips_empty_sessions_in_a_table() -> None:
    s = [("detail", "A", T0), ("add", "A", T0 + 1)]
    tokens = tokenize(event_table([[], s, [], s]), VOCAB, SPEC)
    assert tokens.offsets.tolist() == [0, 0, 2, 2, 4]
    assert tokens.gap.tolist() == [GAP_FIRST, 2, GAP_FIRST, 2]
    assert tokens.move.tolist() == [MOVE_NA, MOVE_SAME, MOVE_NA, MOVE_SAME]
    assert tokens.stage.tolist() == [1, 4, 1, 4]  # detail before the add; add: 1 + 2 + 1
    # 0.001 s: ln 1.001 / ln 1801 = 0.00099950033 / 7.49609735
    assert tokens.log_gap.tolist() == pytest.approx([0, 0.00013333609, 0, 0.00013333609], rel=1e-6)


# --- funnel stage ---------------------------------------------------------------------------------


def test_funnel_stage_follows_the_cart_and_restarts_in_every_session() -> None:
    def session(*actions: str) -> list[Event]:
        return [(a, None if a == "pageview" else "A", T0 + i) for i, a in enumerate(actions)]

    sessions = [
        session("detail", "add", "pageview", "remove", "pageview"),
        [],
        session("pageview", "detail"),  # after a session that added: before an add again
        session("remove", "add", "pageview", "remove"),
        session("add", "add", "remove", "remove", "add"),
        session("remove", "remove", "add", "add", "remove", "pageview"),
    ]
    tokens = tokenize(event_table(sessions), VOCAB, SPEC)
    stage = np.split(tokens.stage, tokens.offsets[1:-1])
    assert [s.tolist() for s in stage] == [
        # 1 before the add; add since 0, cart 1: 1 + 2 + 1 = 4; since 1: 1 + 4 + 1 = 6;
        # the remove empties the cart, since 2: 1 + 6 + 0 = 7; since 3, still empty: 1 + 8 = 9
        [1, 4, 6, 7, 9],
        [],
        [1, 1],
        # a remove with an empty cart (something from an earlier session) is 1, and must not
        # cancel the add after it: cart max(0, 0 - 1) + 1 = 1 -> 4, then 6; the remove empties
        # it at since 2: 1 + 6 + 0 = 7
        [1, 4, 6, 7],
        # cart 1, 2, 1, 0, 1 at since 0..4: 1 + 2 * (since + 1) + (cart > 0)
        [4, 6, 8, 9, 12],
        # cart 0, 0 (clamped), 1, 2, 1, 1; since -1, -1, 0, 1, 2, 3
        [1, 1, 4, 6, 8, 10],
    ]
    assert STAGE_BEFORE_ADD == 1


@pytest.mark.parametrize(
    ("pageviews_after_add", "stage"),
    [
        (0, 4),  # since 0: 1 + 2 * 1 + 1
        (1, 6),  # 1 + 2 * 2 + 1
        (7, 18),  # 1 + 2 * 8 + 1
        (8, 20),  # since 8, the cap: 1 + 2 * 9 + 1
        (9, 20),  # since 9, capped at 8
        (40, 20),
    ],
)
def test_funnel_stage_caps_events_since_the_first_add(pageviews_after_add: int, stage: int) -> None:
    events: list[Event] = [("pageview", None, T0), ("add", "A", T0 + 1)]
    events += [("pageview", None, T0 + 2 + i) for i in range(pageviews_after_add)]
    tokens = tokenize(event_table([events]), VOCAB, SPEC)
    assert tokens.stage[0] == 1
    assert tokens.stage[-1] == stage
    assert tokens.stage.max() < N_STAGE_TOKENS  # fits the model's stage embedding
    # the second add does not restart the count since the first; a remove keeps the count
    more = [*events, ("add", "B", T0 + 100), ("remove", "B", T0 + 101)]
    again = tokenize(event_table([more]), VOCAB, SPEC).stage
    since = min(pageviews_after_add + 2, 8)
    assert again[-1] == 1 + 2 * (since + 1) + 1  # cart 2 - 1 = 1


def test_tokenize_rejects_an_unknown_action() -> None:
    table = event_table([[("pageview", None, T0), ("checkout", "A", T0 + 1)]])
    with pytest.raises(ValueError, match="checkout"):
        tokenize(table, VOCAB, SPEC)


def test_an_empty_table_and_an_empty_batch_encode_to_nothing() -> None:
    tokens = tokenize(event_table([]), VOCAB, SPEC)
    for name in ("action", "sku", "gap", "log_gap", "price", "category", "move", "stage", "is_oov"):
        assert len(getattr(tokens, name)) == 0, name
    assert tokens.offsets.tolist() == [0]
    inputs = encode_sessions([], VOCAB, SPEC)
    assert inputs.action.shape == (0, SPEC.max_events)
    assert inputs.stage.shape == inputs.log_gap.shape == (0, SPEC.max_events)
    assert inputs.counts.shape == (0, len(COUNT_FEATURES))


# --- windows --------------------------------------------------------------------------------------


def _window_of(name: str, prefix: int, width: int) -> list[int]:
    values = LONG_TOKENS[name][:prefix][-width:]
    return [PAD] * (width - len(values)) + [int(v) for v in values]


def _float_window_of(values: list[float], prefix: int, width: int) -> list[float]:
    kept = values[:prefix][-width:]
    return [0.0] * (width - len(kept)) + kept


def test_windows_pad_left_and_keep_the_last_events() -> None:
    tokens = tokenize(event_table([LONG]), VOCAB, SPEC)
    prefixes = np.arange(1, 13)
    inputs = windows(tokens, np.zeros(12, dtype=np.int64), prefixes, SPEC)
    assert len(inputs) == 12
    for name in TOKEN_COLUMNS:
        matrix = getattr(inputs, name)
        assert matrix.shape == (12, 4)
        for row, p in enumerate(prefixes):
            assert matrix[row].tolist() == _window_of(name, int(p), 4), (name, p)
    assert inputs.log_gap.dtype == np.float32 and inputs.log_gap.shape == (12, 4)
    per_event = tokens.log_gap.tolist()  # held to LONG_LOG_GAP above; windows copy it exactly
    for row, p in enumerate(prefixes):
        assert inputs.log_gap[row].tolist() == _float_window_of(per_event, int(p), 4), p
    # Spelled out for two rows: a short prefix is left-padded, a long one keeps its last 4.
    assert inputs.action[1].tolist() == [PAD, PAD, 1, 2]
    assert inputs.sku[11].tolist() == [5, 6, 6, 3]
    assert inputs.action[:, -1].tolist() == LONG_TOKENS["action"]  # last event, last column
    assert inputs.stage[2].tolist() == [PAD, 1, 1, 4]  # padding 0 is not "before an add" (1)
    assert inputs.stage[11].tolist() == [15, 17, 20, 20]  # the add is out of view, its stage not
    assert inputs.events_used.tolist() == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4]


def test_window_counts_cover_the_whole_prefix_and_oov_only_the_window() -> None:
    tokens = tokenize(event_table([LONG]), VOCAB, SPEC)
    inputs = windows(tokens, np.array([0, 0, 0, 0]), np.array([5, 8, 10, 12]), SPEC)
    assert list(COUNT_FEATURES) == [
        "n_events",
        "n_pageview",
        "n_detail",
        "n_add",
        "n_remove",
        "duration_s",
    ]
    assert inputs.counts.dtype == np.float32
    expected = [
        [5, 2, 2, 1, 0, sum(GAPS_MS[:4]) / 1000],
        [8, 2, 4, 1, 1, sum(GAPS_MS[:7]) / 1000],
        [10, 2, 6, 1, 1, sum(GAPS_MS[:9]) / 1000],
        [12, 2, 7, 2, 1, sum(GAPS_MS) / 1000],
    ]
    np.testing.assert_allclose(inputs.counts, np.array(expected, dtype=np.float32))
    # OOV SKUs are events 6 (D) and 8 (E); windows are events 2-5, 5-8, 7-10, 9-12.
    assert inputs.oov_skus.tolist() == [0, 2, 1, 0]


def test_windows_index_sessions_by_their_offsets() -> None:
    short: list[Event] = [("detail", "B", T0), ("add", "B", T0 + 1_500)]
    tokens = tokenize(event_table([short, LONG, short]), VOCAB, SPEC)
    inputs = windows(tokens, np.array([2, 1, 0]), np.array([2, 3, 1]), SPEC)
    assert inputs.action.tolist() == [[PAD, PAD, 2, 3], [PAD, 1, 2, 3], [PAD, PAD, PAD, 2]]
    assert inputs.sku.tolist() == [[PAD, PAD, 4, 4], [PAD, SKU_NONE, 3, 3], [PAD, PAD, PAD, 4]]
    assert inputs.gap.tolist() == [[PAD, PAD, GAP_FIRST, 3], [PAD, GAP_FIRST, 2, 3], [0, 0, 0, 1]]
    # short: detail 1, add 1 + 2 + 1 = 4; LONG's first three: 1, 1, 4 (see LONG_TOKENS)
    assert inputs.stage.tolist() == [[PAD, PAD, 1, 4], [PAD, 1, 1, 4], [PAD, PAD, PAD, 1]]
    assert inputs.log_gap.tolist() == [
        pytest.approx([0, 0, 0, 0.12223570], rel=1e-6),  # 1.5 s: ln 2.5 = 0.91629073 / 7.49609735
        pytest.approx([0, 0, 0.09240102, 0.09246774], rel=1e-6),  # LONG_LOG_GAP[:3]
        [0.0, 0.0, 0.0, 0.0],  # padding and a first event
    ]
    assert inputs.counts[:, 0].tolist() == [2, 3, 1]
    assert inputs.counts[:, -1].tolist() == pytest.approx([1.5, 1.999, 0.0])


def test_model_inputs_take_and_array_round_trip() -> None:
    tokens = tokenize(event_table([LONG]), VOCAB, SPEC)
    inputs = windows(tokens, np.zeros(3, dtype=np.int64), np.array([3, 7, 12]), SPEC)
    again = ModelInputs.from_arrays(inputs.to_arrays())
    _assert_inputs_equal(again, inputs)
    picked = inputs.take(np.array([2, 0]))
    assert picked.action.tolist() == [inputs.action[2].tolist(), inputs.action[0].tolist()]
    assert picked.counts.tolist() == [inputs.counts[2].tolist(), inputs.counts[0].tolist()]


# --- encode_sessions ------------------------------------------------------------------------------


def test_encode_sessions_collapses_cuts_and_encodes_the_whole_prefix() -> None:
    rows = [
        product(T0 + 2_000, "add", "A"),
        pageview(T0, "u-A"),
        product(T0, "detail", "A", "u-A"),
        product(T0 + 2_000, "add", "A"),  # duplicate
        product(T0 + 3_000, "purchase", "A"),
        pageview(T0 + 4_000),
    ]
    inputs = encode_sessions([rows], VOCAB, SPEC)
    assert inputs.action.tolist() == [[PAD, PAD, 2, 3]]
    assert inputs.sku.tolist() == [[PAD, PAD, 3, 3]]
    assert inputs.gap.tolist() == [[PAD, PAD, GAP_FIRST, 3]]
    assert inputs.move.tolist() == [[PAD, PAD, MOVE_NA, MOVE_SAME]]
    assert inputs.stage.tolist() == [[PAD, PAD, 1, 4]]  # detail; add: 1 + 2 * 1 + 1
    # 2 s: ln 3 = 1.09861229; / ln 1801 = 7.49609735
    assert inputs.log_gap.tolist() == [pytest.approx([0, 0, 0, 0.14655790], rel=1e-6)]
    assert inputs.counts.tolist() == [[2, 0, 1, 1, 0, 2.0]]
    assert inputs.events_used.tolist() == [2]


def test_encode_sessions_rejects_an_empty_prefix() -> None:
    ok = [pageview(T0)]
    with pytest.raises(ValueError, match=r"\[1\]"):
        encode_sessions([ok, [product(T0, "purchase", "A")]], VOCAB, SPEC)


# --- invariances on generated sessions ------------------------------------------------------------

SKU_POOL = ["A", "B", "C", "D", "E", "F", "G", None]
ACTION_POOL = ["detail", "detail", "detail", "add", "remove", "purchase"]


def random_session(rng: random.Random, start: int) -> list[dict[str, Any]]:
    """Raw rows with the awkward parts of real logs: same-ms ties, duplicates, no order."""
    rows: list[dict[str, Any]] = []
    ts = start
    for _ in range(rng.randint(1, 25)):
        ts += rng.choice([0, 0, 1, 400, 1_000, 7_000, 60_000, 400_000])
        if rng.random() < 0.4:
            rows.append(pageview(ts, rng.choice(["u1", "u2", None])))
            continue
        action = rng.choice(ACTION_POOL if rng.random() < 0.2 else ACTION_POOL[:5])
        sku = rng.choice(SKU_POOL)
        rows.append(product(ts, action, sku, rng.choice([None, f"u-{sku}"])))
        if action == "detail" and rng.random() < 0.8:
            rows.append(pageview(ts, f"u-{sku}"))
    rows += [dict(r) for r in rng.sample(rows, k=min(len(rows), rng.randint(0, 3)))]
    rng.shuffle(rows)
    return rows


def random_sessions(seed: int, n: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    sessions = [random_session(rng, T0 + i * 7_777) for i in range(4 * n)]
    return [s for s in sessions if collapse_session(s)][:n]


def _assert_inputs_equal(a: ModelInputs, b: ModelInputs) -> None:
    for name, value in a.to_arrays().items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_encodes_exactly_as_each_session_alone(seed: int) -> None:
    sessions = random_sessions(seed, 40)
    assert len(sessions) == 40
    batch = encode_sessions(sessions, VOCAB, SPEC)
    for i, session in enumerate(sessions):
        _assert_inputs_equal(encode_sessions([session], VOCAB, SPEC), batch.take(np.array([i])))
    # The batch holds what a session-mixing bug would corrupt: carts, emptied carts, real gaps.
    stage, real = batch.stage, batch.stage != PAD
    assert (stage == 1).any() and (stage % 2 == 0).any() and (real & (stage % 2 == 1)).any()
    assert ((batch.log_gap > 0) & (batch.log_gap < 1)).any()
    assert (batch.log_gap[~real] == 0).all()


def _stages_by_loop(sessions: list[list[Event]]) -> tuple[list[int], int]:
    """The funnel stage spelled as a per-event loop; also how many events have a non-empty cart
    while adds minus removes so far is <= 0 (a remove before an add)."""
    stages, clamped = [], 0
    for events in sessions:
        first_add: int | None = None
        cart = net = 0
        for i, (action, _, _) in enumerate(events):
            if action == "add":
                cart, net = cart + 1, net + 1
                first_add = i if first_add is None else first_add
            elif action == "remove":
                cart, net = max(0, cart - 1), net - 1
            since = -1 if first_add is None else min(i - first_add, 8)
            stages.append(1 + 2 * (since + 1) + (cart > 0))
            clamped += cart > 0 and net <= 0
    return stages, clamped


@pytest.mark.parametrize("seed", [7, 8])
def test_funnel_stage_of_random_sessions_equals_a_per_event_loop(seed: int) -> None:
    collapsed = [collapse_session(s) for s in random_sessions(seed, 60)]
    sessions: list[list[Event]] = []
    for events in collapsed:
        sessions += [events, []]  # an empty session after each one
    expected, clamped = _stages_by_loop(sessions)
    assert tokenize(event_table(sessions), VOCAB, SPEC).stage.tolist() == expected
    assert clamped > 0  # the sessions do remove before they add
    assert max(expected) == 20  # and reach the cap


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_later_events_never_change_a_prefix(seed: int) -> None:
    rng = random.Random(seed)
    for session in random_sessions(seed, 30):
        events = collapse_session(session)
        end = max(int(r["server_timestamp_epoch_ms"]) for r in session)
        later = random_session(rng, end + 1)  # strictly after the session so far
        longer = collapse_session(session + later)
        assert longer[: len(events)] == events
        full = tokenize(event_table([longer]), VOCAB, SPEC)
        # Every prefix of the session so far encodes the same with or without the later events.
        for p in range(1, len(events) + 1):
            alone = tokenize(event_table([events[:p]]), VOCAB, SPEC)
            expected = windows(alone, np.array([0]), np.array([p]), SPEC)
            _assert_inputs_equal(windows(full, np.array([0]), np.array([p]), SPEC), expected)
        _assert_inputs_equal(
            encode_sessions([session], VOCAB, SPEC),
            windows(full, np.array([0]), np.array([len(events)]), SPEC),
        )


# --- fit_vocabulary -------------------------------------------------------------------------------


def test_fit_gives_ids_only_to_training_skus_with_enough_events() -> None:
    loose = fit_vocabulary(TRAIN_COUNTS, CATALOG, FeatureSpec(min_sku_count=1))
    assert loose.trained_skus() == ["A", "B", "F", "C", "E"]
    strict = fit_vocabulary(TRAIN_COUNTS, CATALOG, FeatureSpec(min_sku_count=4))
    assert strict.trained_skus() == ["A", "B"]
    # Catalogued but never (or too rarely) trained on: OOV id, catalog attributes kept.
    row = strict.lookup(np.array(["C", "D", "F"], dtype=object))
    assert row[2] == -1  # F: below the threshold and not catalogued
    assert strict.sku_token[row[:2]].tolist() == [SKU_OOV, SKU_OOV]
    assert strict.price_token[row[:2]].tolist() == [PRICE_NONE, 2]
    assert strict.category_token[row[:2]].tolist() == [3, 1]
    assert strict.n_sku_tokens == 5


def test_fit_is_deterministic_whatever_the_input_order() -> None:
    counts = {f"sku{i:02d}": (i % 4) + 1 for i in range(40)}  # many ties in count
    catalog = pd.DataFrame(
        {
            "product_sku_hash": [f"sku{i:02d}" for i in range(0, 60, 2)],
            "category_hash": [f"c{i % 3}/l{i % 5}" if i % 7 else None for i in range(0, 60, 2)],
            "price_bucket": [float(i % 11) if i % 11 else None for i in range(0, 60, 2)],
        }
    )
    first = fit_vocabulary(counts, catalog, SPEC)
    shuffled_counts = dict(reversed(list(counts.items())))
    shuffled_catalog = catalog.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = fit_vocabulary(shuffled_counts, shuffled_catalog, SPEC)
    _assert_vocab_equal(first, second)
    # Most frequent first, ties by hash.
    expected = sorted((s for s, c in counts.items() if c >= 2), key=lambda s: (-counts[s], s))
    assert first.trained_skus() == expected


def test_fit_with_no_catalog_and_no_counts() -> None:
    empty = pd.DataFrame({"product_sku_hash": [], "category_hash": [], "price_bucket": []})
    vocab = fit_vocabulary({}, empty, SPEC)
    assert vocab.trained_skus() == []
    assert vocab.n_sku_tokens == SKU_OOV + 1
    tokens = tokenize(event_table([[("detail", "A", T0), ("pageview", None, T0 + 1)]]), vocab, SPEC)
    assert tokens.sku.tolist() == [SKU_OOV, SKU_NONE]
    assert tokens.category.tolist() == [1, 1]


def _assert_vocab_equal(a: Vocabulary, b: Vocabulary) -> None:
    assert a.skus.tolist() == b.skus.tolist()
    for name in ("sku_token", "price_token", "category_token", "leaf_code"):
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.top_categories == b.top_categories


def test_vocabulary_save_load_round_trip(tmp_path: Path) -> None:
    VOCAB.save(tmp_path / "vocab")
    loaded = Vocabulary.load(tmp_path / "vocab")
    _assert_vocab_equal(loaded, VOCAB)
    table = event_table([LONG])
    a, b = tokenize(table, VOCAB, SPEC), tokenize(table, loaded, SPEC)
    for name in ("action", "sku", "gap", "price", "category", "move", "is_oov"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# --- FeatureSpec ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [FeatureSpec(), SPEC, FeatureSpec(max_events=1, min_sku_count=7)])
def test_feature_spec_dict_round_trip_through_json(spec: FeatureSpec) -> None:
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["gap_edges_s"] == list(spec.gap_edges_s)
    again = FeatureSpec.from_dict(data)
    assert again == spec
    assert again.n_gap_tokens == spec.n_gap_tokens == len(spec.gap_edges_s) + 3


def test_default_feature_spec() -> None:
    spec = FeatureSpec()
    assert spec.max_events == 20
    assert len(spec.gap_edges_s) == 20
    assert spec.gap_edges_s[0] == 1.0 and spec.gap_edges_s[-1] == 1800.0
    assert all(a < b for a, b in itertools.pairwise(spec.gap_edges_s))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_events": 0}, "max_events"),
        ({"gap_edges_s": (10.0, 1.0)}, "gap_edges_s"),
    ],
)
def test_feature_spec_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureSpec(**kwargs)


def test_event_table_checks_its_columns() -> None:
    with pytest.raises(AssertionError, match="offsets"):
        EventTable(
            offsets=np.array([0, 3]),
            actions=np.array(["pageview"], dtype=object),
            skus=np.array([None], dtype=object),
            timestamps_ms=np.array([T0]),
        )


def test_small_and_large_lookups_agree() -> None:
    """Serving's few SKUs go through a dict, training's many through pandas: the same rows."""
    from smallboat.features import vocab as vocab_module

    skus = np.array(["A", None, "nope", "C", "E", "D", "A"] * 100, dtype=object)
    small = np.concatenate([VOCAB.lookup(skus[i : i + 7]) for i in range(0, len(skus), 7)])
    assert len(skus) > vocab_module._SMALL_LOOKUP
    large = VOCAB.lookup(skus)
    np.testing.assert_array_equal(small, large)
    assert large[:3].tolist() == [VOCAB.skus.get_loc("A"), -1, -1]

"""A session's incremental state (`features.incremental`) against encoding the whole session.

After every append of random raw streams (duplicates, pageviews at a detail's millisecond,
purchases, removes before adds, unknown SKUs, out-of-order arrivals, 30-minute gaps, late events
bridging them), the state's prefix encoded with its carry must equal `encode_sessions` of the
session's current visit, every array exactly: no float is summed in another order (the carry adds
integers; gaps and durations are differences of the same integer times).
"""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallboat.features import FeatureSpec, encode_sessions, fit_vocabulary
from smallboat.features.encode import (
    Carry,
    collapse_session,
    encode_collapsed,
    event_table,
    tokenize,
)
from smallboat.features.incremental import (
    MAX_TAIL_ROWS,
    TAIL_WINDOWS,
    SessionPrefix,
    SessionState,
    current_session,
)
from smallboat.features.summary import events_after_first_add
from smallboat.schema import SESSION_GAP_MS
from tests.landing_data import browsing_row

SPEC = FeatureSpec(max_events=3, min_sku_count=2, gap_edges_s=(1.0, 10.0, 100.0))
CATALOG = pd.DataFrame(
    {
        "product_sku_hash": ["A", "B", "C", "D"],
        "category_hash": ["c1/x", "c1/y", "c2/x", None],
        "price_bucket": [3, 10, None, 1],
    }
)
VOCAB = fit_vocabulary({"A": 5, "B": 5, "C": 2, "E": 1, "F": 3}, CATALOG, SPEC)
T0 = 1_600_000_000_000
SKUS = ["A", "B", "C", "D", "E", "Z", None]  # D: no category; E: below min count; Z: unknown
STEPS = [0, 0, 1, 400, 1_000, 7_000, 60_000, 400_000, SESSION_GAP_MS, SESSION_GAP_MS + 1]


def random_stream(rng: random.Random) -> list[dict[str, Any]]:
    """Raw rows in ARRIVAL order: the awkward parts of real logs, several visits."""
    rows: list[dict[str, Any]] = []
    ts = T0
    for _ in range(rng.randint(1, 70)):
        ts += rng.choice(STEPS) if rng.random() < 0.97 else 2 * SESSION_GAP_MS
        if rng.random() < 0.35:
            rows.append(browsing_row("s", ts, url=rng.choice(["u1", "u2", None])))
            continue
        action = rng.choice(["detail", "detail", "add", "remove", "add", "remove", "detail"])
        if rng.random() < 0.04:
            action = "purchase"
        sku = rng.choice(SKUS)
        rows.append(browsing_row("s", ts, action, sku, rng.choice([None, f"u-{sku}"])))
        if action == "detail" and rng.random() < 0.7:
            rows.append(browsing_row("s", ts, url=f"u-{sku}"))  # its pageview, same millisecond
    rows += [dict(r) for r in rng.sample(rows, k=min(len(rows), rng.randint(0, 4)))]
    # Out of order: some rows arrive a few places late, some (bridging a gap, or far older
    # than the head) at the very end.
    for _ in range(rng.randint(0, 6)):
        i = rng.randrange(len(rows))
        j = min(len(rows) - 1, i + rng.choice([1, 2, 5, 30, len(rows)]))
        rows.insert(j, rows.pop(i))
    if rng.random() < 0.2:  # a late event in the middle of a 30-minute gap: may join two visits
        times = sorted(r["server_timestamp_epoch_ms"] for r in rows)
        gaps = [(b - a, a) for a, b in pairwise(times) if b - a > SESSION_GAP_MS]
        if gaps:
            width, start = rng.choice(gaps)
            rows.append(browsing_row("s", start + width // 2, "detail", "A", "u-A"))
    return rows


def chunks(rng: random.Random, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out, i = [], 0
    while i < len(rows):
        n = rng.choice([1, 1, 1, 2, 3, 8])
        out.append(rows[i : i + n])
        i += n
    return out


def assert_prefix_is_the_whole_visit(prefix: SessionPrefix, stored: list[dict[str, Any]]) -> None:
    """`prefix` (carry + recent events) encodes exactly as the current visit of `stored`."""
    visit = current_session(stored)
    collapsed = collapse_session(visit)
    assert prefix.has_rows == bool(visit)
    assert prefix.n_events == len(collapsed)
    assert prefix.events_after_first_add() == events_after_first_add(collapsed)
    if not collapsed:
        assert prefix.events == [] and prefix.carry is None
        return
    assert prefix.events == collapsed[len(collapsed) - len(prefix.events) :]
    got = encode_collapsed([prefix.events], VOCAB, SPEC, [prefix.carry])
    want = encode_sessions([visit], VOCAB, SPEC)
    for name, value in want.to_arrays().items():
        np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)
        assert getattr(got, name).dtype == value.dtype, name


def replay(seed: int) -> tuple[int, int]:
    """Append a random stream in random chunks, checking after each; (rebuilds, freezes)."""
    rng = random.Random(seed)
    stored: list[dict[str, Any]] = []
    state = SessionState(SPEC.max_events)
    rebuilds = frozen = 0
    for chunk in chunks(rng, random_stream(rng)):
        copies = [dict(r) for r in chunk]
        stored += copies
        if not state.apply(copies, window=SPEC.max_events):
            rebuilds += 1
            state = SessionState.build(stored, window=SPEC.max_events)
        prefix = state.prefix()
        assert_prefix_is_the_whole_visit(prefix, stored)
        # What is encoded per append stays bounded, however long the visit.
        assert len(prefix.events) <= TAIL_WINDOWS * SPEC.max_events + len(chunk) + 8
        frozen += prefix.carry is not None
        # And the state survives its stored form.
        again = SessionState.from_json(state.to_json())
        assert again is not None and again.prefix() == prefix
    return rebuilds, frozen


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32))
def test_the_incremental_state_encodes_exactly_as_the_whole_visit(seed: int) -> None:
    replay(seed)


def test_the_random_streams_exercise_freezing_and_rebuilds() -> None:
    """The property above is not vacuous: its streams freeze heads and force rebuilds."""
    totals = np.array([replay(seed) for seed in range(100)])
    assert (totals[:, 0] > 0).sum() > 6, "late events that force a rebuild"
    assert (totals[:, 1] > 0).sum() > 30, "appends encoded with a carried head"


def test_a_carry_holds_counts_cart_and_the_last_sku() -> None:
    events = [("add", "A", 1), ("remove", "A", 2), ("remove", "B", 3), ("pageview", None, 4)]
    carry = Carry.of(events)
    assert carry == Carry(4, 1, 0, 1, 2, 1, 4, 0, 0, "B")
    assert carry.extend([("add", "C", 9)]) == Carry(5, 1, 0, 2, 2, 1, 9, 0, 1, "C")


def test_a_late_event_older_than_the_head_asks_for_a_rebuild() -> None:
    rows = [browsing_row("s", T0 + i * 1000, "detail", "A", "u") for i in range(20)]
    state = SessionState.build(rows, window=SPEC.max_events)
    assert state.frozen_ms is not None  # 20 events, a tail of 6: the rest is frozen
    late = browsing_row("s", T0 + 500, "add", "B", "u")
    assert not state.apply([late], window=SPEC.max_events)
    # Another model window asks for a rebuild too (the tail is kept for one window size).
    assert not SessionState.build(rows, window=3).apply([], window=4)


def test_a_stored_state_of_another_format_is_not_read() -> None:
    assert SessionState.from_json(b'{"format": 0}') is None
    assert SessionState.from_json(b"not json") is None


@pytest.mark.parametrize("seed", range(40))
def test_tokens_after_a_carry_equal_the_whole_sessions_tokens(seed: int) -> None:
    """Every split of a session: its later events tokenized with the earlier ones' carry give
    the whole session's tokens of those events (gap, category move, funnel stage included)."""
    rng = random.Random(seed)
    events = collapse_session(current_session(random_stream(rng)))
    if not events:
        return
    whole = tokenize(event_table([events]), VOCAB, SPEC)
    for k in range(1, len(events)):
        later = tokenize(event_table([events[k:]]), VOCAB, SPEC, [Carry.of(events[:k])])
        for name in ("action", "sku", "gap", "log_gap", "price", "category", "move", "stage"):
            np.testing.assert_array_equal(
                getattr(later, name), getattr(whole, name)[k:], err_msg=f"{name} at split {k}"
            )


def test_a_retried_click_does_not_grow_the_tail() -> None:
    """A client retrying one click thousands of times: the tail keeps it once, and the prefix is
    still exactly the whole visit's (which collapses the copies into one event)."""
    rows = [browsing_row("s", T0 + i * 1000, "detail", "A", "u") for i in range(10)]
    state = SessionState.build(rows, window=SPEC.max_events)
    stored = list(rows)
    retried = browsing_row("s", T0 + 10_000, "add", "B", "u")
    for _ in range(3_000):
        stored.append(dict(retried))
        assert state.apply([dict(retried)], window=SPEC.max_events)
    assert len(state.tail) <= TAIL_WINDOWS * SPEC.max_events + 1
    assert_prefix_is_the_whole_visit(state.prefix(), stored)


def test_thousands_of_rows_in_one_millisecond_leave_a_bounded_tail() -> None:
    """Distinct rows sharing one millisecond are never split between head and tail, so only the
    bound keeps a hostile client from growing the state (and each append's cost) without end."""
    state = SessionState(SPEC.max_events)
    # Past the bound by a few hundred appends, each of which must trim: every row costs a
    # collapse of the whole tail (one millisecond is never split), so more rows only cost time.
    for i in range(MAX_TAIL_ROWS + 300):
        row = browsing_row("s", T0, "detail", f"sku-{i}", "u")
        assert state.apply([row], window=SPEC.max_events)
    assert len(state.tail) == MAX_TAIL_ROWS
    assert len(state.prefix().events) == MAX_TAIL_ROWS


def test_an_in_order_click_collapses_only_its_own_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common click (later than every stored row, no purchase yet) collapses the new rows
    alone, not the whole tail again; a late row, itself and the tail's rows after it; a row
    after a purchase, the whole tail. Either way the prefix is the whole visit's."""
    import smallboat.features.incremental as incremental

    collapsed: list[int] = []

    def counting(rows: Any) -> Any:
        collapsed.append(len(rows))
        return collapse_session(rows)

    monkeypatch.setattr(incremental, "collapse_session", counting)
    rows = [browsing_row("s", T0 + i * 1000, "detail", "A", f"u{i}") for i in range(40)]
    state = SessionState.build(rows, window=SPEC.max_events)
    stored = list(rows)
    for i in range(40, 50):
        collapsed.clear()
        row = browsing_row("s", T0 + i * 1000, "add", "B", "u")
        stored.append(row)
        assert state.apply([row], window=SPEC.max_events)
        assert collapsed == [1]
        assert_prefix_is_the_whole_visit(state.prefix(), stored)
    late = browsing_row("s", T0 + 48_500, url="late")  # inside the tail
    bought = browsing_row("s", T0 + 60_000, "purchase", "B", "u")  # in order: its row alone
    after = browsing_row("s", T0 + 61_000, "detail", "C", "u")  # the tail holds a purchase
    for row, recollapsed in ((late, 2), (bought, 1), (after, None)):
        collapsed.clear()
        before = len(state.tail)
        stored.append(row)
        assert state.apply([row], window=SPEC.max_events)
        # The late row: itself and the tail's row after it (49 s); after the purchase: all.
        assert collapsed == [before + 1 if recollapsed is None else recollapsed]
        assert_prefix_is_the_whole_visit(state.prefix(), stored)

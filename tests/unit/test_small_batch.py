"""`encode_small_batch` (serving's per-event encoder) against `encode_collapsed` (the vectorised
reference training uses): the same `ModelInputs`, every array bit for bit and of the same dtype,
on random batches of collapsed sessions with and without carries.

The sessions have what the features are touchy about: same-millisecond events, gaps exactly on
a bucket edge, removes before adds, carts emptied and refilled, SKUs with no category or outside
the vocabulary, carries holding a cart, a first add or a last SKU, sessions shorter and longer
than the window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallboat.features import FeatureSpec, ModelInputs, fit_vocabulary
from smallboat.features import small_batch as small_batch_module
from smallboat.features.encode import Carry, CollapsedEvent, encode_collapsed
from smallboat.features.small_batch import SMALL_BATCH_EVENTS, encode_small_batch
from smallboat.features.summary import (
    SMALL_SUMMARY_ROWS,
    SUMMARY_COLUMNS,
    summarize,
    summary_rows,
)

CATALOG = pd.DataFrame(
    {
        "product_sku_hash": ["A", "B", "C", "D", "G"],
        "category_hash": ["c1/x", "c1/y", "c2/x", None, "c1/x"],
        "price_bucket": [3, 10, None, 1, 7],
    }
)
TRAIN_COUNTS = {"A": 5, "B": 5, "C": 2, "E": 1, "F": 3, "G": 2}
SPECS = [
    FeatureSpec(max_events=4, min_sku_count=2, gap_edges_s=(1.0, 10.0, 100.0)),
    FeatureSpec(max_events=1, min_sku_count=2, gap_edges_s=(0.5,)),
    FeatureSpec(min_sku_count=2),  # the default: 20 edges with 3 decimals, a window of 20
]
VOCABS = [fit_vocabulary(TRAIN_COUNTS, CATALOG, spec) for spec in SPECS]
# D: no category; E: under the count (OOV, not in the catalog); F: trained, not in the catalog;
# Z: unknown everywhere; None: a plain pageview's (no SKU).
SKUS = ["A", "B", "C", "D", "E", "F", "G", "Z", None]
# Gaps in ms: ties, exactly the edges of the specs (1.0, 10.0, 100.0, 0.5 and the default's
# 1.484, 2.203, ...), either side of them, and long ones.
STEPS = [0, 0, 1, 499, 500, 501, 999, 1_000, 1_001, 1_484, 2_203, 9_999, 10_000, 100_000, 10**6]
T0 = 1_600_000_000_000

action = st.sampled_from(["pageview", "detail", "detail", "add", "remove", "add", "remove"])
event_parts = st.tuples(action, st.sampled_from(SKUS), st.sampled_from(STEPS))


def _events(parts: list[tuple[str, str | None, int]], start: int) -> list[CollapsedEvent]:
    """Collapsed events (a pageview has no SKU) at the given steps from `start`."""
    out: list[CollapsedEvent] = []
    ts = start
    for name, sku, step in parts:
        ts += step
        out.append((name, None if name == "pageview" else sku, ts))
    return out


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, list[list[CollapsedEvent]], list[Carry | None] | None]:
    """(spec index, sessions, carries or None): a carried session fills its window."""
    which = draw(st.integers(0, len(SPECS) - 1))
    width = SPECS[which].max_events
    sessions: list[list[CollapsedEvent]] = []
    carries: list[Carry | None] = []
    for i in range(draw(st.integers(1, 4))):
        carried = draw(st.booleans())
        n = draw(st.integers(width if carried else 1, width + 8))
        start, carry = T0 + i * 86_400_000, None
        if carried:  # the session's earlier events, folded
            older = _events(draw(st.lists(event_parts, min_size=1, max_size=12)), start)
            start, carry = older[-1][2], Carry.of(older)
        sessions.append(_events(draw(st.lists(event_parts, min_size=n, max_size=n)), start))
        carries.append(carry)
    any_carry = any(c is not None for c in carries)
    return which, sessions, carries if any_carry or draw(st.booleans()) else None


def assert_same_inputs(got: ModelInputs, want: ModelInputs) -> None:
    for name, value in want.to_arrays().items():
        mine = getattr(got, name)
        assert mine.dtype == value.dtype, f"{name}: {mine.dtype} != {value.dtype}"
        assert mine.shape == value.shape, f"{name}: {mine.shape} != {value.shape}"
        # Bit for bit: the model must see the same float32 values whichever path encoded them.
        assert mine.tobytes() == value.tobytes(), f"{name}:\n{mine}\n!=\n{value}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_the_per_event_encoder_equals_the_vectorised_one(
    batch: tuple[int, list[list[CollapsedEvent]], list[Carry | None] | None],
) -> None:
    which, sessions, carries = batch
    spec, vocab = SPECS[which], VOCABS[which]
    want = encode_collapsed(sessions, vocab, spec, carries)
    assert_same_inputs(encode_small_batch(sessions, vocab, spec, carries), want)


def test_the_property_takes_the_per_event_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small batch never reaches `encode_collapsed` (else the property compares it with
    itself), and a large one does."""
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> ModelInputs:
        calls.append(1)
        return encode_collapsed(*args, **kwargs)

    monkeypatch.setattr(small_batch_module, "encode_collapsed", counted)
    spec, vocab = SPECS[2], VOCABS[2]
    session = _events([("detail", "A", 1_000), ("add", "A", 2_203), ("detail", "Z", 0)] * 8, T0)
    carry = Carry.of(session[:3])
    encode_small_batch([session], vocab, spec)
    encode_small_batch([session[3:]], vocab, spec, [carry])
    assert calls == []
    many = [session] * (SMALL_BATCH_EVENTS // len(session) + 1)
    got = encode_small_batch(many, vocab, spec)
    assert calls == [1]
    assert_same_inputs(got, encode_collapsed(many, vocab, spec))


def test_a_real_length_session_in_and_out_of_the_window() -> None:
    """Hand-checked anchors beside the property: padding, the window's last events, counts."""
    spec, vocab = SPECS[0], VOCABS[0]  # window 4, edges 1, 10, 100 s
    events = _events(
        [("pageview", None, 0), ("detail", "A", 500), ("add", "A", 1_000), ("remove", "A", 0)],
        T0,
    )
    short = encode_small_batch([events[:2]], vocab, spec)
    assert short.action.tolist() == [[0, 0, 1, 2]]
    assert short.gap.tolist() == [[0, 0, 1, 2]]  # first event; then 0.5 s: under 1 s
    assert short.log_gap[0, :3].tolist() == [0.0, 0.0, 0.0] and short.log_gap[0, 3] > 0
    longer = encode_small_batch([[*events, ("detail", "B", T0 + 200_000)]], vocab, spec)
    assert longer.action.tolist() == [[2, 3, 4, 2]]  # the last 4 of 5 events
    assert longer.stage.tolist() == [[1, 4, 5, 7]]  # add: in the cart; remove: emptied
    assert longer.counts.tolist() == [[5, 1, 2, 1, 1, 200.0]]
    assert longer.events_used.tolist() == [4]


@pytest.mark.parametrize(
    ("sessions", "carries", "error", "match"),
    [
        ([[("detail", "A", T0)], []], None, ValueError, r"\[1\] have no events"),
        ([[("click", "A", T0)]], None, ValueError, "unknown action"),
        (
            [[("detail", "A", T0 + 5)]],
            [Carry.of([("add", "A", T0)])],
            AssertionError,
            "must fill the window",
        ),
    ],
)
def test_what_the_reference_refuses_is_refused_with_its_error(
    sessions: list[list[CollapsedEvent]],
    carries: list[Carry | None] | None,
    error: type[Exception],
    match: str,
) -> None:
    spec, vocab = SPECS[0], VOCABS[0]
    with pytest.raises(error, match=match):
        encode_collapsed(sessions, vocab, spec, carries)
    with pytest.raises(error, match=match):
        encode_small_batch(sessions, vocab, spec, carries)


def test_the_vocabulary_attributes_are_its_token_tables() -> None:
    vocab = VOCABS[0]
    for row, sku in enumerate(vocab.skus):
        assert vocab.sku_attributes[sku] == (
            int(vocab.sku_token[row]),
            int(vocab.price_token[row]),
            int(vocab.category_token[row]),
            int(vocab.leaf_code[row]),
        )
    assert np.isin(["A", "D", "F"], list(vocab.sku_attributes)).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.integers(0, 12))
def test_summary_rows_are_summarize_row_by_row(
    batch: tuple[int, list[list[CollapsedEvent]], list[Carry | None] | None], extra: int
) -> None:
    """`summary_rows` (read per row in Python up to SMALL_SUMMARY_ROWS rows, from `summarize`
    past them) gives `summarize`'s values, as plain Python values of the same types."""
    which, sessions, carries = batch
    spec, vocab = SPECS[which], VOCABS[which]
    sessions = sessions + [sessions[0]] * extra  # past SMALL_SUMMARY_ROWS too
    carries = None if carries is None else carries + [carries[0]] * extra
    inputs = encode_collapsed(sessions, vocab, spec, carries)
    columns = {name: values.tolist() for name, values in summarize(inputs, vocab).items()}
    rows = summary_rows(inputs, vocab)
    assert len(rows) == len(sessions)
    for r, row in enumerate(rows):
        assert list(row) == list(SUMMARY_COLUMNS)
        for name, value in row.items():
            assert value == columns[name][r] and type(value) is type(columns[name][r]), name


def test_summary_rows_name_the_last_products_price_and_category() -> None:
    spec, vocab = SPECS[0], VOCABS[0]  # A: c1/x, price 3; D: no category, price 1; Z: unknown
    sessions: list[list[CollapsedEvent]] = [
        [("detail", "A", T0), ("pageview", None, T0 + 1)],
        [("detail", "A", T0), ("detail", "D", T0 + 1)],
        [("detail", "Z", T0)],
        [("pageview", None, T0)],
    ]
    rows = summary_rows(encode_small_batch(sessions, vocab, spec), vocab)
    assert [(r["last_price"], r["last_category"], r["sku_events"]) for r in rows] == [
        ("3", "c1", 1),
        ("1", "unknown", 2),
        ("unknown", "unknown", 1),
        ("unknown", "unknown", 0),
    ]
    assert len(sessions) <= SMALL_SUMMARY_ROWS  # read per row, not by `summarize`

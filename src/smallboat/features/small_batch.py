"""A few sessions -> model inputs, event by event in plain Python: serving's small batches.

`encode_collapsed` (`features.encode`) is vectorised for training's millions of events: about 120
NumPy calls whatever the batch, ~0.2 ms for one session, nearly all of it per-call overhead. A
prediction request holds one session or a few, and a loop over their events in Python costs a
fraction of that. `encode_small_batch` is that loop, spelled after the definitions the vectorised
code implements (the funnel stage's clamped cart, the category move against the previous product
event, the carry's continuation), and it gives `encode_collapsed`'s `ModelInputs` bit for bit:
tests/unit/test_small_batch.py holds the two equal on random sessions, with and without carries.
A batch past SMALL_BATCH_EVENTS events (where NumPy's fixed cost is paid back) goes to
`encode_collapsed` itself, as does anything it would refuse (an empty session, an unknown action,
a carried prefix shorter than the window), so every error is the reference's own.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

from smallboat.features.encode import (
    LOG_SESSION_GAP,
    Carry,
    CollapsedEvent,
    ModelInputs,
    encode_collapsed,
)
from smallboat.features.spec import (
    ACTION_TOKEN,
    CATEGORY_NONE,
    GAP_FIRST,
    MOVE_NA,
    MOVE_OTHER,
    MOVE_SAME,
    MOVE_UNKNOWN,
    PAD,
    PRICE_NONE,
    SKU_NONE,
    SKU_OOV,
    STAGE_BEFORE_ADD,
    STAGE_MAX_SINCE_ADD,
    FeatureSpec,
)
from smallboat.features.vocab import Vocabulary

SMALL_BATCH_EVENTS = 256
"""Up to this many events in a batch, the per-event loop is the faster encoder. Median ms on the
2-core dev machine (shared, busy), real sessions of the bench home, 15 events on average:

    sessions   events   encode_collapsed   per-event loop
    1          15       0.22               0.03
    4          59       0.29               0.11
    16         240      0.43               0.35
    24         359      0.49               0.51
"""
_INT8_MAX = 127  # gap tokens are int8 in `tokenize`: a spec with more buckets takes its path

_NO_PRODUCT = -2  # the previous product's leaf when there was none (-1: a product, leaf unknown)
_ADD, _REMOVE = ACTION_TOKEN["add"], ACTION_TOKEN["remove"]
_COUNTED = {ACTION_TOKEN[name]: k for k, name in enumerate(("pageview", "detail", "add", "remove"))}


def encode_small_batch(
    collapsed: Sequence[Sequence[CollapsedEvent]],
    vocab: Vocabulary,
    spec: FeatureSpec,
    carry: Sequence[Carry | None] | None = None,
) -> ModelInputs:
    """`encode_collapsed(collapsed, vocab, spec, carry)`, computed per event when the batch is
    small (see the module's docstring)."""
    width = spec.max_events
    if (
        not collapsed
        or sum(len(events) for events in collapsed) > SMALL_BATCH_EVENTS
        or spec.n_gap_tokens > _INT8_MAX
    ):
        return encode_collapsed(collapsed, vocab, spec, carry)
    columns: tuple[list[int], ...] = tuple([] for _ in range(7))  # the 7 token columns, flat
    gaps: list[float] = []  # seconds since the previous event; 0.0 for a first event and padding
    counts: list[list[float]] = []
    used: list[int] = []
    oov: list[int] = []
    for i, events in enumerate(collapsed):
        earlier = None if carry is None else carry[i]
        n = len(events)
        if n == 0 or (earlier is not None and n < width):
            return encode_collapsed(collapsed, vocab, spec, carry)  # raises its own error
        session = _encode_one(events, earlier, vocab, spec)
        if session is None:  # an unknown action
            return encode_collapsed(collapsed, vocab, spec, carry)
        tokens, session_gaps, session_counts, session_oov = session
        kept = min(n, width)
        pad = [PAD] * (width - kept)
        for column, values in zip(columns, tokens, strict=True):
            column += pad
            column += values[n - kept :]
        gaps += [0.0] * (width - kept)
        gaps += session_gaps[n - kept :]
        counts.append(session_counts)
        used.append(kept)
        oov.append(sum(session_oov[n - kept :]))
    shape = (len(collapsed), width)
    # One array for the seven columns (one NumPy call, not seven): each column is a contiguous
    # (N, L) slice of it, as the model's inputs want them.
    action, sku, gap, price, category, move, stage = np.array(columns, dtype=np.int64).reshape(
        (len(columns), *shape)
    )
    # log1p of exactly 0.0 is exactly 0.0: first events and padding need no mask. The same
    # NumPy calls as `tokenize`'s, so the float32 values are the same.
    log_gap = np.log1p(np.maximum(np.array(gaps, dtype=np.float64), 0.0)) / LOG_SESSION_GAP
    return ModelInputs(
        action=action,
        sku=sku,
        gap=gap,
        log_gap=log_gap.astype(np.float32).reshape(shape),
        price=price,
        category=category,
        move=move,
        stage=stage,
        counts=np.array(counts, dtype=np.float64).astype(np.float32),
        events_used=np.array(used, dtype=np.int64),
        oov_skus=np.array(oov, dtype=np.int64),
    )


def _encode_one(
    events: Sequence[CollapsedEvent], carry: Carry | None, vocab: Vocabulary, spec: FeatureSpec
) -> tuple[tuple[list[int], ...], list[float], list[float], list[int]] | None:
    """One session's per-event token columns (action, sku, gap, price, category, move, stage),
    gaps in seconds, whole-prefix counts (COUNT_FEATURES) and OOV flags; None at an unknown
    action."""
    attributes = vocab.sku_attributes
    edges = spec.gap_edges_s
    action_col: list[int] = []
    sku_col: list[int] = []
    gap_col: list[int] = []
    price_col: list[int] = []
    category_col: list[int] = []
    move_col: list[int] = []
    stage_col: list[int] = []
    gaps: list[float] = []
    is_oov: list[int] = []
    if carry is None:
        position, first_add, cart, previous_ms = 0, -1, 0, None
        previous_leaf = _NO_PRODUCT
        n_events, counted, first_ms = 0, [0, 0, 0, 0], events[0][2]
    else:
        position, first_add, cart, previous_ms = (
            carry.events, carry.first_add, carry.cart, carry.last_ms
        )  # fmt: skip
        previous_leaf = _NO_PRODUCT
        if carry.last_sku is not None:
            previous_leaf = attributes.get(carry.last_sku, _UNKNOWN_SKU)[3]
        n_events, counted, first_ms = carry.events, list(carry.counts), carry.first_ms
    for action, sku_hash, ts in events:
        token = ACTION_TOKEN.get(action)
        if token is None:
            return None
        if sku_hash is None:
            sku, price, category, leaf = SKU_NONE, PRICE_NONE, CATEGORY_NONE, -1
            move = MOVE_NA
        else:
            sku, price, category, leaf = attributes.get(sku_hash, _UNKNOWN_SKU)
            if previous_leaf == _NO_PRODUCT:
                move = MOVE_NA
            elif leaf < 0 or previous_leaf < 0:
                move = MOVE_UNKNOWN
            else:
                move = MOVE_SAME if leaf == previous_leaf else MOVE_OTHER
            previous_leaf = leaf
        if previous_ms is None:  # the session's first event
            gap, gap_s = GAP_FIRST, 0.0
        else:
            gap_s = (ts - previous_ms) / 1000.0
            gap = bisect_right(edges, gap_s) + GAP_FIRST + 1
        previous_ms = ts
        # The funnel: events since the first add (capped), and the cart, never below 0.
        if token == _ADD:
            cart += 1
            if first_add < 0:
                first_add = position
        elif token == _REMOVE:
            cart = max(0, cart - 1)
        since = min(position - first_add, STAGE_MAX_SINCE_ADD) if first_add >= 0 else -1
        position += 1
        k = _COUNTED.get(token)
        if k is not None:
            counted[k] += 1
        action_col.append(token)
        sku_col.append(sku)
        gap_col.append(gap)
        price_col.append(price)
        category_col.append(category)
        move_col.append(move)
        stage_col.append(STAGE_BEFORE_ADD + (since + 1) * 2 + (cart > 0))
        gaps.append(gap_s)
        is_oov.append(sku == SKU_OOV)
    n_events += len(events)
    duration_s = (events[-1][2] - first_ms) / 1000.0
    columns = (action_col, sku_col, gap_col, price_col, category_col, move_col, stage_col)
    return columns, gaps, [n_events, *counted, duration_s], is_oov


_UNKNOWN_SKU = (SKU_OOV, PRICE_NONE, CATEGORY_NONE, -1)
"""The attributes of a SKU the vocabulary does not hold (`Vocabulary.sku_attributes`)."""

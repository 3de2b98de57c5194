"""Session prefix -> one row of tabular features, for tree models (the LightGBM intent candidate).

A pure function of the encoded `ModelInputs` (what `windows` gives training and `encode_collapsed`
gives serving, held equal by the parity tests) and the prod2vec SKU vectors the bundle carries, so
training and serving compute the same row from the same prefix. A serving request's few prefixes
are computed event by event in Python (`tabular_small`: NumPy's fixed cost per call is most of a
vectorised row's cost there); its values are this module's, by construction and by a property test.
Missing values (no cart, no known SKU) are NaN, which LightGBM routes as missing.
"""

from __future__ import annotations

import numpy as np

from smallboat.features.encode import ModelInputs
from smallboat.features.funnel import FUNNEL_FEATURES, funnel_columns
from smallboat.features.spec import (
    ACTION_TOKEN,
    COUNT_FEATURES,
    MOVE_NA,
    MOVE_OTHER,
    MOVE_SAME,
    PAD,
    PRICE_NONE,
    SKU_FIRST,
    STAGE_BEFORE_ADD,
)
from smallboat.features.tabular_small import SMALL_ROWS, ordered_sum, similarity_sums, small_rows

TABULAR_FEATURES: tuple[str, ...] = (
    *COUNT_FEATURES,
    "events_used",
    "oov_skus",
    "action_last",
    "action_prev",
    "action_prev2",
    "log_gap_last",
    "log_gap_mean",
    "log_gap_max",
    "price_last",
    "price_mean",
    "price_last_vs_mean",
    "stage_last",
    "move_last",
    "same_category_share",
    "category_last",
    "window_adds",
    "window_removes",
    "window_details",
    "since_add",
    "since_detail",
    "distinct_skus",
    "last_sku_repeats",
    "sim_last_session",
    "sim_last_cart",
    "sim_last_cart_max",
    "sim_last_prev",
    "session_coherence",
    "cart_nonempty",
    "after_add_events",
    "after_add_log_gap_mean",
    "after_add_log_gap_sum",
    "after_add_same_moves",
    "after_add_other_moves",
    "after_add_same_share",
    "after_add_adds",
    "after_add_details",
    "add_price_mean",
    "add_price_first",
    *FUNNEL_FEATURES,
)
"""The columns of `tabular_features`, in order (a tree model's feature names)."""

CHUNK_ROWS = 16_384
"""Prefixes per vectorised step: bounds the (rows, window, dim) similarity array's memory."""


def tabular_features(inputs: ModelInputs, sku_vectors: np.ndarray) -> np.ndarray:
    """(N, len(TABULAR_FEATURES)) float32: counts, times and dwell, prices, positions and prod2vec
    similarities of each prefix's last product to the session's products and to the cart.

    `sku_vectors`: (n_sku_tokens, d) prod2vec vectors indexed by SKU token (rows of the special
    tokens are ignored)."""
    return tabular_rows(inputs, unit_rows(sku_vectors))


def tabular_rows(inputs: ModelInputs, unit: np.ndarray) -> np.ndarray:
    """`tabular_features` from the vectors' `unit_rows`, which a model scoring call after call
    keeps (normalising every SKU's vector costs O(n_sku) a call).

    Up to SMALL_ROWS prefixes (a serving request) the row is computed event by event in Python
    (`tabular_small.small_rows`, the same values as `vectorised_rows` by construction and by
    test), larger batches (training's) with NumPy. Median ms on the 2-core dev machine (shared),
    real 20-event sessions of a trained home:

        prefixes   vectorised   per event
        1          0.45         0.05
        8          0.50         0.24
        16         0.56         0.43
        24         0.63         0.63
        64         0.88         1.75
    """
    if 0 < len(inputs) <= SMALL_ROWS:
        return small_rows(inputs, unit)
    return vectorised_rows(inputs, unit)


def vectorised_rows(inputs: ModelInputs, unit: np.ndarray) -> np.ndarray:
    """`tabular_rows` with NumPy, CHUNK_ROWS prefixes per step, (N, len(TABULAR_FEATURES))."""
    n = len(inputs)
    out = np.empty((n, len(TABULAR_FEATURES)), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, n))
        out[rows] = _chunk(inputs, rows, unit)
    return out


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each SKU's vector scaled to length 1, (n_sku_tokens, d) float32 (zero for the special
    tokens and zero vectors)."""
    v = np.asarray(vectors, dtype=np.float32).copy()
    v[:SKU_FIRST] = 0.0
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def _last_true(mask: np.ndarray) -> np.ndarray:
    """Per row, the column of the last True (-1 when none), (N,)."""
    width = mask.shape[1]
    rev = np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), width - 1 - rev, -1)


def _nanmean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    return np.where(count > 0, ordered_sum(values, mask) / np.maximum(count, 1), np.nan)


def _chunk(inputs: ModelInputs, rows: slice, unit: np.ndarray) -> np.ndarray:
    action = inputs.action[rows]
    sku = inputs.sku[rows]
    log_gap = inputs.log_gap[rows].astype(np.float64)
    price = inputs.price[rows]
    stage = inputs.stage[rows]
    move = inputs.move[rows]
    category = inputs.category[rows]
    n, width = action.shape
    row = np.arange(n)
    valid = action != PAD
    last = width - 1  # windows are left-padded: the last event is in the last column

    def at(values: np.ndarray, col: np.ndarray) -> np.ndarray:
        return np.where(col >= 0, values[row, np.maximum(col, 0)], np.nan)

    # the gap before a window's first event is 0 (a session start) or unknown (cut off): skip it
    first = width - valid.sum(axis=1)
    later = valid & (np.arange(width)[None, :] > first[:, None])
    known_price = valid & (price > PRICE_NONE)
    price_value = (price - PRICE_NONE).astype(np.float64)  # deciles 1..10
    price_mean = _nanmean(price_value, known_price)
    price_last = np.where(known_price[:, last], price_value[:, last], np.nan)
    product = valid & (move != MOVE_NA) & (move != PAD)
    is_add = action == ACTION_TOKEN["add"]
    is_detail = action == ACTION_TOKEN["detail"]
    since_add = np.where(is_add.any(axis=1), last - _last_true(is_add), np.nan)
    since_detail = np.where(is_detail.any(axis=1), last - _last_true(is_detail), np.nan)

    known = sku >= SKU_FIRST
    last_known = _last_true(known)
    last_sku = np.where(last_known >= 0, sku[row, np.maximum(last_known, 0)], -1)
    sorted_skus = np.sort(np.where(known, sku, -1), axis=1)
    n_distinct = _distinct_count(sorted_skus)
    repeats = np.where(last_sku >= 0, (known & (sku == last_sku[:, None])).sum(axis=1), 0)

    has_last = last_known >= 0
    others = known & (np.arange(width)[None, :] != last_known[:, None])
    in_cart = known & is_add
    prev_known = _last_true(others)
    # cosines of the last product to each event's, and to the summed directions of the others,
    # of the cart and of all of them (whose length over their count is the session's coherence:
    # the mean cosine of its products to their mean direction)
    sims, dots, lengths = similarity_sums(
        unit, sku, np.maximum(last_known, 0), np.stack([others, in_cart, known], axis=1)
    )
    dots, lengths = dots.astype(np.float64), lengths.astype(np.float64)
    cosines = np.divide(dots, lengths, out=np.zeros_like(dots), where=lengths > 0)
    n_known = known.sum(axis=1)
    coherence = np.where(n_known > 0, lengths[:, 2] / np.maximum(n_known, 1), np.nan)

    # after the first add (the planted signal: buyers speed up and keep to the category after
    # it, non-buyers slow down and drift); the stage token before an event tells whether an add
    # came before it, even when that add is outside the window
    staged = stage > STAGE_BEFORE_ADD
    before = np.concatenate([staged[:, :1] & ~is_add[:, :1], staged[:, :-1]], axis=1)
    after = valid & before
    same = after & (move == MOVE_SAME)
    other = after & (move == MOVE_OTHER)
    add_price = is_add & known_price
    first_add_price = _last_true(add_price[:, ::-1])  # column in the reversed order
    add_price_first = np.where(
        first_add_price >= 0, price_value[row, width - 1 - np.maximum(first_add_price, 0)], np.nan
    )
    counts = inputs.counts[rows].astype(np.float64)
    cart = counts[:, COUNT_FEATURES.index("n_add")] > counts[:, COUNT_FEATURES.index("n_remove")]
    after_moves = same.sum(axis=1) + other.sum(axis=1)

    columns = [
        *counts.T,
        inputs.events_used[rows],
        inputs.oov_skus[rows],
        action[:, last],
        action[:, last - 1] if width > 1 else np.zeros(n),
        action[:, last - 2] if width > 2 else np.zeros(n),
        log_gap[:, last],
        _nanmean(log_gap, later),
        np.where(later.any(axis=1), np.where(later, log_gap, -np.inf).max(axis=1), np.nan),
        price_last,
        price_mean,
        price_last - price_mean,
        stage[:, last],
        move[:, last],
        _nanmean((move == MOVE_SAME).astype(np.float64), product),
        category[:, last],
        is_add.sum(axis=1),
        (action == ACTION_TOKEN["remove"]).sum(axis=1),
        is_detail.sum(axis=1),
        since_add,
        since_detail,
        n_distinct,
        repeats,
        np.where(has_last & others.any(axis=1), cosines[:, 0], np.nan),
        np.where(has_last & in_cart.any(axis=1), cosines[:, 1], np.nan),
        np.where(
            has_last & in_cart.any(axis=1), np.where(in_cart, sims, -np.inf).max(axis=1), np.nan
        ),
        np.where(has_last & (prev_known >= 0), at(sims, prev_known), np.nan),
        coherence,
        cart,
        after.sum(axis=1),
        _nanmean(log_gap, after),
        ordered_sum(log_gap, after),
        same.sum(axis=1),
        other.sum(axis=1),
        np.where(after_moves > 0, same.sum(axis=1) / np.maximum(after_moves, 1), np.nan),
        (after & is_add).sum(axis=1),
        (after & is_detail).sum(axis=1),
        _nanmean(price_value, add_price),
        add_price_first,
        *funnel_columns(inputs, rows),
    ]
    assert len(columns) == len(TABULAR_FEATURES), (len(columns), len(TABULAR_FEATURES))
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)


def _distinct_count(sorted_skus: np.ndarray) -> np.ndarray:
    """Distinct non-negative values per row of a row-sorted array (-1 marks "no SKU")."""
    present = sorted_skus >= 0
    new = np.concatenate(
        [present[:, :1], (np.diff(sorted_skus, axis=1) != 0) & present[:, 1:]], axis=1
    )
    return new.sum(axis=1)

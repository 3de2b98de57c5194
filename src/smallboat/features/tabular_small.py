"""A few prefixes' tabular rows, computed event by event in plain Python: serving's small batches.

`features.tabular` computes the LightGBM candidate's row of a prefix with ~150 NumPy calls
whatever the batch: ~0.45 ms for one session, nearly all of it NumPy's fixed cost per call, where
LightGBM's own prediction takes 0.04 ms. A prediction request holds one session or a few, and a
loop over their few events in Python costs a fraction of that. `small_rows` is that loop, spelled
after the definitions the vectorised code implements (`tabular._chunk`, `funnel.funnel_columns`),
and `tabular.tabular_rows` sends batches of up to SMALL_ROWS prefixes to it.

The two give the same float32 values, not close ones (tests/unit/test_tabular_small.py holds them
equal on random windows and on the synthetic generator's sessions), because they do the same IEEE
operations in the same order:
- counts, positions, maxima and the sums of integers or eighths are exact in any order;
- sums of other values (log gaps, prices in [-1, 1]) run left to right in both: the vectorised
  code adds with `ordered_sum` (a cumulative sum; NumPy's `sum` adds pairwise, in an order a loop
  would have to copy), the loop event after event;
- the prod2vec similarities come out of one NumPy function both call, `similarity_sums` (a row's
  values do not depend on the batch around it), and what follows from them is float64 arithmetic
  on the same operands in both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from smallboat.features.encode import LOG_SESSION_GAP, ModelInputs
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
    STAGE_MAX_SINCE_ADD,
)

SMALL_ROWS = 16
"""Up to this many prefixes, the per-event loop is the faster (it costs ~0.03 ms a prefix past the
first's 0.05 ms; NumPy ~0.45 ms plus ~0.007 ms a prefix): the table in `tabular.tabular_rows`."""

_PAGEVIEW, _DETAIL = ACTION_TOKEN["pageview"], ACTION_TOKEN["detail"]
_ADD, _REMOVE = ACTION_TOKEN["add"], ACTION_TOKEN["remove"]
_N_ADD, _N_REMOVE = COUNT_FEATURES.index("n_add"), COUNT_FEATURES.index("n_remove")
_NAN = math.nan
Window = tuple[list[int], list[int], list[float], list[int], list[int], list[int], list[int]]
"""A prefix's token columns as Python lists: action, sku, log_gap, price, stage, move, category."""


def ordered_sum(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the sum of `values` where `mask` holds, added left to right, (N,) float64."""
    return np.cumsum(np.where(mask, values, 0.0), axis=1)[:, -1]


def similarity_sums(
    unit: np.ndarray, sku: np.ndarray, last: np.ndarray, masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prod2vec arithmetic of a prefix's similarities, float32: the cosine of each event's
    SKU to the SKU in column `last` (N, L), and for each of the K masks (N, K, L) the sum of the
    masked events' unit vectors: its dot product with the last SKU's and its length (N, K).

    Batched matrix products: one small product per row, the same whatever the batch around it
    (tests/unit/test_tabular.py checks), and 60x faster than summing masked copies of the
    (N, K, L, d) vectors at training's batch sizes."""
    vec = unit[sku]  # (N, L, d); zero rows for pads and special tokens
    v_last = vec[np.arange(len(sku)), last][:, :, None]  # (N, d, 1)
    sims = np.matmul(vec, v_last)[:, :, 0]  # (N, L)
    sums = np.matmul(masks.astype(np.float32), vec)  # (N, K, d)
    dots = np.matmul(sums, v_last)[:, :, 0]  # (N, K)
    lengths = np.sqrt((sums * sums).sum(axis=2))  # (N, K)
    return sims, dots, lengths


class _Products(NamedTuple):
    """A window's known SKUs: what the similarity columns need."""

    last: int  # column of the last known SKU (-1: none)
    previous: int  # column of the one before it (-1: none)
    cart: list[int]  # columns of the adds of known SKUs
    known: int  # events with a known SKU
    distinct: int
    repeats: int  # events of the last known SKU


def small_rows(inputs: ModelInputs, unit: np.ndarray) -> np.ndarray:
    """`tabular.tabular_rows(inputs, unit)` computed per event, (N, n_columns) float32."""
    windows: list[Window] = list(
        zip(
            inputs.action.tolist(),
            inputs.sku.tolist(),
            inputs.log_gap.tolist(),
            inputs.price.tolist(),
            inputs.stage.tolist(),
            inputs.move.tolist(),
            inputs.category.tolist(),
            strict=True,
        )
    )
    products = [_products(window[0], window[1]) for window in windows]
    last = np.array([p.last for p in products], dtype=np.int64)
    # the masks as `tabular._chunk` builds them (the same NumPy calls: the same layout)
    known = inputs.sku >= SKU_FIRST
    others = known & (np.arange(known.shape[1])[None, :] != last[:, None])
    in_cart = known & (inputs.action == _ADD)
    masks = np.stack([others, in_cart, known], axis=1)
    sims, dots, lengths = similarity_sums(unit, inputs.sku, np.maximum(last, 0), masks)
    rows = []
    for window, counts, used, oov, product, sim, dot, length in zip(
        windows,
        inputs.counts.tolist(),
        inputs.events_used.tolist(),
        inputs.oov_skus.tolist(),
        products,
        sims.tolist(),
        dots.tolist(),
        lengths.tolist(),
        strict=True,
    ):
        events, after_add = _event_columns(window, counts)
        rows.append(
            [
                *counts,
                used,
                oov,
                *events,
                product.distinct,
                product.repeats,
                *_similarities(product, sim, dot, length),
                *after_add,
                *_funnel_columns(window),
            ]
        )
    return np.array(rows, dtype=np.float32)


def _products(action: list[int], sku: list[int]) -> _Products:
    cols = [col for col, token in enumerate(sku) if token >= SKU_FIRST]
    skus = [sku[col] for col in cols]
    return _Products(
        last=cols[-1] if cols else -1,
        previous=cols[-2] if len(cols) > 1 else -1,
        cart=[col for col in cols if action[col] == _ADD],
        known=len(cols),
        distinct=len(set(skus)),
        repeats=skus.count(skus[-1]) if cols else 0,
    )


def _similarities(
    product: _Products, sim: list[float], dot: list[float], length: list[float]
) -> list[float]:
    """sim_last_session, sim_last_cart, sim_last_cart_max, sim_last_prev, session_coherence."""
    has_last = product.last >= 0

    def cosine(k: int) -> float:  # of the last SKU to the k-th mask's summed direction
        return dot[k] / length[k] if length[k] > 0 else 0.0

    has_others = product.known > 1
    return [
        cosine(0) if has_last and has_others else _NAN,
        cosine(1) if has_last and product.cart else _NAN,
        max(sim[col] for col in product.cart) if has_last and product.cart else _NAN,
        sim[product.previous] if has_last and product.previous >= 0 else _NAN,
        length[2] / product.known if product.known else _NAN,
    ]


def _event_columns(window: Window, counts: list[float]) -> tuple[list[float], list[float]]:
    """The columns from action_last to since_detail, and from cart_nonempty to add_price_first."""
    action, _, log_gap, price, stage, move, category = window
    width = len(action)
    last = width - 1  # windows are left-padded: the last event is in the last column
    first = action.count(PAD)  # the gap before the first event is 0 or cut off: skip it
    gaps, gap_sum, gap_max = 0, 0.0, -math.inf
    prices, price_sum = 0, 0
    products, product_same = 0, 0
    adds = removes = details = 0
    last_add = last_detail = -1
    after, after_gap, same, other, after_adds, after_details = 0, 0.0, 0, 0, 0, 0
    add_prices, add_price_sum, add_price_first = 0, 0, _NAN
    # whether an add came before an event: the stage token of the event before it (the window's
    # first event: its own stage, unless it is the add)
    staged = stage[0] > STAGE_BEFORE_ADD and action[0] != _ADD
    for col, (token, gap, decile, stage_token, move_token) in enumerate(
        zip(action, log_gap, price, stage, move, strict=True)
    ):
        decile -= PRICE_NONE
        if token != PAD:
            if col > first:
                gaps += 1
                gap_sum += gap
                if gap > gap_max:
                    gap_max = gap
            if decile > 0:
                prices += 1
                price_sum += decile
            if move_token != MOVE_NA and move_token != PAD:
                products += 1
                product_same += move_token == MOVE_SAME
            if staged:
                after += 1
                after_gap += gap
                same += move_token == MOVE_SAME
                other += move_token == MOVE_OTHER
                after_adds += token == _ADD
                after_details += token == _DETAIL
        if token == _ADD:
            adds += 1
            last_add = col
            if decile > 0:
                add_price_first = decile if add_prices == 0 else add_price_first
                add_prices += 1
                add_price_sum += decile
        elif token == _DETAIL:
            details += 1
            last_detail = col
        elif token == _REMOVE:
            removes += 1
        staged = stage_token > STAGE_BEFORE_ADD
    known_last = action[last] != PAD and price[last] > PRICE_NONE
    price_last = float(price[last] - PRICE_NONE) if known_last else _NAN
    price_mean = float(price_sum) / prices if prices else _NAN
    events = [
        action[last],
        action[last - 1] if width > 1 else 0,
        action[last - 2] if width > 2 else 0,
        log_gap[last],
        gap_sum / gaps if gaps else _NAN,
        gap_max if gaps else _NAN,
        price_last,
        price_mean,
        price_last - price_mean,
        stage[last],
        move[last],
        product_same / products if products else _NAN,
        category[last],
        adds,
        removes,
        details,
        last - last_add if adds else _NAN,
        last - last_detail if details else _NAN,
    ]
    moves = same + other
    after_add = [
        counts[_N_ADD] > counts[_N_REMOVE],
        after,
        after_gap / after if after else _NAN,
        after_gap,
        same,
        other,
        same / moves if moves else _NAN,
        after_adds,
        after_details,
        float(add_price_sum) / add_prices if add_prices else _NAN,
        add_price_first,
    ]
    return events, after_add


def _funnel_columns(window: Window) -> list[float]:
    """The FUNNEL_FEATURES columns (see `funnel.funnel_columns` for their definitions)."""
    action, _, log_gap, price, stage, move, _ = window
    width = len(action)
    first = action.count(PAD)
    # the funnel stage before the window's first event, inferred from its own (`funnel_columns`)
    since = (stage[0] - STAGE_BEFORE_ADD) // 2 - 1 if action[0] != PAD else -1
    cart = action[0] != PAD and (stage[0] - STAGE_BEFORE_ADD) % 2 == 1
    since_before = since if since >= STAGE_MAX_SINCE_ADD else since - 1
    cart_before = (cart and action[0] != _ADD) or action[0] == _REMOVE
    post = [0.0] * 16  # the post_add columns, in FUNNEL_FEATURES' order
    pre_events = pre_timed = pre_details = pre_stays = pre_leaves = pre_viewed = 0
    pre_gap_sum = pre_view_price_sum = 0.0
    first_add = -1
    viewed, view_price = False, 0.0  # a product viewed before the event, and its price
    for col, (token, log_gap_token, price_token, stage_token, move_token) in enumerate(
        zip(action, log_gap, price, stage, move, strict=True)
    ):
        value = (price_token - PRICE_NONE - 5.5) / 4.5 if price_token > PRICE_NONE else 0.0
        if token != PAD:
            gap = log_gap_token * LOG_SESSION_GAP
            timed = col > first
            stays = token == _DETAIL and move_token == MOVE_SAME
            leaves = token == _DETAIL and move_token == MOVE_OTHER
            if since_before >= 0:  # after the first add
                late = min(since_before, STAGE_MAX_SINCE_ADD) / STAGE_MAX_SINCE_ADD
                _add_post(post, late, gap if timed else None, stays, leaves, cart_before, token)
                post[12] += value
                if viewed:
                    post[13] += view_price
                if token == _ADD:
                    post[14] += value
            else:
                pre_events += 1
                if timed:
                    pre_timed += 1
                    pre_gap_sum += gap
                pre_details += token == _DETAIL
                pre_stays += stays
                pre_leaves += leaves
                if viewed:
                    pre_viewed += 1
                    pre_view_price_sum += view_price
                if token == _ADD and first_add < 0:
                    first_add = col
            if token == _DETAIL:
                viewed, view_price = True, value
        # this event's stage is the stage before the next one
        since_before = (stage_token - STAGE_BEFORE_ADD) // 2 - 1 if token != PAD else -1
        cart_before = token != PAD and (stage_token - STAGE_BEFORE_ADD) % 2 == 1
    return [
        *post,
        pre_events,
        pre_gap_sum,
        pre_gap_sum / pre_timed if pre_timed else _NAN,
        pre_details,
        pre_stays,
        pre_leaves,
        pre_viewed,
        pre_view_price_sum,
        width - 1 - first_add if first_add >= 0 else _NAN,
    ]


def _add_post(
    post: list[float],
    late: float,
    gap: float | None,
    stays: bool,
    leaves: bool,
    cart_before: bool,
    token: int,
) -> None:
    """Adds one event after the first add to the post_add sums but the price ones (12-14)."""
    post[0] += late
    post[1] += late * late
    if gap is not None:
        post[2] += gap * late
    if stays:
        post[3] += 1
        post[5] += late
    if leaves:
        post[4] += 1
        post[6] += late
    if cart_before:
        post[7] += 1
        post[8] += late
    if token == _REMOVE:
        post[9] += 1
        post[10] += late
    if token == _ADD and not cart_before:
        post[11] += 1
    if token == _PAGEVIEW:
        post[15] += 1

"""features.tabular on hand-built sessions: the LightGBM candidate's row of a prefix, each expected
value worked out by hand from the vocabulary of tests/unit/test_features.py (A, B, C are SKU
tokens 3, 4, 6; A's price decile is 3, B's 10, C has none; leaves c1/x, c1/y, c2/x)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from smallboat.features import event_table, tokenize, windows
from smallboat.features.spec import ACTION_TOKEN
from smallboat.features.tabular import (
    TABULAR_FEATURES,
    tabular_features,
    unit_rows,
    vectorised_rows,
)
from smallboat.features.tabular_small import SMALL_ROWS
from tests.unit.test_features import SPEC, T0, VOCAB

# prod2vec vectors by SKU token: A along x, B along y, C on the diagonal; specials ignored
VECTORS = np.zeros((VOCAB.n_sku_tokens, 2), dtype=np.float32)
VECTORS[3] = [1.0, 0.0]  # A
VECTORS[4] = [0.0, 1.0]  # B
VECTORS[6] = [2.0, 2.0]  # C (length does not matter: cosines)
VECTORS[1] = [5.0, 5.0]  # SKU_NONE: must never count as a product

LN = math.log(1801.0)


Event = tuple[str, str | None, int]


def row(session: Sequence[Event], prefix: int | None = None) -> dict[str, float]:
    tokens = tokenize(event_table([session]), VOCAB, SPEC)
    inputs = windows(tokens, np.array([0]), np.array([prefix or len(session)]), SPEC)
    values = tabular_features(inputs, VECTORS)  # one prefix: `tabular_small`'s per-event path
    assert values.shape == (1, len(TABULAR_FEATURES)) and values.dtype == np.float32
    # the hand-worked values hold for training's NumPy path too
    assert values.tobytes() == vectorised_rows(inputs, unit_rows(VECTORS)).tobytes()
    return dict(zip(TABULAR_FEATURES, values[0].tolist(), strict=True))


SESSION: list[Event] = [
    ("detail", "A", T0),
    ("add", "A", T0 + 5_000),
    ("detail", "B", T0 + 65_000),
    ("detail", "C", T0 + 125_000),
]


def test_counts_positions_and_prices_of_a_prefix() -> None:
    r = row(SESSION)
    assert r["n_events"] == 4 and r["n_add"] == 1 and r["n_detail"] == 3
    assert r["duration_s"] == 125.0
    assert (r["action_last"], r["action_prev"], r["action_prev2"]) == (
        ACTION_TOKEN["detail"],
        ACTION_TOKEN["detail"],
        ACTION_TOKEN["add"],
    )
    assert r["since_add"] == 2 and r["since_detail"] == 0
    assert r["cart_nonempty"] == 1 and r["window_adds"] == 1
    assert r["distinct_skus"] == 3 and r["last_sku_repeats"] == 1
    assert math.isnan(r["price_last"])  # C has no price
    assert r["price_mean"] == pytest.approx((3 + 3 + 10) / 3)
    assert r["add_price_mean"] == 3 and r["add_price_first"] == 3
    assert r["log_gap_last"] == pytest.approx(math.log(61) / LN, rel=1e-6)
    assert r["log_gap_max"] == pytest.approx(math.log(61) / LN, rel=1e-6)


def test_after_the_first_add_the_gaps_and_category_moves_are_counted() -> None:
    r = row(SESSION)
    assert r["after_add_events"] == 2  # B and C came after the add
    assert r["after_add_log_gap_mean"] == pytest.approx(math.log(61) / LN, rel=1e-6)
    assert r["after_add_same_moves"] == 0 and r["after_add_other_moves"] == 2
    assert r["after_add_same_share"] == 0
    assert r["after_add_details"] == 2 and r["after_add_adds"] == 0


def test_prod2vec_similarities_of_the_last_product() -> None:
    r = row(SESSION)
    # session products before C: A, A, B -> mean direction (2, 1); cart: A; previous product: B
    assert r["sim_last_session"] == pytest.approx(3 / math.sqrt(10), rel=1e-6)
    assert r["sim_last_cart"] == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert r["sim_last_cart_max"] == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert r["sim_last_prev"] == pytest.approx(1 / math.sqrt(2), rel=1e-6)


def test_an_add_before_the_window_still_marks_the_events_after_it() -> None:
    # SPEC keeps the last 4 events: the add (2nd event) falls out of a 6-event prefix's window
    session: list[Event] = [
        ("detail", "A", T0),
        ("add", "A", T0 + 1_000),
        *[("detail", "A", T0 + 2_000 * i) for i in range(1, 5)],
    ]
    r = row(session)
    assert r["window_adds"] == 0 and math.isnan(r["since_add"])
    assert r["after_add_events"] == 4 and r["after_add_same_moves"] == 4
    assert r["cart_nonempty"] == 1  # from the whole-prefix counts


def test_a_one_event_prefix_has_missing_similarities_not_errors() -> None:
    r = row([("pageview", None, T0)])
    assert r["n_events"] == 1 and r["distinct_skus"] == 0
    for name in ("sim_last_session", "sim_last_cart", "sim_last_prev", "price_mean", "since_add"):
        assert math.isnan(r[name]), name
    assert r["after_add_events"] == 0


def test_rows_do_not_depend_on_the_batch_they_are_computed_in() -> None:
    sessions: list[list[Event]] = [SESSION, [("pageview", None, T0)], SESSION[:2]]
    tokens = tokenize(event_table(sessions), VOCAB, SPEC)
    lengths = np.array([4, 1, 2])
    # past SMALL_ROWS: the batch goes through NumPy, each prefix alone through the per-event path
    session = np.arange(SMALL_ROWS + 2) % 3
    together = tabular_features(windows(tokens, session, lengths[session], SPEC), VECTORS)
    for i in range(len(session)):
        alone = windows(tokens, session[i : i + 1], lengths[session[i : i + 1]], SPEC)
        assert tabular_features(alone, VECTORS).tobytes() == together[i : i + 1].tobytes()


def test_funnel_sums_weight_the_events_after_the_first_add_by_their_distance_from_it() -> None:
    r = row(SESSION)  # stages before B and C: 0 and 1 events since the add, the cart full
    assert r["post_add_late_sum"] == pytest.approx(1 / 8)
    assert r["post_add_late_sq_sum"] == pytest.approx(1 / 64)
    assert r["post_add_log_gap_late_sum"] == pytest.approx(math.log(61) / 8, rel=1e-6)
    assert (r["post_add_stays"], r["post_add_leaves"]) == (0, 2)  # A -> B -> C: other leaves
    assert (r["post_add_stays_late"], r["post_add_leaves_late"]) == (0, pytest.approx(1 / 8))
    assert (r["post_add_cart_events"], r["post_add_cart_late_sum"]) == (2, pytest.approx(1 / 8))
    assert r["post_add_removes"] == 0 and r["post_add_refills"] == 0
    # prices in [-1, 1]: A (decile 3) -5/9, B (decile 10) 1, C unknown 0
    assert r["post_add_price_sum"] == pytest.approx(1.0)  # B and C themselves
    assert r["post_add_view_price_sum"] == pytest.approx(-5 / 9 + 1)  # A before B, B before C
    assert r["post_add_add_price_sum"] == 0 and r["post_add_pageviews"] == 0


def test_funnel_sums_before_the_first_add_include_it() -> None:
    r = row(SESSION)
    assert r["pre_add_events"] == 2 and r["pre_add_details"] == 1
    # the session's first event has no gap; the add came 5 s after the view of A
    assert r["pre_add_log_gap_sum"] == pytest.approx(math.log(6), rel=1e-6)
    assert r["pre_add_log_gap_mean"] == pytest.approx(math.log(6), rel=1e-6)
    assert (r["pre_add_stays"], r["pre_add_leaves"]) == (0, 0)  # one view, no move yet
    assert r["pre_add_viewed_events"] == 1  # the add, after the view of A
    assert r["pre_add_view_price_sum"] == pytest.approx(-5 / 9)
    assert r["first_add_from_end"] == 2


def test_funnel_sums_when_the_first_add_is_before_the_window() -> None:
    session: list[Event] = [
        ("detail", "A", T0),
        ("add", "A", T0 + 1_000),
        *[("detail", "A", T0 + 2_000 * i) for i in range(1, 5)],
    ]
    r = row(session)  # the window holds the 4 views after the add: 1..4 events since it
    assert r["post_add_late_sum"] == pytest.approx((0 + 1 + 2 + 3) / 8)
    assert r["post_add_stays"] == 4 and r["post_add_cart_events"] == 4
    assert r["pre_add_events"] == 0 and math.isnan(r["pre_add_log_gap_mean"])
    assert math.isnan(r["first_add_from_end"])
    # the first of them has no view before it in the window
    assert r["post_add_view_price_sum"] == pytest.approx(3 * -5 / 9)

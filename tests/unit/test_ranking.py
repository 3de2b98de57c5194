"""Ranking metrics of the next-item task against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from smallboat.errors import SmallboatError
from smallboat.metrics.ranking import (
    catalog_coverage,
    hit_ranks,
    hr_at_k,
    mrr_at_k,
    popularity_bias,
    popularity_percentiles,
    ranking_report,
)

# Four examples, top-3 lists over items 0..9; -1 pads a short list.
TOP = np.array(
    [
        [5, 3, 7],  # target 5 at rank 1
        [1, 2, 4],  # target 4 at rank 3
        [9, 8, -1],  # target 0: a miss
        [2, 6, 3],  # target 6 at rank 2
    ]
)
TARGET = np.array([5, 4, 0, 6])


def test_hit_ranks() -> None:
    assert hit_ranks(TOP, TARGET).tolist() == [1, 3, 0, 2]


def test_mrr_and_hr_by_hand() -> None:
    assert mrr_at_k(TOP, TARGET, k=3) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert hr_at_k(TOP, TARGET, k=3) == pytest.approx(3 / 4)
    # a cut-off below a hit's rank turns it into a miss
    assert mrr_at_k(TOP, TARGET, k=2) == pytest.approx((1 + 0 + 0 + 1 / 2) / 4)
    assert hr_at_k(TOP, TARGET, k=1) == pytest.approx(1 / 4)


def test_padding_never_matches_and_no_examples_is_none() -> None:
    assert hit_ranks(np.array([[-1, -1]]), np.array([-1])).tolist() == [0]
    assert hit_ranks(np.array([[3, -1]]), np.array([7])).tolist() == [0]
    assert mrr_at_k(np.zeros((0, 3), dtype=int), np.zeros(0, dtype=int)) is None
    assert hr_at_k(np.zeros((0, 3), dtype=int), np.zeros(0, dtype=int)) is None


def test_coverage_counts_distinct_shown_items() -> None:
    # shown: 5 3 7 1 2 4 9 8 6 -> 9 distinct of 10 items (the pad does not count)
    assert catalog_coverage(TOP, n_items=10, k=3) == pytest.approx(0.9)
    # top-1 only: 5, 1, 9, 2
    assert catalog_coverage(TOP, n_items=10, k=1) == pytest.approx(0.4)
    assert catalog_coverage(TOP, n_items=0) is None


def test_popularity_percentiles_by_hand() -> None:
    # counts 0, 10, 10, 30: shares of items with a lower count
    assert popularity_percentiles(np.array([0, 10, 10, 30])).tolist() == [0.0, 0.25, 0.25, 0.75]


def test_popularity_bias_by_hand() -> None:
    popularity = np.array([0, 10, 10, 30])  # items 0..3; item ids beyond count as 0 views
    top = np.array([[3, 1], [3, -1]])
    target = np.array([0, 2])
    bias = popularity_bias(top, target, popularity, k=2)
    assert bias["arp"] == pytest.approx((30 + 10 + 30) / 3)
    assert bias["percentile"] == pytest.approx((0.75 + 0.25 + 0.75) / 3)
    assert bias["target_arp"] == pytest.approx(5.0)
    assert bias["target_percentile"] == pytest.approx(0.125)


def test_report_slices_by_length_and_popularity() -> None:
    popularity = np.arange(10, dtype=float)  # item i has i views: percentile i / 10
    report = ranking_report(
        TOP, TARGET, n_prior=np.array([1, 1, 2, 12]), popularity=popularity, n_items=10, k=3
    )
    assert report["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 4)
    length = report["by_length"]
    assert length["1 prior view"] == {"n": 2, "mrr": pytest.approx(2 / 3), "hr": 1.0}
    assert length["2 prior views"] == {"n": 1, "mrr": 0.0, "hr": 0.0}
    assert length["10+ prior views"] == {"n": 1, "mrr": 0.5, "hr": 1.0}
    assert length["3-4 prior views"] == {"n": 0, "mrr": None, "hr": None}
    # target percentiles 0.5, 0.4, 0.0, 0.6: all in the tail (<= 0.8)
    by_pop = report["by_popularity"]
    assert by_pop["tail (the other 80%)"]["n"] == 4
    assert by_pop["head (top 1% of SKUs)"]["n"] == 0


def test_shapes_are_checked() -> None:
    with pytest.raises(SmallboatError, match=r"top-k lists \(N, k\) and targets \(N,\)"):
        mrr_at_k(np.array([1, 2]), np.array([1, 2]))

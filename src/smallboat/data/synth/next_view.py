"""The Bayes-optimal next-item ranking of the synthetic data: the law of the next viewed SKU.

When a shopper who has viewed SKU `prev` views another product, the generator (`simulate`) stays
in `prev`'s leaf category with a class-dependent probability and then takes `Catalog.sample_near`,
else takes `Catalog.sample_other_leaf`; neither SKU draw depends on the class. So, given an
observed prefix and that the next event is a product view, the next SKU has the law

    P(s | prefix, next is a view) = q * Near(prev)[s] + (1 - q) * Other(leaf(prev))[s]

where q = sum over classes c of P(c | prefix, next is a view) * P(stay | prefix, c): the only
thing the posterior over the hidden class changes is q. `NextViewRanker` turns (prev, q) into the
top-k of that law exactly, without scoring the whole catalog per example: Near has at most six
SKUs inside prev's leaf, Other puts nothing there, so the top k of the mixture lies among those six
and the top k of Other for prev's leaf (computed once per leaf).
"""

from __future__ import annotations

import numpy as np

from smallboat.data.synth.catalog import Catalog

TOP_K = 20
"""The next-item task's cut-off (MRR@20, HR@20)."""


def next_view_probs(cat: Catalog, prev: int, stay: float) -> np.ndarray:
    """The whole law over the catalog, (n,) summing to 1 (tests and hand checks)."""
    out = (1.0 - stay) * cat.other_leaf_probs(int(cat.leaf[prev]))
    near, p = cat.near_probs(np.array([prev]))
    keep = near[0] >= 0
    np.add.at(out, near[0, keep], stay * p[0, keep])
    return out


class NextViewRanker:
    """Top-k of the next-view law for many (prev, q) pairs at once."""

    def __init__(self, cat: Catalog, k: int = TOP_K) -> None:
        self.cat, self.k = cat, k
        self.leaf_top = np.full((cat.n_leaves, k), -1, dtype=np.int64)
        self.leaf_top_p = np.zeros((cat.n_leaves, k))
        for leaf in range(cat.n_leaves):
            other = cat.other_leaf_probs(leaf)
            top = np.lexsort((np.arange(cat.size), -other))[:k]
            top = top[other[top] > 0]  # SKUs the law never reaches are not ranked
            self.leaf_top[leaf, : len(top)] = top
            self.leaf_top_p[leaf, : len(top)] = other[top]

    def top(self, prev: np.ndarray, stay: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) SKUs best first and their probabilities, for views after `prev` (N,) with
        P(stay in prev's leaf) `stay` (N,). Ties go to the lower SKU index; -1 (probability 0)
        pads a row when fewer than k SKUs can be viewed next."""
        prev = np.asarray(prev, dtype=np.int64)
        stay = np.asarray(stay, dtype=np.float64)
        near, near_p = self.cat.near_probs(prev)
        leaf = self.cat.leaf[prev]
        sku = np.concatenate([near, self.leaf_top[leaf]], axis=1)
        p = np.concatenate(
            [stay[:, None] * near_p, (1.0 - stay)[:, None] * self.leaf_top_p[leaf]], axis=1
        )
        p = np.where(sku >= 0, p, -1.0)  # padding sorts last
        order = np.lexsort((np.where(sku >= 0, sku, np.iinfo(np.int64).max), -p), axis=1)
        order = order[:, : self.k]
        p = np.take_along_axis(p, order, 1)
        return np.take_along_axis(sku, order, 1), np.maximum(p, 0.0)

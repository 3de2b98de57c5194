"""The synthetic catalog: SKUs grouped into a category tree, with prices, popularity and vectors.

SKUs are stored grouped by leaf category and sorted by price inside each leaf, so "a product near
this one" is an index arithmetic away; that is what gives the next-item task its signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smallboat.data.synth import release
from smallboat.schema import VECTOR_DIM

NEAR_OFFSETS = np.array([1, 2, 3])
NEAR_P = np.array([0.55, 0.3, 0.15])
"""A move within the leaf goes this many places in price order, up or down alike."""
RELATED_SHARE = 0.7
"""A move out of the leaf goes to a co-viewed (related) leaf this often, else to any leaf."""


def hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """`n` random 64-character hex strings, like the release's hashed ids (vectorised)."""
    raw = rng.integers(0, 16, size=(n, 64), dtype=np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[raw]
    return pa.array(chars.view("S64").ravel().astype(str))


def catalog_size(sessions: int) -> int:
    """Catalog rows for a dataset of `sessions`: the release's 66,386 at full scale, fewer below."""
    full = release.CATALOG_ROWS
    scaled = full * (min(sessions, release.SESSIONS) / release.SESSIONS) ** 0.5
    return int(max(400, round(scaled)))


@dataclass
class Catalog:
    """SKUs 0..n-1, grouped by leaf (leaf_start[l] .. leaf_start[l+1]), sorted by price inside."""

    sku_hash: pa.Array  # (n,) str
    sku_url: pa.Array  # (n,) str: the product page's hashed URL
    leaf: np.ndarray  # (n,) int: leaf category of each SKU
    leaf_start: np.ndarray  # (L+1,) int
    leaf_parent: np.ndarray  # (L,) int: top-level category of each leaf
    leaf_path: pa.Array  # (L,) str: 'top/mid/leaf' hashed path
    price_bucket: np.ndarray  # (n,) int 1..10: the true decile
    price_observed: np.ndarray  # (n,) bool: the catalog shows the price
    popularity: np.ndarray  # (n,) float, sums to 1 (Zipf over a random ranking)
    cum_popularity: np.ndarray  # (n,) cumulative popularity in index order
    leaf_popularity_cum: np.ndarray  # (L,) cumulative popularity of leaves
    related_leaf: np.ndarray  # (L, R) leaves co-viewed with each leaf (same parent)
    centroid: np.ndarray  # (L, VECTOR_DIM) content centroid of each leaf
    has_description: np.ndarray  # (n,) bool
    has_image: np.ndarray  # (n,) bool

    @property
    def size(self) -> int:
        return len(self.leaf)

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_parent)

    def price_feature(self, sku: np.ndarray) -> np.ndarray:
        """Observed price in [-1, 1] ((bucket - 5.5) / 4.5); 0 where unknown or no SKU (-1)."""
        safe = np.maximum(sku, 0)
        feat = (self.price_bucket[safe] - 5.5) / 4.5
        return np.where((sku >= 0) & self.price_observed[safe], feat, 0.0)

    def sample_global(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """SKUs drawn by overall popularity."""
        u = rng.random(n) * self.cum_popularity[-1]
        return np.minimum(np.searchsorted(self.cum_popularity, u, side="right"), self.size - 1)

    def sample_in_leaf(self, rng: np.random.Generator, leaves: np.ndarray) -> np.ndarray:
        """One SKU per requested leaf, drawn by popularity within the leaf."""
        start, end = self.leaf_start[leaves], self.leaf_start[leaves + 1]
        lo = np.where(start > 0, self.cum_popularity[np.maximum(start - 1, 0)], 0.0)
        hi = self.cum_popularity[end - 1]
        idx = np.searchsorted(
            self.cum_popularity, lo + rng.random(len(leaves)) * (hi - lo), "right"
        )
        return np.clip(idx, start, end - 1)

    def sample_near(self, rng: np.random.Generator, sku: np.ndarray) -> np.ndarray:
        """A different SKU of the same leaf, close in price (1-3 places away, wrapping)."""
        offset = rng.choice(NEAR_OFFSETS, size=len(sku), p=list(NEAR_P))
        offset = np.where(rng.random(len(sku)) < 0.5, -offset, offset)
        return self._near(sku, offset)

    def _near(self, sku: np.ndarray, offset: np.ndarray) -> np.ndarray:
        leaf = self.leaf[sku]
        start, size = self.leaf_start[leaf], np.diff(self.leaf_start)[leaf]
        pos = (sku - start + offset) % size
        pos = np.where(start + pos == sku, (sku - start + 1) % size, pos)
        return start + pos

    def near_probs(self, sku: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The law of `sample_near(sku)`: (N, 6) SKUs and their probabilities (a SKU reached by
        two offsets in a small leaf appears once, its probability summed; -1 / 0 pad)."""
        sku = np.asarray(sku, dtype=np.int64)
        offsets = np.concatenate([NEAR_OFFSETS, -NEAR_OFFSETS])
        probs = np.concatenate([NEAR_P, NEAR_P]) * 0.5
        out = np.stack([self._near(sku, np.full(len(sku), o)) for o in offsets], axis=1)
        p = np.broadcast_to(probs, out.shape).copy()
        for j in range(1, out.shape[1]):  # fold a repeated SKU into its first column
            for i in range(j):
                same = (out[:, i] == out[:, j]) & (p[:, j] > 0)
                p[same, i] += p[same, j]
                p[same, j] = 0.0
                out[same, j] = -1
        return out, p

    def other_leaf_probs(self, leaf: int) -> np.ndarray:
        """The law of `sample_other_leaf` from any SKU of `leaf`, over every SKU, (n,): a related
        leaf (uniform over `related_leaf`) with probability RELATED_SHARE, else a leaf by
        popularity (the SKU's own leaf is replaced by the related draw); then a SKU by popularity
        inside the chosen leaf."""
        related = np.bincount(self.related_leaf[leaf], minlength=self.n_leaves)
        related = related / self.related_leaf.shape[1]
        leaf_pop = np.diff(np.concatenate([[0.0], self.leaf_popularity_cum]))
        anywhere = leaf_pop / self.leaf_popularity_cum[-1]
        to_leaf = (RELATED_SHARE + (1 - RELATED_SHARE) * anywhere[leaf]) * related
        to_leaf += (1 - RELATED_SHARE) * np.where(np.arange(self.n_leaves) == leaf, 0.0, anywhere)
        in_leaf = np.divide(
            self.popularity,
            leaf_pop[self.leaf],
            out=np.zeros(self.size),
            where=leaf_pop[self.leaf] > 0,
        )
        return to_leaf[self.leaf] * in_leaf

    def sample_other_leaf(self, rng: np.random.Generator, sku: np.ndarray) -> np.ndarray:
        """A SKU of another leaf: a related leaf (co-viewed) most of the time, else any leaf."""
        leaf = self.leaf[sku]
        n = len(sku)
        related = self.related_leaf[leaf, rng.integers(0, self.related_leaf.shape[1], n)]
        u = rng.random(n) * self.leaf_popularity_cum[-1]
        anywhere = np.minimum(
            np.searchsorted(self.leaf_popularity_cum, u, side="right"), self.n_leaves - 1
        )
        target = np.where(rng.random(n) < RELATED_SHARE, related, anywhere)
        target = np.where(target == leaf, related, target)
        return self.sample_in_leaf(rng, target)


def build_catalog(rng: np.random.Generator, n_skus: int) -> Catalog:
    """A category tree (top/mid/leaf), Zipf popularity, price deciles and content vectors."""
    full = release.CATALOG_ROWS
    n_leaves = max(8, n_skus // 150)
    n_top = max(3, n_leaves // 20)
    n_mid = max(n_top, n_leaves // 5)
    mid_parent = rng.integers(0, n_top, n_mid)
    mid_parent[:n_top] = np.arange(n_top)
    leaf_mid = rng.integers(0, n_mid, n_leaves)
    leaf_mid[:n_mid] = np.arange(n_mid) % n_mid
    leaf_parent = mid_parent[leaf_mid]

    # Leaf sizes: skewed, at least 4 SKUs each so that "near in price" always has neighbours.
    weights = rng.pareto(1.5, n_leaves) + 1.0
    sizes = 4 + np.floor(weights / weights.sum() * (n_skus - 4 * n_leaves)).astype(np.int64)
    sizes[0] += n_skus - sizes.sum()
    leaf_start = np.concatenate([[0], np.cumsum(sizes)])
    leaf = np.repeat(np.arange(n_leaves), sizes)

    # Prices: each leaf has its own level; inside a leaf SKUs are sorted by price.
    log_price = rng.normal(3.5, 1.0, n_leaves)[leaf] + rng.normal(0.0, 0.6, n_skus)
    order = np.lexsort((log_price, leaf))
    log_price = log_price[order]
    ranks = np.argsort(np.argsort(log_price, kind="stable"), kind="stable")
    price_bucket = (ranks * 10 // n_skus + 1).astype(np.int8)
    price_observed = rng.random(n_skus) >= release.CATALOG_WITH_NO_PRICE / full

    # Zipf-like popularity over a random ranking of the SKUs. Some leaves are catalog-only (never
    # shown on the site: ~13% of the release's catalog is never seen in browsing): no popularity,
    # and no co-view link leads to them.
    zipf_rank = rng.permutation(n_skus) + 1
    popularity = 1.0 / zipf_rank**1.1
    dead_share = 1 - release.SKUS_SEEN / full
    leaf_order = rng.permutation(n_leaves)
    covered = np.cumsum(sizes[leaf_order]) / n_skus
    live_leaf = np.ones(n_leaves, bool)
    live_leaf[leaf_order[covered <= dead_share]] = False
    popularity[~live_leaf[leaf]] = 0.0
    popularity /= popularity.sum()
    cum_popularity = np.cumsum(popularity)
    leaf_pop = np.bincount(leaf, weights=popularity, minlength=n_leaves)

    # Co-viewed leaves: other live leaves under the same top-level category.
    n_related = 3
    live = np.flatnonzero(live_leaf)
    related = np.empty((n_leaves, n_related), dtype=np.int64)
    for lf in range(n_leaves):
        siblings = live[(leaf_parent[live] == leaf_parent[lf]) & (live != lf)]
        pool = siblings if len(siblings) else live[live != lf]
        related[lf] = rng.choice(pool, n_related, replace=len(pool) < n_related)

    top_hash = hex_ids(rng, n_top).to_numpy(zero_copy_only=False)
    mid_hash = hex_ids(rng, n_mid).to_numpy(zero_copy_only=False)
    leaf_hash = hex_ids(rng, n_leaves).to_numpy(zero_copy_only=False)
    leaf_path = pa.array(
        [
            f"{top_hash[leaf_parent[lf]]}/{mid_hash[leaf_mid[lf]]}/{leaf_hash[lf]}"
            for lf in range(n_leaves)
        ]
    )
    centroid = rng.normal(0.0, 1.0, (n_leaves, VECTOR_DIM))
    return Catalog(
        sku_hash=hex_ids(rng, n_skus),
        sku_url=hex_ids(rng, n_skus),
        leaf=leaf,
        leaf_start=leaf_start,
        leaf_parent=leaf_parent,
        leaf_path=leaf_path,
        price_bucket=price_bucket,
        price_observed=price_observed,
        popularity=popularity,
        cum_popularity=cum_popularity,
        leaf_popularity_cum=np.cumsum(leaf_pop),
        related_leaf=related,
        centroid=centroid,
        has_description=rng.random(n_skus)
        < release.CATALOG_WITH_DESCRIPTION / release.CATALOG_ROWS,
        has_image=rng.random(n_skus) < release.CATALOG_WITH_IMAGE / release.CATALOG_ROWS,
    )


def vector_text(vectors: np.ndarray, present: np.ndarray) -> pa.Array:
    """Vectors as the release writes them, "[f1, f2, ...]"; NULL (an empty field) where absent."""
    flat = pa.array(vectors.astype(np.float32).ravel())
    as_text = pc.cast(pc.round(flat, 6), pa.string())
    offsets = pa.array(np.arange(0, vectors.size + 1, vectors.shape[1], dtype=np.int32))
    lists = pa.ListArray.from_arrays(offsets, as_text)
    joined = pc.binary_join_element_wise("[", pc.binary_join(lists, ", "), "]", "")
    return pc.if_else(pa.array(present), joined, pa.scalar(None, pa.string()))


def catalog_table(rng: np.random.Generator, cat: Catalog) -> pa.Table:
    """sku_to_content.csv as released: vectors as text, price bucket like '7.0', empty fields."""
    desc = cat.centroid[cat.leaf] + rng.normal(0.0, 0.35, (cat.size, VECTOR_DIM))
    image = rng.normal(0.0, 40.0, (cat.size, VECTOR_DIM)) + 80.0 * cat.centroid[cat.leaf]
    bucket_text = pc.binary_join_element_wise(
        pc.cast(pa.array(cat.price_bucket.astype(np.int64)), pa.string()), ".0", ""
    )
    return pa.table(
        {
            "product_sku_hash": cat.sku_hash,
            "description_vector": vector_text(desc, cat.has_description),
            "category_hash": cat.leaf_path.take(pa.array(cat.leaf)),
            "image_vector": vector_text(image, cat.has_image),
            "price_bucket": pc.if_else(
                pa.array(cat.price_observed), bucket_text, pa.scalar(None, pa.string())
            ),
        }
    )

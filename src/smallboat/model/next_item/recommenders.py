"""Next-item recommenders that need no training loop: popularity and prod2vec kNN.

Every recommender scores every SKU token for a batch of `ModelInputs` (the same encoding the
intent model reads): `scores(inputs)` is a (B, n_sku_tokens) float32 tensor whose columns are SKU
tokens; the special tokens below SKU_FIRST score -inf, so they are never recommended. `top_k`
turns scores into lists sorted by descending score, for all of them alike.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from smallboat.features import ModelInputs, Vocabulary
from smallboat.features.spec import ACTION_TOKEN, SKU_FIRST

DETAIL = ACTION_TOKEN["detail"]
CATEGORY_BOOST = 1_000.0
"""Added to the score of SKUs in the session's category: any of them outranks any other SKU."""


class Recommender(Protocol):
    kind: str

    def scores(self, inputs: ModelInputs) -> torch.Tensor:
        """(B, n_sku_tokens) float32, -inf for tokens that are not SKUs."""
        ...


def detail_tokens(inputs: ModelInputs) -> np.ndarray:
    """The window's detail-view SKU tokens, (B, L); 0 where an event is not a known-SKU view."""
    known = (inputs.action == DETAIL) & (inputs.sku >= SKU_FIRST)
    return np.where(known, inputs.sku, 0).astype(np.int64)


def last_detail_token(inputs: ModelInputs) -> np.ndarray:
    """Each prefix's most recent detail view with a known SKU, (B,); 0 when there is none."""
    tokens = detail_tokens(inputs)  # (B, L)
    has = tokens > 0
    last = tokens.shape[1] - 1 - np.argmax(has[:, ::-1], axis=1)  # (B,)
    return np.where(has.any(axis=1), tokens[np.arange(len(tokens)), last], 0)


def seen_tokens(inputs: ModelInputs) -> np.ndarray:
    """Every known SKU token in each prefix's window (any action), (B, L); 0 elsewhere."""
    return np.where(inputs.sku >= SKU_FIRST, inputs.sku, 0).astype(np.int64)


def top_k(
    scores: torch.Tensor, k: int, *, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k best tokens per row, best first, and their scores: (B, k) int64 and float32.

    `exclude`: (B, S) tokens to leave out of each row (0 pads; column 0 is never a SKU anyway).
    Rows with fewer than k recommendable SKUs end in tokens whose score is -inf: callers drop them.
    """
    if exclude is not None and exclude.size:
        scores = scores.clone()
        scores.scatter_(1, torch.from_numpy(np.ascontiguousarray(exclude, dtype=np.int64)), -np.inf)
    k = min(k, scores.shape[1])
    values, tokens = torch.topk(scores, k, dim=1, largest=True, sorted=True)  # (B, k)
    return tokens.numpy().astype(np.int64), values.numpy().astype(np.float32)


def token_leaves(vocab: Vocabulary) -> np.ndarray:
    """Leaf category code of each SKU token, (n_sku_tokens,); -1 when unknown or not a SKU."""
    leaves = np.full(vocab.n_sku_tokens, -1, dtype=np.int64)
    known = vocab.sku_token >= SKU_FIRST
    leaves[vocab.sku_token[known]] = vocab.leaf_code[known]
    return leaves


def _masked(scores: np.ndarray) -> torch.Tensor:
    scores = np.asarray(scores, dtype=np.float32)
    scores[..., :SKU_FIRST] = -np.inf
    return torch.from_numpy(scores)


class PopularityRecommender:
    """The most viewed SKUs of the training split; with `within_category`, those of the leaf
    category of the session's last viewed SKU first (then the rest by overall popularity)."""

    def __init__(
        self, popularity: np.ndarray, *, leaves: np.ndarray | None = None, within_category: bool
    ) -> None:
        self.kind = "popularity_category" if within_category else "popularity"
        self.popularity = np.asarray(popularity, dtype=np.float64)  # (V,)
        self.within_category = within_category
        self.leaves = leaves
        if within_category:
            assert leaves is not None and len(leaves) == len(self.popularity), (
                f"leaves {None if leaves is None else leaves.shape} vs {self.popularity.shape}"
            )
        # log-views squeezed into [0, 1): ties broken by token (more-viewed tokens come first)
        rank = np.log1p(self.popularity) - 1e-9 * np.arange(len(self.popularity))
        self._base = (rank / (rank.max(initial=0.0) + 1.0)).astype(np.float32)  # (V,)

    def scores(self, inputs: ModelInputs) -> torch.Tensor:
        base = np.broadcast_to(self._base, (len(inputs), len(self._base))).copy()  # (B, V)
        if self.within_category and self.leaves is not None:
            leaf = self.leaves[last_detail_token(inputs)]  # (B,): -1 without a known last SKU
            same = (self.leaves[None, :] == leaf[:, None]) & (leaf[:, None] >= 0)  # (B, V)
            base += CATEGORY_BOOST * same
        return _masked(base)


class KnnRecommender:
    """prod2vec kNN: cosine similarity between each SKU vector and a recency-weighted mean of the
    vectors of the session's `recent` last viewed SKUs (weights 1, decay, decay^2, ...). The
    viewed SKUs themselves are left out (their own vectors would top every list); a session
    without a known viewed SKU gets the popularity ranking."""

    kind = "knn"

    def __init__(
        self, vectors: np.ndarray, popularity: np.ndarray, *, recent: int = 3, decay: float = 0.3
    ) -> None:
        assert vectors.shape[0] == len(popularity), (vectors.shape, popularity.shape)
        norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        self.unit = (vectors / norms).astype(np.float32)  # (V, d)
        self.unit[:SKU_FIRST] = 0.0
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.recent = recent
        self.decay = decay
        self._fallback = PopularityRecommender(self.popularity, within_category=False)

    def scores(self, inputs: ModelInputs) -> torch.Tensor:
        tokens = detail_tokens(inputs)  # (B, L)
        has = tokens > 0
        # count views from the right: 1 for the most recent, 2 for the one before, ...
        from_right = np.cumsum(has[:, ::-1], axis=1)[:, ::-1]  # (B, L)
        use = has & (from_right <= self.recent)
        weight = np.where(use, self.decay ** (from_right - 1.0), 0.0).astype(np.float32)
        query = (self.unit[tokens] * weight[..., None]).sum(axis=1)  # (B, d)
        query /= np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-9)
        out = torch.from_numpy(query) @ torch.from_numpy(self.unit).T  # (B, V) cosine in [-1, 1]
        out[:, :SKU_FIRST] = -np.inf
        out.scatter_(1, torch.from_numpy(np.where(use, tokens, 0)), -np.inf)  # the query SKUs
        empty = ~use.any(axis=1)
        if empty.any():  # nothing to average: those rows rank by popularity instead
            rows = torch.from_numpy(np.flatnonzero(empty))
            out[rows] = self._fallback.scores(inputs.take(np.flatnonzero(empty)))
        return out

"""prod2vec: skip-gram Word2Vec over training sessions' SKU sequences (gensim), as in the reference.

The vectors initialise the intent model's SKU embedding, row for row with the vocabulary's SKU
tokens; special tokens and SKUs Word2Vec never saw keep small random vectors.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass

import numpy as np

from smallboat.features import Vocabulary
from smallboat.features.spec import SKU_FIRST

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prod2VecConfig:
    dim: int = 32  # must equal IntentConfig.sku_dim
    window: int = 5  # co-view context on each side; sessions are short
    epochs: int = 5
    negative: int = 5
    min_count: int = 1  # the vocabulary already dropped rare SKUs
    seed: int = 0
    # One worker: gensim's threads race, so only one gives the same vectors from the same seed
    # (68 s with two workers, about 110 s with one, at full Coveo scale).
    workers: int = 1


@dataclass
class Prod2Vec:
    vectors: np.ndarray  # (n_sku_tokens, dim) float32
    coverage: float  # share of trained SKU tokens with a Word2Vec vector
    seconds: float
    n_sequences: int


def fit_prod2vec(sequences: list[list[str]], vocab: Vocabulary, config: Prod2VecConfig) -> Prod2Vec:
    from gensim.models import Word2Vec

    t0 = time.perf_counter()
    trained = vocab.trained_skus()
    known = set(trained)
    sentences = [[s for s in seq if s in known] for seq in sequences]
    sentences = [s for s in sentences if len(s) >= 2]
    rng = np.random.default_rng(config.seed)
    vectors = (rng.standard_normal((vocab.n_sku_tokens, config.dim)) * 0.1).astype(np.float32)
    vectors[0] = 0.0
    covered = 0
    if sentences:
        w2v = Word2Vec(
            sentences=sentences,
            vector_size=config.dim,
            window=config.window,
            min_count=config.min_count,
            sg=1,
            negative=config.negative,
            epochs=config.epochs,
            seed=config.seed,
            workers=config.workers,
            hashfxn=stable_hash,
        )
        for i, sku in enumerate(trained):
            if sku in w2v.wv.key_to_index:
                vectors[SKU_FIRST + i] = w2v.wv[sku]
                covered += 1
    result = Prod2Vec(
        vectors=vectors,
        coverage=covered / max(len(trained), 1),
        seconds=time.perf_counter() - t0,
        n_sequences=len(sentences),
    )
    log.info(
        "prod2vec: %d sequences, %.1f%% of SKU ids covered, %.1f s",
        result.n_sequences,
        100 * result.coverage,
        result.seconds,
    )
    return result


def stable_hash(word: str) -> int:
    """gensim seeds each word's initial vector with `hashfxn(word)`; Python's own str hash
    changes with every process (PYTHONHASHSEED), which would make prod2vec differ run to run."""
    return zlib.crc32(word.encode("utf-8"))


def nearest(vectors: np.ndarray, token: int, k: int = 5) -> np.ndarray:
    """The k tokens with the most similar vectors (cosine), excluding `token` itself."""
    norm = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    sims = norm @ norm[token]
    sims[token] = -np.inf
    sims[:SKU_FIRST] = -np.inf
    return np.argsort(-sims)[:k]

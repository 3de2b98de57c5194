"""prod2vec is reproducible from its seed, in any process, and puts co-viewed SKUs together."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from smallboat.features import FeatureSpec, fit_vocabulary
from smallboat.features.spec import SKU_FIRST
from smallboat.model.prod2vec import Prod2VecConfig, fit_prod2vec, nearest

SCRIPT = """
import hashlib, numpy as np, pandas as pd
from smallboat.features import FeatureSpec, fit_vocabulary
from smallboat.model.prod2vec import Prod2VecConfig, fit_prod2vec
rng = np.random.default_rng(0)
skus = [f"s{i}" for i in range(40)]
seqs = [[skus[j] for j in rng.integers(0, 40, 6)] for _ in range(300)]
counts = pd.Series([s for q in seqs for s in q]).value_counts().to_dict()
attrs = pd.DataFrame({"product_sku_hash": skus, "category_hash": None, "price_bucket": None})
vocab = fit_vocabulary(counts, attrs, FeatureSpec())
vectors = fit_prod2vec(seqs, vocab, Prod2VecConfig(dim=8, epochs=2)).vectors
print(hashlib.sha256(vectors.tobytes()).hexdigest())
"""


def test_the_same_seed_gives_the_same_vectors_whatever_the_hash_seed() -> None:
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests


def test_co_viewed_skus_end_up_near_each_other() -> None:
    rng = np.random.default_rng(1)
    # Two worlds that never meet: a0..a9 are viewed together, b0..b9 together.
    seqs = [[f"{w}{j}" for j in rng.integers(0, 10, 8)] for w in "ab" for _ in range(400)]
    counts = pd.Series([s for q in seqs for s in q]).value_counts().to_dict()
    attrs = pd.DataFrame({"product_sku_hash": list(counts), "category_hash": None})
    attrs["price_bucket"] = None
    vocab = fit_vocabulary(counts, attrs, FeatureSpec())
    result = fit_prod2vec(seqs, vocab, Prod2VecConfig(dim=8, epochs=5))
    assert result.coverage == 1.0
    trained = vocab.trained_skus()
    a0 = SKU_FIRST + trained.index("a0")
    neighbours = [trained[t - SKU_FIRST][0] for t in nearest(result.vectors, a0, k=5)]
    assert neighbours == ["a"] * 5, neighbours

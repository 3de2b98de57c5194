"""The next-item ceiling on synthetic data: the Bayes-optimal ranking's MRR@20 / HR@20.

`smallboat data synth` writes `oracle_next_item.parquet` beside its CSVs: for every next-item
example, keyed like `next_item_examples` (session_id_hash, prefix_length), the top-20 next SKUs of
the generator's exact law given the prefix (docs/synthetic-data.md). Scored here against the same
targets as the recommenders, with the same metric functions; unlike theirs its lists range over the
whole catalog, so a target outside the training vocabulary can still be a hit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from smallboat.errors import DataError
from smallboat.metrics.ranking import K, hr_at_k, mrr_at_k
from smallboat.model.next_item.data import NextItemExamples
from smallboat.schema import NEXT_ITEM_ORACLE_FILE

log = logging.getLogger(__name__)


def oracle_file(path: Path) -> Path:
    """The next-item oracle file for TrainFlow's `--oracle`: in the synthetic data folder, or
    beside the intent oracle file when that is what was given (or the file itself)."""
    if path.is_dir():
        return path / NEXT_ITEM_ORACLE_FILE
    return path if path.name == NEXT_ITEM_ORACLE_FILE else path.parent / NEXT_ITEM_ORACLE_FILE


def read_next_item_oracle(
    file: Path, examples: NextItemExamples, k: int = K
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The oracle's lists for `examples`: (N, k) SKU ids best first (-1 pads), (N, k) their
    probabilities, (N,) the target's id in the same numbering (-1 when the oracle never ranks
    it), (N,) bool whether the oracle file has the example at all."""
    if not file.is_file():
        raise DataError(f"no next-item oracle file at {file}")
    if examples.target_sku is None:
        raise DataError("next-item examples without their target SKUs cannot be scored")
    try:
        table = pq.read_table(file, columns=["session_id_hash", "prefix_length", "skus", "probs"])
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read the next-item oracle file {file}: {exc}") from None
    keys = pd.DataFrame(
        {
            "session_id_hash": table.column("session_id_hash").to_numpy(zero_copy_only=False),
            "prefix_length": table.column("prefix_length").to_numpy().astype(np.int64),
            "row": np.arange(table.num_rows),
        }
    )
    wanted = pd.DataFrame(
        {
            "session_id_hash": examples.session_id,
            "prefix_length": examples.prefix_length.astype(np.int64),
        }
    )
    merged = wanted.merge(
        keys, on=["session_id_hash", "prefix_length"], how="left", validate="many_to_one"
    )
    found = merged["row"].notna().to_numpy()
    rows = merged["row"].fillna(0).to_numpy().astype(np.int64)

    picked = table.select(["skus", "probs"]).take(pa.array(rows)).unify_dictionaries()
    skus = picked.column("skus").combine_chunks()
    probs = picked.column("probs").combine_chunks()
    lengths = pc.list_value_length(skus).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(skus)
    dictionary = flat.dictionary
    ids = flat.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    p = pc.list_flatten(probs).to_numpy(zero_copy_only=False)
    top = np.full((len(rows), k), -1, dtype=np.int64)
    top_p = np.zeros((len(rows), k))
    cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    r = np.repeat(np.arange(len(rows)), lengths)
    keep = cols < k
    top[r[keep], cols[keep]] = ids[keep]
    top_p[r[keep], cols[keep]] = p[keep]
    top[~found] = -1
    top_p[~found] = 0.0
    target = pc.index_in(pa.array(examples.target_sku, pa.string()), value_set=dictionary)
    target_id = target.to_numpy(zero_copy_only=False)
    target_id = np.where(np.isnan(target_id.astype(np.float64)), -1, target_id).astype(np.int64)
    return top, top_p, target_id, found


def oracle_ceiling(path: Path, examples: NextItemExamples, k: int = K) -> dict[str, Any]:
    """MRR@k / HR@k of the Bayes-optimal lists on `examples` (None unless the oracle covers
    every example: a partial ceiling is not one), and what they are in expectation under the
    generator's law (the mean of sum_r p_r / r and of sum_r p_r over the examples).

    Data synthesized before the next-item oracle existed has no file: then no ceiling, and
    `missing` says where it was looked for (a warning, not a failed run: the intent oracle
    beside it is still scored)."""
    file = oracle_file(path)
    if not file.is_file():
        log.warning("no next-item oracle file at %s: no next-item ceiling", file)
        return {"mrr": None, "hr": None, "coverage": 0.0, "n": len(examples), "missing": str(file)}
    top, top_p, target, found = read_next_item_oracle(file, examples, k)
    coverage = float(found.mean()) if len(found) else 0.0
    complete = bool(len(found)) and bool(found.all())
    if not complete:
        log.warning("the next-item oracle covers %.1f%% of the examples", 100 * coverage)
    ranks = np.arange(1, k + 1)
    return {
        "mrr": mrr_at_k(top, target, k) if complete else None,
        "hr": hr_at_k(top, target, k) if complete else None,
        "expected_mrr": float((top_p / ranks).sum(axis=1).mean()) if complete else None,
        "expected_hr": float(top_p.sum(axis=1).mean()) if complete else None,
        "coverage": coverage,
        "n": len(found),
    }

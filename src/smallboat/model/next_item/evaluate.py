"""Train and compare the next-item recommenders on the same examples (TrainFlow's `next_item`
step): popularity overall and within the session's category, prod2vec kNN, the
category-backoff Markov chain of the last view, and the sequence model; the one with the best
validation MRR@20 is kept for the bundle. On synthetic data the Bayes-optimal ranking's scores
on the same test examples (`oracle`) are the ceiling beside them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smallboat.errors import SmallboatError
from smallboat.metrics.ranking import K, hr_at_k, mrr_at_k, ranking_report
from smallboat.model.next_item.data import NextItemData
from smallboat.model.next_item.markov import PRIORS_AWAY, MarkovRecommender, fit_markov
from smallboat.model.next_item.recommenders import (
    KnnRecommender,
    PopularityRecommender,
    Recommender,
    last_detail_token,
    seen_tokens,
    token_leaves,
    top_k,
)
from smallboat.model.next_item.sequence import NextItemConfig, train_sequence_model
from smallboat.model.next_item.store import RecommenderState, state_of

log = logging.getLogger(__name__)

LABELS = {
    "popularity": "popularity (overall)",
    "popularity_category": "popularity within the last SKU's category",
    "knn": "prod2vec kNN (recency-weighted mean of the last 3 views)",
    "markov": "Markov chain of the last view, backed off to its category",
    "sequence": "sequence model (GRU encoder, full softmax)",
}
"""The recommenders in the order the card lists them."""
AUTO = "auto"
"""--recommender: the best by validation MRR@20 (else the one named)."""


def check_recommender(choose: str) -> None:
    """--recommender is `auto` or one of the recommenders' names."""
    if choose != AUTO and choose not in LABELS:
        raise SmallboatError(f"--recommender {choose!r} is not one of {', '.join([AUTO, *LABELS])}")


def recommend(
    recommender: Recommender,
    data: NextItemData,
    split: str,
    *,
    k: int = K,
    exclude_seen: bool = False,
    rows: np.ndarray | None = None,
    batch_size: int = 2048,
) -> np.ndarray:
    """Top-k SKU tokens (best first) for a split's examples, (N, k); -1 pads short lists."""
    ex = data.splits[split]
    index = np.arange(len(ex)) if rows is None else rows
    out = np.full((len(index), k), -1, dtype=np.int64)
    for start in range(0, len(index), batch_size):
        take = index[start : start + batch_size]
        inputs = data.inputs(split, take)
        tokens, scores = top_k(
            recommender.scores(inputs), k, exclude=seen_tokens(inputs) if exclude_seen else None
        )
        tokens[~np.isfinite(scores)] = -1
        out[start : start + len(take), : tokens.shape[1]] = tokens
    return out


def evaluate_recommender(
    recommender: Recommender, data: NextItemData, split: str, *, k: int = K
) -> dict[str, Any]:
    ex = data.splits[split]
    report = ranking_report(
        recommend(recommender, data, split, k=k),
        ex.target,
        n_prior=ex.n_prior,
        popularity=data.popularity,
        n_items=data.n_items,
        k=k,
    )
    # The same lists without the SKUs already in the window (the serving option `exclude_seen`).
    excluded = recommend(recommender, data, split, k=k, exclude_seen=True)
    report["exclude_seen"] = {
        "mrr": mrr_at_k(excluded, ex.target, k),
        "hr": hr_at_k(excluded, ex.target, k),
    }
    return report


@dataclass
class NextItemResult:
    """What the `next_item` step hands on: the report for the card and the chosen recommender."""

    report: dict[str, Any]
    chosen: RecommenderState


def fit_and_compare(
    data: NextItemData,
    sku_vectors: np.ndarray,
    *,
    config: NextItemConfig,
    threads: int = 2,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    oracle: Path | None = None,
    choose: str = "auto",
) -> NextItemResult:
    """Fit every recommender on train, pick by validation MRR@20 (`choose` "auto") or the one
    `choose` names, report all of them on test; with `oracle` (a synthetic data folder), the
    Bayes-optimal ranking's scores on test too."""
    check_recommender(choose)
    ceiling = None
    if oracle is not None:  # read first: an unreadable file fails before any training
        from smallboat.model.next_item.oracle import oracle_ceiling

        ceiling = oracle_ceiling(oracle, data.splits["test"])
    recommenders: dict[str, Recommender] = {
        "popularity": PopularityRecommender(data.popularity, within_category=False),
        "popularity_category": PopularityRecommender(
            data.popularity, leaves=token_leaves(data.vocab), within_category=True
        ),
        "knn": KnnRecommender(sku_vectors, data.popularity),
        "markov": fit_markov_by_validation(data),
    }
    training = train_sequence_model(
        config, data, sku_vectors=sku_vectors, threads=threads, on_epoch=on_epoch
    )
    recommenders["sequence"] = training.recommender
    valid_mrr = {
        name: evaluate_recommender_mrr(rec, data, "valid") for name, rec in recommenders.items()
    }
    chosen = choose
    if choose == AUTO:
        chosen = max(LABELS, key=lambda name: (valid_mrr[name], -list(LABELS).index(name)))
    test = {name: evaluate_recommender(rec, data, "test") for name, rec in recommenders.items()}
    log.info(
        "next item: test MRR@20 %s; chosen %s",
        {n: round(r["mrr"] or 0.0, 4) for n, r in test.items()},
        chosen,
    )
    report = {
        "k": K,
        "test": test,
        "valid_mrr": valid_mrr,
        "chosen": chosen,
        "row_counts": data.row_counts(),
        "n_items": data.n_items,
        "sequence_training": {
            "config": config.to_dict(),
            "best_epoch": training.best_epoch,
            "best_valid_mrr": training.best_valid_mrr,
            "epochs": len(training.history),
            "examples_per_s": training.examples_per_s,
            "seconds": training.seconds,
        },
    }
    if ceiling is not None:
        report["oracle"] = ceiling
    return NextItemResult(report=report, chosen=state_of(recommenders[chosen]))


def last_views(data: NextItemData, split: str, chunk: int = 50_000) -> np.ndarray:
    """Each example's last viewed SKU token before its target, (N,); 0 when none."""
    n = len(data.splits[split])
    parts = [
        last_detail_token(data.inputs(split, np.arange(s, min(s + chunk, n))))
        for s in range(0, n, chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def fit_markov_by_validation(data: NextItemData, valid_examples: int = 20_000) -> MarkovRecommender:
    """The Markov recommender with its `prior_away` (how far a SKU's own ways out of its leaf
    are trusted over its leaf's) chosen from PRIORS_AWAY by validation MRR@20 on up to
    `valid_examples` examples: one fit and one pass per value, seconds at 500k sessions."""
    prev, target = last_views(data, "train"), data.splits["train"].target
    leaves = token_leaves(data.vocab)
    valid = data.splits["valid"]
    rows = np.arange(len(valid))
    if len(rows) > valid_examples:
        rows = np.sort(np.random.default_rng(0).choice(rows, valid_examples, replace=False))
    best: tuple[float, MarkovRecommender] | None = None
    for prior_away in PRIORS_AWAY:
        rec = fit_markov(prev, target, leaves, data.popularity, prior_away=prior_away)
        mrr = mrr_at_k(recommend(rec, data, "valid", rows=rows), valid.target[rows]) or 0.0
        log.info("markov recommender, prior_away %g: validation MRR@20 %.4f", prior_away, mrr)
        if best is None or mrr > best[0]:
            best = (mrr, rec)
    assert best is not None
    return best[1]


def evaluate_recommender_mrr(recommender: Recommender, data: NextItemData, split: str) -> float:
    return mrr_at_k(recommend(recommender, data, split), data.splits[split].target) or 0.0


def summary_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The next-item figures under MLflow-friendly names (next_item_<model>_mrr_at_20, ...);
    `next_item_mrr_at_20` / `next_item_hr_at_20` are the chosen recommender's."""
    k = report["k"]
    out: dict[str, float] = {}
    for name, r in report["test"].items():
        for key, value in (
            (f"next_item_{name}_mrr_at_{k}", r["mrr"]),
            (f"next_item_{name}_hr_at_{k}", r["hr"]),
            (f"next_item_{name}_coverage_at_{k}", r["coverage"]),
            (f"next_item_{name}_popularity_percentile", r["popularity_bias"]["percentile"]),
        ):
            if value is not None:
                out[key] = float(value)
    chosen = report["test"][report["chosen"]]
    for key, value in (("mrr", chosen["mrr"]), ("hr", chosen["hr"])):
        if value is not None:
            out[f"next_item_{key}_at_{k}"] = float(value)
    out.update(ceiling_metrics(report))
    return out


def ceiling_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The ceiling (next_item_oracle_mrr_at_20, ..._hr_at_20) and the chosen recommender's gap
    to it (ceiling minus chosen) and ratio (chosen / ceiling); empty without a complete oracle."""
    ceiling = report.get("oracle") or {}
    if ceiling.get("mrr") is None or ceiling.get("hr") is None:
        return {}
    k = report["k"]
    chosen = report["test"][report["chosen"]]
    out: dict[str, float] = {}
    for key in ("mrr", "hr"):
        top = float(ceiling[key])
        out[f"next_item_oracle_{key}_at_{k}"] = top
        if chosen[key] is not None:
            out[f"next_item_oracle_gap_{key}_at_{k}"] = top - float(chosen[key])
            if top > 0:
                out[f"next_item_oracle_ratio_{key}_at_{k}"] = float(chosen[key]) / top
    return out

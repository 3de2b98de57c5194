"""The next-item recommenders: on a planted signal (each SKU has a successor) kNN, the Markov chain
and the sequence model beat popularity; top-k lists are sorted and honour exclude_seen; a stored
recommender (and a bundle carrying one) scores exactly as the one trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from smallboat.errors import SmallboatError
from smallboat.features.spec import SKU_FIRST
from smallboat.model.next_item.data import NextItemData
from smallboat.model.next_item.evaluate import (
    LABELS,
    evaluate_recommender,
    fit_and_compare,
    last_views,
    recommend,
    summary_metrics,
)
from smallboat.model.next_item.markov import fit_markov
from smallboat.model.next_item.recommenders import (
    KnnRecommender,
    PopularityRecommender,
    Recommender,
    seen_tokens,
    token_leaves,
    top_k,
)
from smallboat.model.next_item.sequence import NextItemConfig, train_sequence_model
from smallboat.model.next_item.store import from_state, load_state, save_state, state_of
from smallboat.model.prod2vec import Prod2VecConfig, fit_prod2vec
from tests.next_item_data import planted_data

CONFIG = NextItemConfig(hidden=32, max_epochs=6, patience=2, batch_size=128, lr=5e-3)


@pytest.fixture(scope="module")
def data() -> NextItemData:
    return planted_data(3_000, seed=1)


@pytest.fixture(scope="module")
def vectors(data: NextItemData) -> np.ndarray:
    train = data.splits["train"]
    sequences = []
    for session in np.unique(train.session):
        a, b = data.tokens.offsets[session], data.tokens.offsets[session + 1]
        tokens = data.tokens.sku[a:b]
        sequences.append([_sku(data, t) for t in tokens if t >= SKU_FIRST])
    return fit_prod2vec(sequences, data.vocab, Prod2VecConfig(dim=CONFIG.sku_dim)).vectors


def _sku(data: NextItemData, token: int) -> str:
    return data.vocab.trained_skus()[int(token) - SKU_FIRST]


@pytest.fixture(scope="module")
def recommenders(data: NextItemData, vectors: np.ndarray) -> dict[str, Recommender]:
    torch.manual_seed(0)
    trained = train_sequence_model(CONFIG, data, sku_vectors=vectors, threads=1)
    return {
        "popularity": PopularityRecommender(data.popularity, within_category=False),
        "popularity_category": PopularityRecommender(
            data.popularity, leaves=token_leaves(data.vocab), within_category=True
        ),
        "knn": KnnRecommender(vectors, data.popularity),
        "markov": fit_markov(
            last_views(data, "train"),
            data.splits["train"].target,
            token_leaves(data.vocab),
            data.popularity,
        ),
        "sequence": trained.recommender,
    }


def test_models_beat_popularity_on_a_planted_signal(
    data: NextItemData, recommenders: dict[str, Recommender]
) -> None:
    mrr = {n: evaluate_recommender(r, data, "test")["mrr"] for n, r in recommenders.items()}
    assert all(v is not None for v in mrr.values()), mrr
    # 90% of next views are the planted successor: popularity cannot know it; prod2vec's vectors
    # place a SKU near its whole chain (predecessors and later successors too), the sequence
    # model learns the direction
    assert mrr["popularity"] < 0.2, mrr
    assert mrr["knn"] > mrr["popularity"] + 0.03, mrr
    assert mrr["sequence"] > 0.7, mrr
    assert mrr["sequence"] > mrr["knn"], mrr
    # the successor is the last view's most frequent next one: the counts find it
    assert mrr["markov"] > 0.7, mrr


@pytest.mark.parametrize("name", list(LABELS))
def test_top_k_is_sorted_by_descending_score_and_holds_only_skus(
    data: NextItemData, recommenders: dict[str, Recommender], name: str
) -> None:
    inputs = data.inputs("test", np.arange(50))
    tokens, scores = top_k(recommenders[name].scores(inputs), 20)
    assert tokens.shape == scores.shape == (50, 20)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert (tokens >= SKU_FIRST).all() and np.isfinite(scores).all()
    # the scores are the recommender's own, at the listed tokens
    full = recommenders[name].scores(inputs).numpy()
    np.testing.assert_allclose(np.take_along_axis(full, tokens, axis=1), scores, rtol=1e-6)


def test_exclude_seen_drops_every_sku_of_the_window(
    data: NextItemData, recommenders: dict[str, Recommender]
) -> None:
    inputs = data.inputs("test", np.arange(200))
    seen = seen_tokens(inputs)
    tokens, _ = top_k(recommenders["popularity"].scores(inputs), 20, exclude=seen)
    for row, seen_row in zip(tokens, seen, strict=True):
        assert not set(row.tolist()) & set(seen_row[seen_row > 0].tolist())
    # without the option the most popular SKU tops every list, even where it was seen
    plain, _ = top_k(recommenders["popularity"].scores(inputs), 20)
    assert len(set(plain[:, 0].tolist())) == 1


def test_a_short_vocabulary_pads_with_minus_one(
    data: NextItemData, recommenders: dict[str, Recommender]
) -> None:
    lists = recommend(recommenders["knn"], data, "test", k=100, rows=np.arange(5))
    n_skus = data.n_items
    assert lists.shape == (5, 100)
    assert ((lists >= SKU_FIRST).sum(axis=1) <= n_skus).all()
    assert (lists[:, n_skus:] == -1).all()


@pytest.mark.parametrize("name", list(LABELS))
def test_a_stored_recommender_scores_as_the_trained_one(
    data: NextItemData, recommenders: dict[str, Recommender], name: str, tmp_path: Path
) -> None:
    save_state(tmp_path / "next_item", state_of(recommenders[name]))
    loaded = from_state(load_state(tmp_path / "next_item"))
    assert loaded.kind == recommenders[name].kind
    inputs = data.inputs("test", np.arange(100))
    torch.testing.assert_close(loaded.scores(inputs), recommenders[name].scores(inputs))


def test_fit_and_compare_reports_every_model_and_picks_by_validation(
    data: NextItemData, vectors: np.ndarray
) -> None:
    result = fit_and_compare(data, vectors, config=CONFIG, threads=1)
    report = result.report
    assert set(report["test"]) == set(LABELS)
    assert report["chosen"] == max(report["valid_mrr"], key=report["valid_mrr"].get)
    assert result.chosen.kind == report["chosen"]
    for r in report["test"].values():
        assert 0.0 <= r["coverage"] <= 1.0
        assert set(r["by_length"]) and set(r["by_popularity"])
        assert sum(s["n"] for s in r["by_length"].values()) == r["n"]
        assert sum(s["n"] for s in r["by_popularity"].values()) == r["n"]
    summary = summary_metrics(report)
    assert summary["next_item_mrr_at_20"] == report["test"][report["chosen"]]["mrr"]
    assert summary["next_item_popularity_hr_at_20"] == report["test"]["popularity"]["hr"]


def test_a_named_recommender_is_kept_whatever_validates_best(
    data: NextItemData, vectors: np.ndarray
) -> None:
    result = fit_and_compare(data, vectors, config=CONFIG, threads=1, choose="knn")
    assert result.report["chosen"] == result.chosen.kind == "knn"
    assert max(result.report["valid_mrr"].values()) > result.report["valid_mrr"]["knn"]
    with pytest.raises(SmallboatError, match="--recommender 'lstm' is not one of auto, popul"):
        fit_and_compare(data, vectors, config=CONFIG, threads=1, choose="lstm")

"""LightGBM and blend champions serve what is neural through ONNX Runtime: the serving graph holds
a blend's GRU half and the sequence recommender (with its TopK), LightGBM's own predictor scores
the same encoded inputs beside it, and `model.blend.combine` averages the two. The answers equal
the PyTorch runtime's and the offline predictor's; a bundle written before it carried a graph
derives the same one on load; a LightGBM bundle with nothing neural has no graph and serves as
before."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from smallboat.bundle import ONNX_FILE, BundleError
from smallboat.model.blend import BlendConfig, BlendIntent
from smallboat.model.gbm import GbmConfig, GbmIntent, train_gbm
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes, predict_proba
from smallboat.model.next_item.sequence import NextItemConfig, NextItemModel, SequenceRecommender
from smallboat.model.next_item.store import state_of
from smallboat.model.predictor import IntentPredictor, save_bundle
from smallboat.serve.scoring import LoadedModel, NextItemOptions, Outcome, score_batch
from tests.unit.test_serve_api import SPEC, raw, session, tiny_bundle

PROBABILITY_TOLERANCE = 1e-6  # served vs offline (float32 graph vs float32 torch, then combined)
SCORE_TOLERANCE = 1e-5  # the recommender's scores, graph vs torch


def labelled(n: int, seed: int) -> tuple[list[list[dict[str, Any]]], np.ndarray]:
    """Random sessions; those with two adds or more are mostly buyers (something to learn)."""
    rng = np.random.default_rng(seed)
    sessions = [raw(session(rng, int(rng.integers(1, 10)))) for _ in range(n)]
    adds = np.array([sum(r["product_action"] == "add" for r in s) for s in sessions])
    labels = (adds >= 2) ^ (rng.random(n) < 0.1)
    return sessions, labels.astype(np.int8)


def write_bundle(
    folder: Path, model: IntentEnsemble | GbmIntent | BlendIntent, *, recommender: bool
) -> Path:
    predictor = IntentPredictor.load(tiny_bundle(folder.with_name(folder.name + "-base")))
    next_item = None
    if recommender:
        torch.manual_seed(8)
        sizes = Sizes.of(predictor.vocab, SPEC)
        next_model = NextItemModel(NextItemConfig(sku_dim=8, hidden=7), sizes)
        for p in next_model.parameters():
            torch.nn.init.normal_(p, std=0.5)
        next_item = state_of(SequenceRecommender(next_model.eval()))
    saved = save_bundle(
        folder, model=model, spec=SPEC, vocab=predictor.vocab, metrics={}, next_item=next_item
    )
    loaded = IntentPredictor.load(saved)
    if loaded.has_serving_graph:  # as publish does
        loaded.write_onnx(saved)
    return saved


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LightGBM model and a blend of it with a random 3-member GRU ensemble."""
    predictor = IntentPredictor.load(tiny_bundle(tmp_path_factory.mktemp("tiny") / "b"))
    vocab = predictor.vocab
    (train, y_train), (valid, y_valid) = labelled(400, 1), labelled(150, 2)
    vectors = np.random.default_rng(3).normal(size=(vocab.n_sku_tokens, 4))
    gbm_config = GbmConfig(max_rounds=40, patience=10, min_data_in_leaf=5, seed=1)
    gbm = train_gbm(
        gbm_config,
        (predictor.encode(train), y_train),
        (predictor.encode(valid), y_valid),
        sku_vectors=vectors,
        threads=1,
    ).model
    torch.manual_seed(4)
    gru_config = IntentConfig(members=3, hidden=8)
    gru = IntentEnsemble(gru_config, Sizes.of(vocab, SPEC))
    for p in gru.parameters():
        torch.nn.init.normal_(p, std=0.5)
    config = BlendConfig(
        weight=0.4,
        space="logit",
        gru_name="g",
        gbm_name="t",
        gru=gru_config.to_dict(),
        gbm=gbm_config.to_dict(),
    )
    return {"lightgbm": gbm, "blend": BlendIntent(config, gru, gbm)}


def sessions_of(seed: int) -> list[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    return [raw(session(rng, n)) for n in (1, 2, 3, 5, 6, 9, 15, 30)]


def scored(model: LoadedModel, sessions: list[list[dict[str, Any]]]) -> list[Outcome]:
    """One batch of all `sessions`, then each alone (the service's usual batch)."""
    options = NextItemOptions(k=5, exclude_seen=True)
    together = score_batch(model, [sessions], [options]).outcomes[0]
    alone = [score_batch(model, [[s]], [options]).outcomes[0][0] for s in sessions]
    for a, b in zip(together, alone, strict=True):
        assert a.purchase_probability == pytest.approx(b.purchase_probability, abs=1e-6)
        if a.next_items is None or b.next_items is None:  # a bundle without a recommender
            assert a.next_items is b.next_items is None
            continue
        assert [sku for sku, _ in a.next_items] == [sku for sku, _ in b.next_items]
        np.testing.assert_allclose(
            [v for _, v in a.next_items], [v for _, v in b.next_items], atol=SCORE_TOLERANCE
        )
    return together


@pytest.mark.parametrize("kind", ["lightgbm", "blend"])
def test_the_graph_serves_what_pytorch_and_the_offline_predictor_give(
    models: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    folder = write_bundle(tmp_path / "b", models[kind], recommender=True)
    assert (folder / ONNX_FILE).is_file()
    on_graph = LoadedModel.from_bundle(folder, runtime="onnx")
    on_torch = LoadedModel.from_bundle(folder, runtime="torch")
    graph = on_graph.onnx
    assert graph is not None and graph.has_top_k and on_torch.onnx is None
    assert graph.has_probability == (kind == "blend")  # the trees are not in the graph
    predictor = on_graph.predictor
    sessions = sessions_of(6)
    inputs = predictor.encode(sessions)
    if kind == "blend":  # the graph's probability is the GRU half's
        assert predictor.gru is not None
        gru, _ = graph.run(inputs)
        assert gru is not None
        np.testing.assert_allclose(gru, predict_proba(predictor.gru, inputs), atol=1e-5, rtol=0)
    offline = predictor.predict_inputs(inputs)
    assert np.ptp(offline) > 0.01  # the model's answer depends on the session

    by_graph, by_torch = scored(on_graph, sessions), scored(on_torch, sessions)

    served = np.array([o.purchase_probability for o in by_graph], dtype=np.float64)
    np.testing.assert_allclose(served, offline, atol=PROBABILITY_TOLERANCE, rtol=0)
    for a, b, rows in zip(by_graph, by_torch, sessions, strict=True):
        assert a.purchase_probability == pytest.approx(
            b.purchase_probability, abs=PROBABILITY_TOLERANCE
        )
        assert a.next_items is not None and b.next_items is not None
        assert [s for s, _ in a.next_items] == [s for s, _ in b.next_items]
        np.testing.assert_allclose(
            [v for _, v in a.next_items], [v for _, v in b.next_items], atol=SCORE_TOLERANCE
        )
        assert not {r["product_sku_hash"] for r in rows} & {s for s, _ in a.next_items}


@pytest.mark.parametrize("kind", ["lightgbm", "blend"])
def test_a_bundle_without_a_graph_derives_it_and_serves_the_same(
    models: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    folder = write_bundle(tmp_path / "b", models[kind], recommender=True)
    older = tmp_path / "older"
    shutil.copytree(folder, older)
    (older / ONNX_FILE).unlink()

    derived = LoadedModel.from_bundle(older, runtime="onnx")

    assert derived.onnx is not None and derived.onnx.has_top_k
    assert not (older / ONNX_FILE).exists()  # derived in memory: the bundle is not changed
    sessions = sessions_of(7)
    written = scored(LoadedModel.from_bundle(folder, runtime="onnx"), sessions)
    assert scored(derived, sessions) == written


def test_a_lightgbm_bundle_with_nothing_neural_has_no_graph(
    models: dict[str, Any], tmp_path: Path
) -> None:
    folder = write_bundle(tmp_path / "b", models["lightgbm"], recommender=False)
    assert not (folder / ONNX_FILE).exists()
    model = LoadedModel.from_bundle(folder, runtime="onnx")
    assert model.onnx is None and model.fused is None
    assert not model.predictor.has_serving_graph
    with pytest.raises(BundleError, match="without a sequence recommender has no ONNX"):
        model.predictor.serving_graph()
    sessions = sessions_of(8)
    outcomes = scored(model, sessions)
    expected = model.predictor.predict_inputs(model.predictor.encode(sessions))
    got = np.array([o.purchase_probability for o in outcomes], dtype=np.float64)
    np.testing.assert_allclose(got, expected, atol=0, rtol=0)
    assert all(o.next_items is None for o in outcomes)

"""The serving graph's TopK (`model.onnx_intent`) answers the next items the recommender's own
ranking gives: the same SKUs in the same order and the same probabilities, with and without
excluding the seen SKUs; a graph written before it had TopK (every SKU's score out) is served
by the older path with the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from smallboat.bundle import ONNX_FILE
from smallboat.features.encode import TOKEN_COLUMNS
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes
from smallboat.model.next_item.recommenders import token_leaves
from smallboat.model.next_item.sequence import NextItemConfig, NextItemModel, SequenceRecommender
from smallboat.model.next_item.store import state_of
from smallboat.model.onnx_intent import NEXT_ITEM_SCORES, PROBABILITY, TOP_K, OnnxIntent
from smallboat.model.predictor import IntentPredictor, save_bundle
from smallboat.serve import scoring
from smallboat.serve.scoring import LoadedModel, NextItemOptions
from tests.unit.test_serve_api import SKUS, SPEC, raw, session, tiny_bundle


def sequence_bundle(folder: Path, *, action_dim: int) -> Path:
    """tiny_bundle's vocabulary, a random 3-member ensemble whose action embeddings are
    `action_dim` wide and a random sequence recommender with its last-viewed-SKU terms (its
    widths are the defaults: with action_dim 8 the graph shares the token Gathers between the
    heads, with 3 it cannot)."""
    vocab = IntentPredictor.load(tiny_bundle(folder.with_name(folder.name + "-base"))).vocab
    sizes = Sizes.of(vocab, SPEC)
    torch.manual_seed(5)
    ensemble = IntentEnsemble(IntentConfig(members=3, hidden=8, action_dim=action_dim), sizes)
    next_model = NextItemModel(
        NextItemConfig(sku_dim=ensemble.config.sku_dim, hidden=7), sizes, leaves=token_leaves(vocab)
    )
    for p in [*ensemble.parameters(), *next_model.parameters()]:
        torch.nn.init.normal_(p, std=0.5)
    saved = save_bundle(
        folder,
        model=ensemble.eval(),
        spec=SPEC,
        vocab=vocab,
        metrics={},
        next_item=state_of(SequenceRecommender(next_model)),
    )
    IntentPredictor.load(saved).write_onnx(saved)
    return saved


def without_top_k(graph: Path) -> bytes:
    """The graph as earlier versions wrote it: probability and every SKU's score, no TopK."""
    model = onnx.load(str(graph))
    nodes = [n for n in model.graph.node if n.op_type != "TopK"]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [o for o in model.graph.output if o.name in (PROBABILITY, NEXT_ITEM_SCORES)]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    inputs = [i for i in model.graph.input if i.name != TOP_K]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("action_dim", [8, 3], ids=["shared-gathers", "own-gathers"])
def test_graph_top_k_answers_the_recommenders_ranking(tmp_path: Path, action_dim: int) -> None:
    folder = sequence_bundle(tmp_path / "b", action_dim=action_dim)
    on_graph = LoadedModel.from_bundle(folder, runtime="onnx")
    on_torch = LoadedModel.from_bundle(folder, runtime="torch")
    assert on_graph.onnx is not None and on_graph.onnx.has_top_k
    token_gathers = [
        n for n in onnx.load(str(folder / ONNX_FILE)).graph.node
        if n.op_type == "Gather" and n.input[1] in TOKEN_COLUMNS
    ]  # fmt: skip
    assert len(token_gathers) == (7 if action_dim == 8 else 14), [n.input for n in token_gathers]
    older = LoadedModel(
        on_graph.predictor, on_graph.fused, "older", str(folder), OnnxIntent(
            without_top_k(folder / ONNX_FILE)
        )
    )  # fmt: skip
    assert older.onnx is not None and older.onnx.has_next_item and not older.onnx.has_top_k
    rng = np.random.default_rng(11)
    sessions = [raw(session(rng, n)) for n in (1, 2, 4, 6, 9, 15)]
    n_sku = on_graph.predictor.vocab.n_sku_tokens
    for options in (
        NextItemOptions(k=3),
        NextItemOptions(k=5, exclude_seen=True),
        NextItemOptions(k=n_sku + 5),  # more than there are SKUs: every recommendable one
        NextItemOptions(k=len(SKUS), exclude_seen=True),
    ):
        answers = {
            name: scoring.score_batch(model, [sessions], [options]).outcomes[0]
            for name, model in (("graph", on_graph), ("torch", on_torch), ("older", older))
        }
        for graph, by_torch, by_older in zip(*answers.values(), strict=True):
            assert graph.next_items is not None and by_torch.next_items is not None
            assert [s for s, _ in graph.next_items] == [s for s, _ in by_torch.next_items]
            assert graph.next_items == by_older.next_items  # the same graph's scores
            np.testing.assert_allclose(
                [v for _, v in graph.next_items], [v for _, v in by_torch.next_items], atol=1e-5
            )
            assert graph.purchase_probability == by_older.purchase_probability
            assert graph.purchase_probability == pytest.approx(
                by_torch.purchase_probability, abs=1e-5
            )
            assert len(graph.next_items) <= options.k
        if options.exclude_seen:
            for rows, outcome in zip(sessions, answers["graph"], strict=True):
                seen = {row.get("product_sku_hash") for row in rows}
                assert outcome.next_items is not None
                assert not seen & {sku for sku, _ in outcome.next_items}

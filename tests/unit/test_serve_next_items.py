"""`next_items` in the prediction API, in-process on a small bundle whose next-item head is a
sequence model with random weights: the served top-k is the offline model's, sorted by
descending score; `k` and `exclude_seen` are honoured and checked; bundles without the head
answer null."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from smallboat.bundle import NEXT_ITEM_DIR
from smallboat.config import Settings
from smallboat.model.intent import Sizes
from smallboat.model.next_item.sequence import NextItemConfig, NextItemModel, SequenceRecommender
from smallboat.model.next_item.store import save_state, state_of
from smallboat.model.predictor import IntentPredictor
from smallboat.serve.app import create_app
from smallboat.serve.models import DEFAULT_K
from tests.unit.test_serve_api import raw, session, tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tiny_bundle(tmp_path_factory.mktemp("next-item") / "b")
    predictor = IntentPredictor.load(folder)
    torch.manual_seed(4)
    model = NextItemModel(NextItemConfig(hidden=8), Sizes.of(predictor.vocab, predictor.spec))
    for p in model.parameters():  # scores far apart: no ties to order arbitrarily
        torch.nn.init.normal_(p, std=0.5)
    save_state(folder / NEXT_ITEM_DIR, state_of(SequenceRecommender(model)))
    return folder


@pytest.fixture(scope="module")
def offline(bundle: Path) -> IntentPredictor:
    return IntentPredictor.load(bundle)


@pytest.fixture
def client(bundle: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(home=tmp_path / "home"), bundle=bundle)) as c:
        yield c


def ranking(predictor: IntentPredictor, rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Every SKU of the vocabulary with its offline score, best first."""
    assert predictor.next_item is not None
    scores = predictor.next_item.scores(predictor.encode([rows]))[0].numpy()
    order = np.argsort(-scores, kind="stable")
    return [
        (str(predictor.sku_names[t]), float(scores[t])) for t in order if np.isfinite(scores[t])
    ]


def pairs(answer: dict[str, Any]) -> list[tuple[str, float]]:
    return [(item["sku"], item["score"]) for item in answer["next_items"]]


def assert_same(served: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [s for s, _ in served] == [s for s, _ in expected]
    np.testing.assert_allclose([v for _, v in served], [v for _, v in expected], rtol=1e-5)
    assert [v for _, v in served] == sorted((v for _, v in served), reverse=True)


def test_served_top_k_is_the_offline_models_sorted_by_score(
    client: TestClient, offline: IntentPredictor
) -> None:
    rng = np.random.default_rng(0)
    for n in (1, 3, 8, 15):
        rows = raw(session(rng, n))
        r = client.post("/v1/predict", json={"events": rows, "k": 7})
        assert r.status_code == 200, r.text
        assert_same(pairs(r.json()), ranking(offline, rows)[:7])


def test_k_defaults_to_ten_and_applies_to_every_session_of_a_batch(
    client: TestClient, offline: IntentPredictor
) -> None:
    rng = np.random.default_rng(1)
    single = client.post("/v1/predict", json={"events": raw(session(rng, 4))}).json()
    assert len(single["next_items"]) == DEFAULT_K
    sessions = [raw(session(rng, int(n))) for n in (2, 5, 9)]
    r = client.post("/v1/predict", json={"sessions": [{"events": s} for s in sessions], "k": 3})
    assert r.status_code == 200, r.text
    for answer, rows in zip(r.json()["predictions"], sessions, strict=True):
        assert_same(pairs(answer), ranking(offline, rows)[:3])


def test_exclude_seen_leaves_out_the_sessions_skus(
    client: TestClient, offline: IntentPredictor
) -> None:
    rng = np.random.default_rng(2)
    rows = raw(session(rng, 30))
    seen = {r["product_sku_hash"] for r in rows if r["product_sku_hash"]}
    assert len(seen) > 5
    r = client.post("/v1/predict", json={"events": rows, "k": 20, "exclude_seen": True})
    assert r.status_code == 200, r.text
    served = pairs(r.json())
    assert not {s for s, _ in served} & seen
    assert_same(served, [(s, v) for s, v in ranking(offline, rows) if s not in seen][:20])
    # the vocabulary has 40 SKUs: asking for more than are left returns what is left
    r = client.post("/v1/predict", json={"events": rows, "k": 100, "exclude_seen": True})
    assert len(r.json()["next_items"]) == 40 - len(seen & set(offline.sku_names[3:].tolist()))


@pytest.mark.parametrize(
    ("k", "detail"),
    [
        (0, "k must be 1 to 100 (how many next items to return), got 0; leave it out for 10"),
        (101, "k must be 1 to 100 (how many next items to return), got 101; leave it out"),
        ("ten", "k 'ten': Input should be a valid integer"),
    ],
)
def test_a_bad_k_is_a_422_naming_it(client: TestClient, k: Any, detail: str) -> None:
    rows = raw(session(np.random.default_rng(3), 3))
    r = client.post("/v1/predict", json={"events": rows, "k": k})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert r.json()["detail"].startswith(detail), r.json()["detail"]


def test_session_and_sagemaker_routes_answer_next_items(
    client: TestClient, offline: IntentPredictor
) -> None:
    rng = np.random.default_rng(4)
    rows = raw(session(rng, 6))
    for row in rows:
        r = client.post("/v1/sessions/s1/events", json={"events": [row]})
        assert r.status_code == 200, r.text
    assert_same(pairs(r.json()), ranking(offline, rows)[:DEFAULT_K])
    r = client.post("/invocations", json={"events": rows, "k": 4})
    assert r.status_code == 200, r.text
    assert_same(pairs(r.json()), ranking(offline, rows)[:4])


def test_an_empty_session_has_no_next_items(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"events": []})
    assert r.status_code == 200
    assert r.json()["purchase_probability"] is None and r.json()["next_items"] is None


def test_a_bundle_without_a_next_item_head_answers_null(tmp_path: Path) -> None:
    old = tiny_bundle(tmp_path / "old")
    assert IntentPredictor.load(old).next_item is None
    with TestClient(create_app(Settings(home=tmp_path / "home"), bundle=old)) as c:
        r = c.post("/v1/predict", json={"events": raw(session(np.random.default_rng(5), 4))})
    assert r.status_code == 200
    assert r.json()["purchase_probability"] is not None and r.json()["next_items"] is None

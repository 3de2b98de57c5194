"""The scorer's batches when a request forms its own batch (no drainer task), and the answers
`score_batch` builds without pydantic's validation, on a small bundle with random weights."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from smallboat.serve import scoring
from smallboat.serve.models import NextItem, Prediction
from smallboat.serve.scoring import LoadedModel, Scorer
from tests.unit.test_serve_api import raw, session, tiny_bundle


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return LoadedModel.from_bundle(tiny_bundle(tmp_path_factory.mktemp("bundle") / "b"))


def test_requests_parsed_together_share_the_batch_their_first_one_scores(
    model: LoadedModel,
) -> None:
    """Ten one-session requests at once: the first forms the batch and the other nine join it
    (one pass of ten, on the loop), each answer its own session's."""
    rng = np.random.default_rng(5)
    sessions = [raw(session(rng, 6)) for _ in range(10)]
    alone = [scoring.score_batch(model, [[s]]).outcomes[0][0] for s in sessions]
    batches: list[int] = []

    async def run() -> list[list[scoring.Outcome]]:
        scorer = Scorer(model, on_batch=lambda b: batches.append(b.sessions))
        try:
            return await asyncio.gather(*(scorer.score([s]) for s in sessions))
        finally:
            scorer.close()

    answers = asyncio.run(run())
    assert batches == [10]
    for got, expected in zip(answers, alone, strict=True):
        assert got[0].prediction.purchase_probability == pytest.approx(
            expected.prediction.purchase_probability, abs=1e-6
        )


def test_a_cancelled_first_request_leaves_its_batch_to_the_drainer(model: LoadedModel) -> None:
    """The request forming a batch is cancelled (its client went away) while others wait to
    join it: they are still answered."""
    rng = np.random.default_rng(6)
    first, second = raw(session(rng, 4)), raw(session(rng, 5))

    async def run() -> tuple[bool, float | None]:
        scorer = Scorer(model)
        try:
            a = asyncio.ensure_future(scorer.score([first]))
            b = asyncio.ensure_future(scorer.score([second]))
            await asyncio.sleep(0)  # a forms the batch and yields; b queues behind it
            a.cancel()
            answer = await asyncio.wait_for(b, 10.0)
            return a.cancelled(), answer[0].prediction.purchase_probability
        finally:
            scorer.close()

    cancelled, probability = asyncio.run(run())
    assert cancelled
    assert probability is not None and 0.0 < probability < 1.0


def test_answers_built_without_validation_are_what_validation_gives(model: LoadedModel) -> None:
    """`score_batch` builds its predictions with `model_construct`: each must equal its own
    validated copy (plain Python types: a NumPy float would not), and the summaries for the
    prediction log must be plain JSON values."""
    rng = np.random.default_rng(7)
    purchase_first = [
        {
            "event_type": "event_product",
            "product_action": "purchase",
            "product_sku_hash": "sku-1",
            "server_timestamp_epoch_ms": 1_600_000_000_000,
            "hashed_url": None,
        }
    ]
    sessions = [raw(session(rng, n)) for n in (1, 3, 9, 20)] + [[], purchase_first]
    outcomes = scoring.score_batch(model, [sessions]).outcomes[0]
    assert [o.prediction.purchase_probability is None for o in outcomes] == [False] * 4 + [True] * 2
    for outcome in outcomes:
        prediction = outcome.prediction
        validated = Prediction.model_validate(prediction.model_dump())
        assert validated == prediction
        assert type(prediction.events_used) is int and type(prediction.oov_skus) is int
        if prediction.purchase_probability is not None:
            assert type(prediction.purchase_probability) is float
            assert outcome.summary is not None
            assert json.loads(json.dumps(outcome.summary)) == outcome.summary
            assert not any(isinstance(v, np.generic) for v in outcome.summary.values())
        for item in prediction.next_items or []:
            assert isinstance(item, NextItem)
            assert type(item.sku) is str and type(item.score) is float

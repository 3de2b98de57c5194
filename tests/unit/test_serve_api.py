"""The prediction app in-process (FastAPI's TestClient) on a small bundle with random weights:
the micro-batcher, validation edge cases and admin checks. The real service over uvicorn, with a
trained model, is in tests/integration/test_serve.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from smallboat.config import Settings
from smallboat.features import FeatureSpec, fit_vocabulary
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes, predict_proba
from smallboat.model.predictor import IntentPredictor, save_bundle
from smallboat.serve import scoring
from smallboat.serve.app import create_app
from smallboat.serve.scoring import LoadedModel, Scorer

SPEC = FeatureSpec(max_events=6, min_sku_count=1)
SKUS = [f"sku-{i}" for i in range(40)]


def tiny_bundle(folder: Path) -> Path:
    """A 3-member bundle with random weights over 40 catalogued SKUs."""
    import torch

    catalog = pd.DataFrame(
        {
            "product_sku_hash": SKUS,
            "category_hash": [f"c{i % 3}/leaf{i % 7}" for i in range(len(SKUS))],
            "price_bucket": [1 + i % 10 for i in range(len(SKUS))],
        }
    )
    vocab = fit_vocabulary(dict.fromkeys(SKUS, 5), catalog, SPEC)
    torch.manual_seed(3)
    model = IntentEnsemble(IntentConfig(members=3, hidden=8), Sizes.of(vocab, SPEC))
    for member in model.members:  # visible differences between members and sessions
        for p in member.parameters():
            torch.nn.init.normal_(p, std=0.5)
    return save_bundle(folder, model=model, spec=SPEC, vocab=vocab, metrics={})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b")


def session(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    rows, t = [], 1_600_000_000_000
    for _ in range(n):
        t += int(rng.integers(1_000, 120_000))
        action = str(rng.choice(["pageview", "detail", "add", "remove"]))
        if action == "pageview":
            rows.append({"event_type": "pageview", "server_timestamp_epoch_ms": t})
        else:
            sku = str(rng.choice([*SKUS, "unknown-sku"]))
            rows.append(
                {
                    "event_type": "event_product",
                    "product_action": action,
                    "product_sku_hash": sku,
                    "server_timestamp_epoch_ms": t,
                }
            )
    return rows


def raw(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("event_type", "product_action", "product_sku_hash", "server_timestamp_epoch_ms")
    return [{k: r.get(k) for k in keys} | {"hashed_url": None} for r in rows]


@pytest.fixture
def client(bundle: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "home", admin_token="tok")
    with TestClient(create_app(settings, bundle=bundle)) as c:
        yield c


def test_concurrent_requests_share_forward_passes_and_keep_their_answers(bundle: Path) -> None:
    rng = np.random.default_rng(0)
    sessions = [session(rng, int(rng.integers(1, 12))) for _ in range(60)]
    model = LoadedModel.from_bundle(bundle)
    assert model.predictor.ensemble is not None
    expected = predict_proba(
        model.predictor.ensemble, model.predictor.encode([raw(s) for s in sessions])
    )
    batches: list[int] = []

    async def run() -> list[list[scoring.Outcome]]:
        scorer = Scorer(model, on_batch=lambda b: batches.append(b.sessions))
        try:
            return await asyncio.gather(*(scorer.score([raw(s)]) for s in sessions))
        finally:
            scorer.close()

    answers = asyncio.run(run())
    got = np.array([a[0].prediction.purchase_probability for a in answers], dtype=float)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert sum(batches) == 60
    assert len(batches) < 60  # requests queued while a pass ran were batched together
    assert max(batches) > 1


def test_the_fused_network_and_the_ensemble_agree_across_the_switch(bundle: Path) -> None:
    """Small batches run fused, large ones member by member: the same probabilities either way."""
    rng = np.random.default_rng(1)
    model = LoadedModel.from_bundle(bundle)
    many = [raw(session(rng, 8)) for _ in range(scoring.FUSED_MAX_BATCH + 5)]
    large = scoring.score_batch(model, [many]).outcomes[0]
    small = [scoring.score_batch(model, [[s]]).outcomes[0][0] for s in many]
    np.testing.assert_allclose(
        np.array([o.prediction.purchase_probability for o in large], dtype=float),
        np.array([o.prediction.purchase_probability for o in small], dtype=float),
        atol=1e-6,
    )


def test_a_swap_takes_effect_at_the_next_batch(bundle: Path, tmp_path: Path) -> None:
    first = LoadedModel.from_bundle(bundle, version="1")
    second = LoadedModel.from_bundle(bundle, version="2")
    rows = raw(session(np.random.default_rng(2), 5))

    async def run() -> list[str]:
        scorer = Scorer(first)
        try:
            before = await scorer.score([rows])
            assert scorer.swap(second) is first
            after = await scorer.score([rows])
            return [before[0].prediction.model_version, after[0].prediction.model_version]
        finally:
            scorer.close()

    assert asyncio.run(run()) == ["1", "2"]


def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs(bundle: Path) -> None:
    model = LoadedModel.from_bundle(bundle)
    rows = raw(session(np.random.default_rng(3), 4))
    broken = [{**rows[0], "event_type": "event_product", "product_action": "teleport"}]

    async def run() -> tuple[BaseException | None, float | None]:
        scorer = Scorer(model)
        try:
            failed = await asyncio.gather(scorer.score([broken]), return_exceptions=True)
            ok = await scorer.score([rows])
            error = failed[0] if isinstance(failed[0], BaseException) else None
            return error, ok[0].prediction.purchase_probability
        finally:
            scorer.close()

    error, probability = asyncio.run(run())
    assert isinstance(error, ValueError) and "unknown action" in str(error)
    assert probability is not None and 0.0 < probability < 1.0


def test_empty_strings_are_nulls_as_in_the_coveo_files(client: TestClient) -> None:
    rows = session(np.random.default_rng(4), 3)
    coveo_style = [
        r | {"product_action": r.get("product_action") or "", "hashed_url": ""} for r in rows
    ]
    coveo_style = [
        r | {"product_sku_hash": ""} if r["event_type"] == "pageview" else r for r in coveo_style
    ]
    a = client.post("/v1/predict", json={"events": coveo_style})
    b = client.post("/v1/predict", json={"events": rows})
    assert a.status_code == b.status_code == 200, a.text
    assert a.json() == b.json()


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            {"server_timestamp_epoch_ms": -5},
            "events[0].server_timestamp_epoch_ms -5: Input should be greater than or equal to 0",
        ),
        (
            {"product_sku_hash": "x" * 300},
            "events[0].product_sku_hash",
        ),
        (
            {"product_sku_hash": "\ud800"},
            "events[0].product_sku_hash is not valid Unicode text: it holds a lone surrogate",
        ),
        (
            {"event_type": "pageview"},
            "events[0] is a pageview: product_action and product_sku_hash must be null",
        ),
        (
            {"event_type": "click"},
            "events[0].event_type 'click' is not one of 'pageview' or 'event_product'",
        ),
    ],
)
def test_invalid_events_are_422_naming_the_field(
    client: TestClient, change: dict[str, Any], detail: str
) -> None:
    event = {
        "event_type": "event_product",
        "product_action": "add",
        "product_sku_hash": "sku-1",
        "server_timestamp_epoch_ms": 10,
    } | change
    body = json.dumps({"events": [event]})  # ASCII escapes: a lone surrogate stays "\ud800"
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert r.json()["detail"].startswith(detail)


def test_a_session_event_for_another_session_is_refused(client: TestClient) -> None:
    row = session(np.random.default_rng(5), 1)[0] | {"session_id_hash": "other"}
    r = client.post("/v1/sessions/mine/events", json={"events": [row]})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "events[0].session_id_hash 'other' is not the session of the path ('mine'); "
        "leave it out or make them equal"
    )
    assert client.get("/v1/sessions/mine").status_code == 404


def test_a_stored_session_restarts_after_30_idle_minutes_of_event_time(client: TestClient) -> None:
    rows = session(np.random.default_rng(6), 3)
    for row in rows:
        client.post("/v1/sessions/s/events", json={"events": [row]})
    later = rows[0] | {
        "server_timestamp_epoch_ms": rows[-1]["server_timestamp_epoch_ms"] + 31 * 60_000
    }
    answer = client.post("/v1/sessions/s/events", json={"events": [later]}).json()
    assert answer["events_in_session"] == 1
    alone = client.post("/v1/predict", json={"events": [later]}).json()
    assert answer["purchase_probability"] == pytest.approx(alone["purchase_probability"])
    stored = client.get("/v1/sessions/s").json()
    assert [e["server_timestamp_epoch_ms"] for e in stored["events"]] == [
        later["server_timestamp_epoch_ms"]
    ]


def test_admin_reload_needs_the_bearer_token(client: TestClient, bundle: Path) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"authorization": "Basic tok"}).status_code == 401
    assert client.post("/admin/reload", headers={"authorization": "Bearer no"}).status_code == 403
    ok = client.post("/admin/reload", headers={"authorization": "Bearer tok"})
    assert ok.status_code == 200
    assert ok.json()["model_source"] == str(bundle)  # --bundle: reload re-reads that folder


def test_a_failed_reload_keeps_serving_the_old_model(
    client: TestClient, bundle: Path, tmp_path: Path
) -> None:
    client.app.state.bundle = tmp_path / "gone"  # type: ignore[attr-defined]
    r = client.post("/admin/reload", headers={"authorization": "Bearer tok"})
    assert r.status_code == 503
    assert r.json()["detail"].startswith(
        f"reload failed, still serving {IntentPredictor.load(bundle).version}"
    )
    assert "is not a model bundle" in r.json()["detail"]
    rows = session(np.random.default_rng(7), 2)
    assert client.post("/v1/predict", json={"events": rows}).status_code == 200
    assert 'smallboat_model_reloads_total{outcome="failed"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"k": True}, "k", "must be an integer, not true or false"),
        ({"exclude_seen": "yes"}, "exclude_seen", "Input should be a valid boolean"),
        ({"exclude_seen": 1}, "exclude_seen", "Input should be a valid boolean"),
    ],
)
def test_integer_and_boolean_fields_take_no_other_type(
    client: TestClient, change: dict[str, Any], field: str, problem: str
) -> None:
    """The schema says integer and boolean: `k: true` was read as 1, "yes" as true."""
    rows = session(np.random.default_rng(3), 3)
    r = client.post("/v1/predict", json={"events": rows, **change})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert r.json()["detail"].startswith(field)
    assert problem in r.json()["detail"]


def test_an_event_time_of_false_is_refused_and_empty_ids_are_null(client: TestClient) -> None:
    row = {"event_type": "pageview", "server_timestamp_epoch_ms": False}
    r = client.post("/v1/sessions/s1/events", json={"events": [row]})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("events[0].server_timestamp_epoch_ms")
    # "" is "no value", and the OpenAPI document says so (no minLength).
    row = {"event_type": "pageview", "server_timestamp_epoch_ms": 1_600_000_000_000}
    assert client.post("/v1/predict", json={"events": [{**row, "product_sku_hash": ""}]}).is_success
    schema = client.get("/openapi.json").json()["components"]["schemas"]["BrowsingEvent"]
    sku = schema["properties"]["product_sku_hash"]["anyOf"][0]
    assert sku == {"type": "string", "maxLength": 256}


def test_the_openapi_document_names_every_status_and_allowed_method(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert {"408", "431"} <= set(answers), (method, path)
            if "{" in path:
                assert "404" in answers, (method, path)
    assert paths["/ping"]["get"]["responses"]["200"]["content"] == {}
    # A 405 names every method of the path, not only those of the first route that matched.
    r = client.request("DELETE", "/v1/predict")
    assert r.status_code == 405
    allowed = set(r.headers["allow"].split(", ")) - {"HEAD"}  # Starlette's GET routes add HEAD
    assert allowed == {m.upper() for m in paths["/v1/predict"]} == {"GET", "POST"}

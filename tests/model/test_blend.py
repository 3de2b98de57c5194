"""A blend (`model.blend.BlendIntent`) predicts its members' probabilities averaged, and survives
its round trips (the sweep's artifact bytes, the bundle's files) without changing a prediction."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smallboat.bundle import GBM_DIR, META_FILE, ONNX_FILE, WEIGHTS_FILE
from smallboat.features import FeatureSpec, ModelInputs, encode_sessions, fit_vocabulary
from smallboat.model.blend import BlendConfig, BlendIntent, combine, pack
from smallboat.model.gbm import GbmConfig, train_gbm
from smallboat.model.intent import IntentConfig, IntentEnsemble, Sizes, predict_proba
from smallboat.model.predictor import IntentPredictor, save_bundle

SPEC = FeatureSpec(max_events=8, min_sku_count=1)
SKUS = [f"sku-{i}" for i in range(30)]


def sessions(n: int, seed: int) -> tuple[list[list[dict[str, Any]]], np.ndarray]:
    """Random sessions; buyers add to cart more often (a signal the trees can find)."""
    rng = np.random.default_rng(seed)
    out, labels, t = [], [], 1_600_000_000_000
    for _ in range(n):
        buyer = rng.random() < 0.3
        actions = ["detail", "add", "add"] if buyer else ["detail", "detail", "add", "remove"]
        rows = []
        for _ in range(int(rng.integers(2, 9))):
            t += int(rng.integers(1_000, 60_000))
            rows.append(
                {
                    "event_type": "event_product",
                    "product_action": str(rng.choice(actions)),
                    "product_sku_hash": str(rng.choice(SKUS)),
                    "server_timestamp_epoch_ms": t,
                    "hashed_url": None,
                }
            )
        out.append(rows)
        labels.append(int(buyer))
    return out, np.array(labels, dtype=np.int8)


@pytest.fixture(scope="module")
def blend() -> tuple[BlendIntent, ModelInputs, Any]:
    import torch

    catalog = pd.DataFrame(
        {
            "product_sku_hash": SKUS,
            "category_hash": [f"c{i % 3}/leaf{i % 5}" for i in range(len(SKUS))],
            "price_bucket": [1 + i % 10 for i in range(len(SKUS))],
        }
    )
    vocab = fit_vocabulary(dict.fromkeys(SKUS, 5), catalog, SPEC)
    (train, y_train), (valid, y_valid) = sessions(600, 1), sessions(200, 2)
    x_train, x_valid = (encode_sessions(s, vocab, SPEC) for s in (train, valid))
    vectors = np.random.default_rng(3).normal(size=(vocab.n_sku_tokens, 4))
    gbm_config = GbmConfig(max_rounds=40, patience=10, min_data_in_leaf=5, seed=1)
    gbm = train_gbm(
        gbm_config, (x_train, y_train), (x_valid, y_valid), sku_vectors=vectors, threads=1
    ).model
    torch.manual_seed(4)
    gru_config = IntentConfig(members=2, hidden=8)
    gru = IntentEnsemble(gru_config, Sizes.of(vocab, SPEC))
    for p in gru.parameters():  # random weights that move the probabilities visibly
        torch.nn.init.normal_(p, std=0.5)
    config = BlendConfig(
        weight=0.3,
        space="logit",
        gru_name="g",
        gbm_name="t",
        gru=gru_config.to_dict(),
        gbm=gbm_config.to_dict(),
    )
    return BlendIntent(config, gru, gbm), x_valid, vocab


def test_the_blend_is_its_members_averaged(blend: tuple[BlendIntent, ModelInputs, Any]) -> None:
    model, x, _ = blend
    p_gru, p_gbm = predict_proba(model.gru, x), model.gbm.predict(x)
    assert np.abs(p_gru - p_gbm).max() > 0.05  # the members disagree: the weight matters
    got = model.predict(x)
    np.testing.assert_allclose(got, combine(p_gru, p_gbm, weight=0.3, space="logit"), atol=0)
    assert got.dtype == np.float64 and len(model.predict(x.take(np.zeros(0, np.int64)))) == 0


def test_the_sweeps_artifact_round_trip_predicts_the_same(
    blend: tuple[BlendIntent, ModelInputs, Any],
) -> None:
    import torch

    model, x, _ = blend
    state = io.BytesIO()
    torch.save(model.gru.state_dict(), state)
    blob = pack(state.getvalue(), model.gbm.to_bytes())
    again = BlendIntent.from_bytes(model.config, blob, model.sizes)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_the_bundle_round_trip_predicts_the_same(
    blend: tuple[BlendIntent, ModelInputs, Any], tmp_path: Path
) -> None:
    model, x, vocab = blend
    folder = save_bundle(tmp_path / "b", model=model, spec=SPEC, vocab=vocab, metrics={})
    assert (folder / WEIGHTS_FILE).is_file() and (folder / GBM_DIR).is_dir()
    assert not (folder / ONNX_FILE).exists()
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["model_config"] == model.config.to_dict()
    assert meta["model_config"]["kind"] == "blend" and meta["sizes"]["n_sku"] == vocab.n_sku_tokens
    loaded = IntentPredictor.load(folder)
    assert isinstance(loaded.model, BlendIntent) and loaded.ensemble is None
    assert loaded.model.config == model.config
    np.testing.assert_array_equal(loaded.predict_inputs(x), model.predict(x))

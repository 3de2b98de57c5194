"""A blend champion end to end: TrainFlow with a GRU and a LightGBM entry and `--blend always` on a
small synthetic home, the blend registered (card and MLflow name it and its weight), loaded by
`smallboat serve` from the registry and called over HTTP; the served probabilities equal the
flow's offline test predictions, which are the members' own predictions averaged. The bundle's
serving graph (its GRU half and the recommender on ONNX Runtime) equals PyTorch."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smallboat.bundle import GBM_DIR, META_FILE, WEIGHTS_FILE, BundleError
from smallboat.config import Settings
from smallboat.serve.server import ServeProcess
from tests.trained_service import (
    Trained,
    assert_graph_equals_torch,
    assert_graphless_copy_serves_the_same,
    assert_served_equal_offline,
    champion_folder,
    trained_copy,
)

pytestmark = pytest.mark.slow

GRID = json.dumps(
    [
        {"name": "pair", "hidden": 16, "batch_size": 64, "max_epochs": 4, "members": 2},
        {"name": "trees", "kind": "lightgbm", "max_rounds": 300},
    ]
)


@pytest.fixture(scope="module")
def trained_blend(
    built_home: tuple[Settings, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    home = tmp_path_factory.mktemp("blend") / "home"
    with trained_copy(built_home[0], home, grid=GRID, blend="always") as trained:
        yield trained


@pytest.fixture(scope="module")
def service(trained_blend: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = {"SMALLBOAT_SERVE_MAX_BODY_BYTES": str(4 << 20)}
    with ServeProcess(trained_blend.settings.home_dir, env=env, log_path=log) as process:
        yield process.url


def test_the_champion_bundle_is_the_two_members_averaged(trained_blend: Trained) -> None:
    from smallboat.model.blend import BlendIntent, combine
    from smallboat.model.intent import predict_proba
    from smallboat.model.predictor import IntentPredictor

    folder = champion_folder(trained_blend)
    assert (folder / GBM_DIR).is_dir() and (folder / WEIGHTS_FILE).is_file()
    predictor = IntentPredictor.load(folder)
    model = predictor.model
    assert isinstance(model, BlendIntent) and predictor.ensemble is None
    assert predictor.gru is model.gru
    assert (model.config.gru_name, model.config.gbm_name) == ("pair", "trees")
    # offline, from raw rows through the bundle: the flow's own predictions ...
    inputs = predictor.encode(trained_blend.sessions)
    again = predictor.predict_inputs(inputs)
    np.testing.assert_allclose(again, trained_blend.offline, atol=1e-9, rtol=0)
    assert len(np.unique(np.round(trained_blend.offline, 6))) > 20  # not a constant model
    # ... which are the members' predictions averaged with the weight chosen on validation
    members = combine(
        predict_proba(model.gru, inputs),
        model.gbm.predict(inputs),
        weight=model.config.weight,
        space=model.config.space,
    )
    np.testing.assert_allclose(again, members, atol=1e-12, rtol=0)


def test_the_card_and_mlflow_say_what_was_chosen_and_the_weight(trained_blend: Trained) -> None:
    from mlflow import MlflowClient

    from smallboat.model.predictor import IntentPredictor

    config = IntentPredictor.load(champion_folder(trained_blend)).meta.require(
        "model_config", Path()
    )
    label = (
        f"{config['weight']:.2f} x pair + {1 - config['weight']:.2f} x trees ({config['space']})"
    )
    registration = trained_blend.outcome.registration
    assert registration is not None and registration["card_path"] is not None
    assert f"best blend: {label}" in card_text(Path(registration["card_path"]))
    uri = registration["tracking_uri"]
    run = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(registration["mlflow_run_id"])
    assert run.data.tags["intent_model"] == "blend"
    assert run.data.tags["blend"] == label
    assert run.data.metrics["train_blend_weight"] == pytest.approx(config["weight"])


def card_text(path: Path) -> str:
    """The components the Metaflow card embeds (base64 JSON in the page's script), as text."""
    match = re.search(r'window.__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', path.read_text())
    assert match, f"no card data in {path}"
    return json.dumps(json.loads(base64.b64decode(match.group(1))))


def test_served_predictions_equal_the_flows_offline_predictions(
    trained_blend: Trained, service: str
) -> None:
    assert_served_equal_offline(trained_blend, service)


def test_the_serving_graph_equals_pytorch(trained_blend: Trained) -> None:
    assert_graph_equals_torch(trained_blend)


def test_a_blend_bundle_without_a_graph_derives_it_and_serves_the_same(
    trained_blend: Trained, tmp_path: Path
) -> None:
    assert_graphless_copy_serves_the_same(trained_blend, tmp_path / "older-bundle")


def test_a_blend_missing_a_member_is_a_one_line_bundle_error(
    trained_blend: Trained, tmp_path: Path
) -> None:
    from smallboat.model.predictor import IntentPredictor

    copy = tmp_path / "bundle"
    shutil.copytree(champion_folder(trained_blend), copy)
    (copy / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match=f"its blend \\({WEIGHTS_FILE} and gbm/\\)") as err:
        IntentPredictor.load(copy)
    assert "\n" not in str(err.value)
    meta = json.loads((copy / META_FILE).read_text())
    assert meta["model_config"]["kind"] == "blend"

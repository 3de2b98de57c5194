"""A LightGBM champion end to end: TrainFlow forced to a grid of only LightGBM on a small synthetic
home, registered, loaded by `smallboat serve` from the registry and called over HTTP; the served
probabilities equal the flow's offline test predictions (no train/serve skew through the tabular
features and the prod2vec vectors the bundle carries). The bundle's serving graph holds the
recommender alone (the trees score with LightGBM's predictor) and equals PyTorch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smallboat.bundle import GBM_DIR, WEIGHTS_FILE, BundleError
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

GRID = json.dumps([{"name": "trees", "kind": "lightgbm", "max_rounds": 300}])


@pytest.fixture(scope="module")
def trained_lgbm(
    built_home: tuple[Settings, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    with trained_copy(built_home[0], tmp_path_factory.mktemp("lgbm") / "home", grid=GRID) as t:
        yield t


@pytest.fixture(scope="module")
def service(trained_lgbm: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = {"SMALLBOAT_SERVE_MAX_BODY_BYTES": str(4 << 20)}
    with ServeProcess(trained_lgbm.settings.home_dir, env=env, log_path=log) as process:
        yield process.url


def test_the_champion_bundle_holds_a_lightgbm_model_and_no_intent_network(
    trained_lgbm: Trained,
) -> None:
    from metaflow import Run, namespace

    from smallboat.model.gbm import GbmIntent
    from smallboat.model.predictor import IntentPredictor

    folder = champion_folder(trained_lgbm)
    assert (folder / GBM_DIR).is_dir() and not (folder / WEIGHTS_FILE).exists()
    predictor = IntentPredictor.load(folder)
    assert isinstance(predictor.model, GbmIntent)
    assert predictor.ensemble is None and predictor.gru is None
    # the vectors the bundle's features use are the run's prod2vec vectors
    namespace(None)
    task = Run(trained_lgbm.outcome.pathspec)["prod2vec"].task
    assert task is not None
    np.testing.assert_array_equal(
        predictor.model.sku_vectors, task.data.sku_vectors.astype(np.float32)
    )
    # offline, from raw rows through the bundle: the flow's own predictions
    again = predictor.predict_inputs(predictor.encode(trained_lgbm.sessions))
    np.testing.assert_allclose(again, trained_lgbm.offline, atol=1e-9, rtol=0)
    assert len(np.unique(np.round(trained_lgbm.offline, 6))) > 20  # not a constant model


def test_served_predictions_equal_the_flows_offline_predictions(
    trained_lgbm: Trained, service: str
) -> None:
    assert_served_equal_offline(trained_lgbm, service)


def test_the_serving_graph_is_the_recommender_and_equals_pytorch(trained_lgbm: Trained) -> None:
    assert_graph_equals_torch(trained_lgbm)


def test_a_lightgbm_bundle_without_a_graph_derives_it_and_serves_the_same(
    trained_lgbm: Trained, tmp_path: Path
) -> None:
    assert_graphless_copy_serves_the_same(trained_lgbm, tmp_path / "older-bundle")


def test_a_damaged_lightgbm_model_is_a_one_line_bundle_error(
    trained_lgbm: Trained, tmp_path: Path
) -> None:
    import shutil

    from smallboat.model.predictor import IntentPredictor

    registration = trained_lgbm.outcome.registration
    assert registration is not None
    copy = tmp_path / "bundle"
    shutil.copytree(registration["bundle_dir"], copy)
    (copy / GBM_DIR / "model.txt").write_text("not a model\n")
    with pytest.raises(BundleError, match="its LightGBM model \\(gbm/\\) cannot be loaded") as err:
        IntentPredictor.load(copy)
    assert "\n" not in str(err.value)

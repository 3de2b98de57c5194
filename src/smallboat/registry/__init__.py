"""The MLflow registry: log a training run, register its model bundle, gate the champion, load it.

A trained model travels as a bundle directory (DESIGN.md §5, `smallboat.bundle`: weights,
vocabularies, feature spec, metrics, card, described by `bundle.json`). A training run logs it as
plain artifacts under `bundle/`; a registered model version points at them
(`runs:/<run_id>/bundle`); the version serving uses carries the registered-model alias `champion`.
A new version takes the alias only through the challenger gate, which compares two scores measured
on the same test set and records its decision on the version and the run whichever way it goes.

The store is `Settings.mlflow_tracking_uri`: a SQLite file under the home by default, any tracking
server or database by SMALLBOAT_MLFLOW_URI. Importing this package does not import MLflow.

This module only gathers the public API (`from smallboat import registry; registry.champion(...)`):

    runs        log a training run with its bundle and card
    versions    register a run's bundle; the champion, every version, a version's bundle on disk
    gate        the champion/challenger gate, and `publish` (log, register, gate in one call)
    records     the values these return and the gate's verdict (no MLflow)
    store       the MLflow client, its errors, lookups and the model-name rule
"""

from __future__ import annotations

from smallboat.registry.gate import gate_and_promote, paired_auc_test, publish
from smallboat.registry.records import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    GATE_PREFIX,
    ChampionInfo,
    GateDecision,
    ModelVersionInfo,
    Publication,
    RegistryError,
    RunInfo,
    gate_promotes,
)
from smallboat.registry.runs import log_training_run
from smallboat.registry.store import REACHABLE_TIMEOUT_S, SERVER_SCHEMES
from smallboat.registry.versions import (
    champion,
    champion_bundle,
    download_bundle,
    model_versions,
    register_version,
)

__all__ = [
    "BUNDLE_ARTIFACT",
    "CHAMPION",
    "GATE_PREFIX",
    "REACHABLE_TIMEOUT_S",
    "SERVER_SCHEMES",
    "ChampionInfo",
    "GateDecision",
    "ModelVersionInfo",
    "Publication",
    "RegistryError",
    "RunInfo",
    "champion",
    "champion_bundle",
    "download_bundle",
    "gate_and_promote",
    "gate_promotes",
    "log_training_run",
    "model_versions",
    "paired_auc_test",
    "publish",
    "register_version",
]

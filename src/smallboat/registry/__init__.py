"""The MLflow registry: log a training run, register its model bundle, gate the champion, load it.

A trained model travels as a bundle directory (DESIGN.md §5: weights, vocabularies, feature spec,
metrics, card, described by `bundle.json`). A training run logs it as plain artifacts under
`bundle/`; a registered model version points at them (`runs:/<run_id>/bundle`); the version serving
uses carries the registered-model alias `champion`. A new version takes the alias only through the
challenger gate, which compares two scores measured on the same test set and records its decision
on the version and the run whichever way it goes.

The store is `Settings.mlflow_tracking_uri`: a SQLite file under the home by default, any tracking
server or database by SMALLBOAT_MLFLOW_URI. Importing this package does not import MLflow.

This module holds the operations; `records` the values they return and the gate's verdict;
`store` the MLflow client, its errors and lookups.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smallboat.config import Settings
from smallboat.registry import store
from smallboat.registry.records import (
    BUNDLE_ARTIFACT,
    BUNDLE_META,
    CARD_ARTIFACT,
    CHAMPION,
    GATE_PREFIX,
    ChampionInfo,
    GateDecision,
    ModelVersionInfo,
    Publication,
    RegistryError,
    RunInfo,
)
from smallboat.registry.store import REACHABLE_TIMEOUT_S, SERVER_SCHEMES

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "BUNDLE_ARTIFACT",
    "BUNDLE_META",
    "CARD_ARTIFACT",
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
    "download_bundle",
    "gate_and_promote",
    "log_training_run",
    "model_versions",
    "publish",
    "read_bundle_meta",
    "register_version",
]

log = logging.getLogger(__name__)

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RUNS_SOURCE = re.compile(r"runs:/(?P<run_id>[^/]+)/(?P<path>.+)")


def publish(
    settings: Settings,
    *,
    experiment: str,
    model_name: str,
    run_name: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    bundle_dir: Path,
    card_path: Path | None,
    tags: Mapping[str, str] | None,
    gate_metric: str,
    champion_score: float | None,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    higher_is_better: bool = True,
) -> Publication:
    """Log the run, register its bundle, and gate it on `metrics[gate_metric]`.

    `champion_score` is the current champion's `gate_metric` on the SAME test set as `metrics`
    (None when `champion()` says there is none): score the champion's bundle before calling,
    and pass the `champion_version` scored so a champion promoted meanwhile is noticed.
    Both checks run before anything is logged; the gate repeats the champion check after
    registering, so a champion promoted in that window leaves the new version registered
    without gate tags (and not promoted), with a RegistryError saying why.
    """
    if gate_metric not in metrics:
        raise RegistryError(
            f"gate metric {gate_metric!r} is not among the run's metrics ({', '.join(metrics)})"
        )
    current = champion(settings, model_name=model_name)
    _check_scored_champion(
        model_name,
        current=None if current is None else current.version,
        scored=champion_version,
        champion_score=champion_score,
    )
    run = log_training_run(
        settings,
        experiment=experiment,
        run_name=run_name,
        params=params,
        metrics=metrics,
        bundle_dir=bundle_dir,
        card_path=card_path,
        tags=tags,
    )
    version = register_version(settings, model_name=model_name, run_id=run.run_id)
    decision = gate_and_promote(
        settings,
        model_name=model_name,
        version=version.version,
        challenger_score=float(metrics[gate_metric]),
        champion_score=champion_score,
        champion_version=champion_version,
        metric=gate_metric,
        min_improvement=min_improvement,
        higher_is_better=higher_is_better,
    )
    return Publication(run=run, version=version, decision=decision)


def read_bundle_meta(bundle_dir: Path) -> dict[str, Any]:
    """`bundle.json` of a bundle directory, checked to be a JSON object."""
    meta_path = bundle_dir / BUNDLE_META
    if not bundle_dir.is_dir():
        raise RegistryError(f"model bundle {bundle_dir} is not a directory")
    if not meta_path.is_file():
        raise RegistryError(f"model bundle {bundle_dir} has no {BUNDLE_META}: not a model bundle")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise RegistryError(f"{meta_path} holds {type(meta).__name__}, expected a JSON object")
    return meta


def log_training_run(
    settings: Settings,
    *,
    experiment: str,
    run_name: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    bundle_dir: Path,
    card_path: Path | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunInfo:
    """Log a finished training run: params, metrics, tags, the bundle under `bundle/`, the card.

    The bundle goes up as plain files (no `mlflow.pytorch.log_model`: the bundle is the serving
    format, and log_model spends seconds inferring pip requirements). A failure part-way marks
    the run FAILED rather than leaving it RUNNING.
    """
    meta = read_bundle_meta(bundle_dir)
    if card_path is not None and not card_path.is_file():
        raise RegistryError(f"model card {card_path} does not exist")
    run_tags = {
        "smallboat.bundle.format": str(meta.get("format", "")),
        "smallboat.bundle.model_name": str(meta.get("model_name", "")),
        **{key: str(value) for key, value in (tags or {}).items()},
    }
    client = store.client(settings)
    with store.mlflow_errors(settings, f"log run {run_name!r} in experiment {experiment!r}"):
        from mlflow.entities import Metric, Param

        experiment_id = store.experiment_id(client, settings, experiment)
        run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        run_id = run.info.run_id
        try:
            now_ms = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                params=[Param(k, store.param_value(v)) for k, v in params.items()],
            )
            client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
            if card_path is not None:
                store.log_card(client, run_id, card_path)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
    log.info("logged run %s in experiment %s at %s", run_id, experiment, store.where(settings))
    return RunInfo(
        run_id=run_id,
        experiment_id=experiment_id,
        experiment=experiment,
        run_name=run_name,
        artifact_uri=run.info.artifact_uri,
        tracking_uri=store.redact(settings.mlflow_tracking_uri),
    )


def register_version(
    settings: Settings, *, model_name: str, run_id: str, description: str | None = None
) -> ModelVersionInfo:
    """A new version of `model_name` (created if new) pointing at the run's `bundle/` artifacts."""
    _check_model_name(model_name)
    client = store.client(settings)
    with store.mlflow_errors(settings, f"register run {run_id} as a version of {model_name!r}"):
        from mlflow.exceptions import MlflowException

        run = store.get_run(client, settings, run_id)
        listed = {a.path for a in client.list_artifacts(run_id, BUNDLE_ARTIFACT)}
        if f"{BUNDLE_ARTIFACT}/{BUNDLE_META}" not in listed:
            raise RegistryError(
                f"run {run_id} at {store.where(settings)} has no {BUNDLE_ARTIFACT}/{BUNDLE_META}: "
                "log it with log_training_run first"
            )
        try:
            client.create_registered_model(model_name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = client.create_model_version(
            model_name,
            f"runs:/{run_id}/{BUNDLE_ARTIFACT}",
            run_id=run_id,
            tags={"smallboat.run_name": run.info.run_name or ""},
            description=description,
        )
    info = store.version_info(created, aliases=())
    log.info("registered %s v%d from run %s", model_name, info.version, run_id)
    return info


def gate_and_promote(
    settings: Settings,
    *,
    model_name: str,
    version: int,
    challenger_score: float,
    champion_score: float | None,
    metric: str,
    champion_version: int | None = None,
    min_improvement: float = 0.0,
    higher_is_better: bool = True,
) -> GateDecision:
    """The challenger gate: make `version` the champion only if it beats the current one.

    Both scores must come from the SAME test set: the caller scores the champion's bundle on the
    challenger's test set and passes the number. With no champion yet, the version is promoted;
    otherwise only when it beats `champion_score` by more than `min_improvement` (in the better
    direction of the metric). With `champion_version` (the version that was scored), a champion
    that changed meanwhile is an error rather than a comparison against the wrong model. The
    decision and both scores become `gate.*` tags on the version and its run either way.
    """
    _check_model_name(model_name)
    for label, score in (
        ("challenger_score", challenger_score),
        ("champion_score", champion_score),
    ):
        if score is not None and not math.isfinite(score):
            raise RegistryError(
                f"{label} for {model_name} v{version} is {score}: gate on a finite {metric}"
            )
    client = store.client(settings)
    with store.mlflow_errors(settings, f"gate {model_name} v{version}"):
        model = store.registered_model(client, settings, model_name)
        target = store.model_version(client, settings, model_name, version)
        previous = store.alias_versions(model).get(CHAMPION)
        if previous == version:
            raise RegistryError(f"{model_name} v{version} is already the champion: nothing to gate")
        _check_scored_champion(
            model_name, current=previous, scored=champion_version, champion_score=champion_score
        )
        if previous is None or champion_score is None:
            if champion_score is not None:
                log.warning(
                    "%s has no champion: ignoring champion_score %s", model_name, champion_score
                )
            champion_score, promoted = None, True
        else:
            gain = challenger_score - champion_score
            promoted = (gain if higher_is_better else -gain) > min_improvement
        decision = GateDecision(
            model_name=model_name,
            version=version,
            promoted=promoted,
            metric=metric,
            challenger_score=float(challenger_score),
            champion_score=None if champion_score is None else float(champion_score),
            previous_version=previous,
            min_improvement=float(min_improvement),
            higher_is_better=higher_is_better,
        )
        if promoted:
            client.set_registered_model_alias(model_name, CHAMPION, str(version))
        tags = decision.tags()
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(version), key, value)
        from mlflow.entities import RunTag

        client.log_batch(
            store.version_run_id(target, settings),
            tags=[RunTag(k, v) for k, v in tags.items()]
            + [RunTag(f"{GATE_PREFIX}model_version", f"{model_name}/{version}")],
        )
    log.info("%s", decision.summary)
    return decision


def champion(settings: Settings, *, model_name: str) -> ChampionInfo | None:
    """The current champion and its run's metrics; None when the model has no champion yet
    (or is not registered at all: the first training run asks this)."""
    _check_model_name(model_name)
    client = store.client(settings)
    with store.mlflow_errors(settings, f"look up the champion of {model_name!r}"):
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = store.alias_versions(model).get(CHAMPION)
        if version is None:
            return None
        found = store.model_version(client, settings, model_name, version)
        run_id = store.version_run_id(found, settings)
        run = store.get_run(client, settings, run_id)
    return ChampionInfo(
        model_name=model_name,
        version=version,
        run_id=run_id,
        metrics=dict(run.data.metrics),
        created_at=store.from_ms(found.creation_timestamp),
    )


def model_versions(settings: Settings, *, model_name: str) -> list[ModelVersionInfo]:
    """Every version of `model_name`, newest first, with aliases, gate decision and scores."""
    _check_model_name(model_name)
    client = store.client(settings)
    with store.mlflow_errors(settings, f"list the versions of {model_name!r}"):
        by_version: dict[int, list[str]] = {}
        model = store.registered_model(client, settings, model_name)
        for alias, number in store.alias_versions(model).items():
            by_version.setdefault(number, []).append(alias)
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = client.search_model_versions(f"name = '{model_name}'", page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
    infos = [
        store.version_info(v, aliases=tuple(sorted(by_version.get(int(v.version), []))))
        for v in found
    ]
    return sorted(infos, key=lambda v: v.version, reverse=True)


def download_bundle(
    settings: Settings, *, model_name: str, alias: str | None = None, version: int | None = None
) -> Path:
    """The bundle of a version (by `alias`, default `champion`, or by `version`) on local disk.

    Downloads go to `<home>/models/<model>/v<version>-<run_id>/`, renamed into place only when
    complete; a version already there is reused (versions never change; the run id in the name
    keeps two registries' version 3 apart).
    """
    _check_model_name(model_name)
    if alias is not None and version is not None:
        raise RegistryError(f"download_bundle of {model_name}: give alias or version, not both")
    client = store.client(settings)
    with store.mlflow_errors(settings, f"find the bundle of {model_name!r}"):
        if version is None:
            wanted = alias or CHAMPION
            model = store.registered_model(client, settings, model_name)
            number = store.alias_versions(model).get(wanted)
            if number is None:
                raise RegistryError(
                    f"{model_name} at {store.where(settings)} has no version with alias "
                    f"{wanted!r}: train and register one first"
                )
            version = number
        found = store.model_version(client, settings, model_name, version)
    target = settings.model_cache_dir / model_name / f"v{version}-{found.run_id}"
    if (target / BUNDLE_META).is_file():
        return target
    source = _RUNS_SOURCE.fullmatch(found.source or "")
    if source is None:
        raise RegistryError(
            f"{model_name} v{version} points at {found.source!r}, not a run's artifacts "
            "(runs:/<run_id>/<path>): it was not registered by smallboat"
        )
    with store.mlflow_errors(settings, f"download {model_name} v{version} to {target}"):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            local = Path(client.download_artifacts(source["run_id"], source["path"], str(staging)))
            read_bundle_meta(local)
            if target.exists() and not (target / BUNDLE_META).is_file():
                shutil.rmtree(target)  # left by hand: a download never leaves a partial folder
            try:
                os.rename(local, target)
            except OSError:
                if not (target / BUNDLE_META).is_file():  # unless another process renamed first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded %s v%d to %s", model_name, version, target)
    return target


# -- checks -----------------------------------------------------------------------------------


def _check_scored_champion(
    model_name: str, *, current: int | None, scored: int | None, champion_score: float | None
) -> None:
    """The gate compares against the champion that was scored, or refuses."""
    if current is not None and champion_score is None:
        raise RegistryError(
            f"{model_name} has champion v{current} but no champion_score was given: score the "
            "champion's bundle on the challenger's test set and pass it"
        )
    if scored is not None and current != scored:
        now = "no champion" if current is None else f"v{current}"
        raise RegistryError(
            f"the champion of {model_name} is {now}, not the v{scored} that was scored: score "
            "the current champion on the same test set and gate again"
        )


def _check_model_name(model_name: str) -> None:
    if not _MODEL_NAME.fullmatch(model_name):
        raise RegistryError(
            f"model name {model_name!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )

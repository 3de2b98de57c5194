"""Registered versions: register a run's bundle; the champion, every version, a bundle on disk."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from smallboat.bundle import META_FILE
from smallboat.config import Settings
from smallboat.registry import store
from smallboat.registry.records import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    ChampionInfo,
    ModelVersionInfo,
    RegistryError,
)
from smallboat.registry.runs import bundle_meta

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

_RUNS_SOURCE = re.compile(r"runs:/(?P<run_id>[^/]+)/(?P<path>.+)")


def register_version(
    settings: Settings, *, model_name: str, run_id: str, description: str | None = None
) -> ModelVersionInfo:
    """A new version of `model_name` (created if new) pointing at the run's `bundle/` artifacts."""
    store.check_model_name(model_name)
    client = store.client(settings)
    with store.mlflow_errors(settings, f"register run {run_id} as a version of {model_name!r}"):
        from mlflow.exceptions import MlflowException

        run = store.get_run(client, settings, run_id)
        listed = {a.path for a in client.list_artifacts(run_id, BUNDLE_ARTIFACT)}
        if f"{BUNDLE_ARTIFACT}/{META_FILE}" not in listed:
            raise RegistryError(
                f"run {run_id} at {store.where(settings)} has no {BUNDLE_ARTIFACT}/{META_FILE}: "
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


def champion(settings: Settings, *, model_name: str) -> ChampionInfo | None:
    """The current champion and its run's metrics; None when the model has no champion yet
    (or is not registered at all: the first training run asks this)."""
    store.check_model_name(model_name)
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
    store.check_model_name(model_name)
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


def champion_bundle(settings: Settings, *, model_name: str, hint: str) -> tuple[Path, int]:
    """The current champion's bundle on local disk and its version; a registry without a
    champion is a one-line error ending in `hint` (what the caller can do instead)."""
    info = champion(settings, model_name=model_name)
    if info is None:
        raise RegistryError(
            f"the registry at {settings.mlflow_tracking_uri} has no champion of {model_name}: "
            f"train one (`smallboat train`) or {hint}"
        )
    return download_bundle(settings, model_name=model_name, version=info.version), info.version


def download_bundle(
    settings: Settings, *, model_name: str, alias: str | None = None, version: int | None = None
) -> Path:
    """The bundle of a version (by `alias`, default `champion`, or by `version`) on local disk.

    Downloads go to `<home>/models/<model>/v<version>-<run_id>/`, renamed into place only when
    complete; a version already there is reused (versions never change; the run id in the name
    keeps two registries' version 3 apart).
    """
    store.check_model_name(model_name)
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
    if (target / META_FILE).is_file():
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
            bundle_meta(local)
            if target.exists() and not (target / META_FILE).is_file():
                shutil.rmtree(target)  # left by hand: a download never leaves a partial folder
            try:
                os.rename(local, target)
            except OSError:
                if not (target / META_FILE).is_file():  # unless another process renamed first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded %s v%d to %s", model_name, version, target)
    return target

"""Logging a finished training run to MLflow: params, metrics, tags, its bundle and its card."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from smallboat.bundle import BundleError, BundleMeta, read_meta
from smallboat.config import Settings
from smallboat.registry import store
from smallboat.registry.records import BUNDLE_ARTIFACT, RegistryError, RunInfo

log = logging.getLogger(__name__)


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
    meta = bundle_meta(bundle_dir)
    if card_path is not None and not card_path.is_file():
        raise RegistryError(f"model card {card_path} does not exist")
    run_tags = {
        "smallboat.bundle.format": "" if meta.format is None else str(meta.format),
        "smallboat.bundle.model_name": meta.model_name,
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


def bundle_meta(bundle_dir: Path) -> BundleMeta:
    """The bundle's bundle.json (`smallboat.bundle.read_meta`), its problems as RegistryError."""
    try:
        return read_meta(bundle_dir)
    except BundleError as exc:
        raise RegistryError(str(exc)) from None

"""The MLflow registry: log a training run, register its model bundle, gate the champion, load it.

A trained model travels as a bundle directory (DESIGN.md §5: weights, vocabularies, feature spec,
metrics, card, described by `bundle.json`). A training run logs it as plain artifacts under
`bundle/`; a registered model version points at them (`runs:/<run_id>/bundle`); the version serving
uses carries the registered-model alias `champion`. A new version takes the alias only through the
challenger gate, which compares two scores measured on the same test set and records its decision
on the version and the run whichever way it goes.

The store is `Settings.mlflow_tracking_uri`: a SQLite file under the home by default, any tracking
server or database by SMALLBOAT_MLFLOW_URI. Every call builds its own `MlflowClient` from the
settings (MLflow caches the store per URI, so this is cheap); nothing sets MLflow's global tracking
URI, and importing this module does not import MLflow.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from smallboat.config import Settings
from smallboat.errors import SmallboatError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
"""The registered-model alias of the version that serves."""
BUNDLE_ARTIFACT = "bundle"
"""Artifact folder of a run holding the model bundle; model versions point at it."""
BUNDLE_META = "bundle.json"
CARD_ARTIFACT = "card.html"
GATE_PREFIX = "gate."
"""Tags the challenger gate writes on the model version and on its run."""
SERVER_SCHEMES = frozenset({"http", "https", "databricks"})
"""Tracking URIs whose server chooses where artifacts live."""
REACHABLE_TIMEOUT_S = 5.0
"""How long to wait for a tracking server's /health: MLflow's own client retries a dead server
for minutes before it gives up."""
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RUNS_SOURCE = re.compile(r"runs:/(?P<run_id>[^/]+)/(?P<path>.+)")


class RegistryError(SmallboatError):
    """The MLflow store is unreachable or refused a request, or a model or version is missing."""


@dataclass(frozen=True)
class RunInfo:
    """A logged training run: where it is and how to find it again."""

    run_id: str
    experiment_id: str
    experiment: str
    run_name: str
    artifact_uri: str
    tracking_uri: str

    @property
    def bundle_uri(self) -> str:
        return f"runs:/{self.run_id}/{BUNDLE_ARTIFACT}"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version, with what the dashboard and the card show about it."""

    model_name: str
    version: int
    run_id: str
    source: str
    created_at: datetime
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases

    @property
    def gate_decision(self) -> str | None:
        """`promoted`, `rejected`, or None for a version that never went through the gate."""
        return self.tags.get(f"{GATE_PREFIX}decision")

    @property
    def gate_metric(self) -> str | None:
        return self.tags.get(f"{GATE_PREFIX}metric")

    @property
    def score(self) -> float | None:
        """This version's gate metric on its own test set."""
        return _float_tag(self.tags, "challenger")

    @property
    def champion_score(self) -> float | None:
        """The champion's score on the same test set when this version was gated."""
        return _float_tag(self.tags, "champion")


@dataclass(frozen=True)
class ChampionInfo:
    """The version serving now, and the metrics its training run logged."""

    model_name: str
    version: int
    run_id: str
    metrics: Mapping[str, float]
    created_at: datetime


@dataclass(frozen=True)
class GateDecision:
    """The challenger gate's verdict on one version; `summary` is the line people read."""

    model_name: str
    version: int
    promoted: bool
    metric: str
    challenger_score: float
    champion_score: float | None
    previous_version: int | None
    min_improvement: float
    higher_is_better: bool = True

    @property
    def decision(self) -> str:
        return "promoted" if self.promoted else "rejected"

    @property
    def champion_version(self) -> int | None:
        """The version holding the alias after the decision."""
        return self.version if self.promoted else self.previous_version

    @property
    def summary(self) -> str:
        name, metric = self.model_name, self.metric
        ours = f"{self.challenger_score:.4f}"
        if self.previous_version is None or self.champion_score is None:
            return f"promoted {name} v{self.version} to champion: no champion yet ({metric} {ours})"
        theirs = f"{self.champion_score:.4f}"
        need = "above" if self.higher_is_better else "below"
        bar = f"{need} v{self.previous_version}'s {theirs} by more than {self.min_improvement:g}"
        if self.promoted:
            return f"promoted {name} v{self.version} to champion: {metric} {ours} is {bar}"
        kept = f"kept {name} v{self.previous_version} as champion"
        return f"{kept}: v{self.version}'s {metric} {ours} is not {bar}"

    def tags(self) -> dict[str, str]:
        """What the gate records on the version and on the run."""
        none = "none"  # MLflow tag values are text; "none" reads better than an empty string
        return {
            f"{GATE_PREFIX}decision": self.decision,
            f"{GATE_PREFIX}metric": self.metric,
            f"{GATE_PREFIX}challenger": repr(self.challenger_score),
            f"{GATE_PREFIX}champion": none
            if self.champion_score is None
            else repr(self.champion_score),
            f"{GATE_PREFIX}previous_version": none
            if self.previous_version is None
            else str(self.previous_version),
            f"{GATE_PREFIX}min_improvement": repr(self.min_improvement),
            f"{GATE_PREFIX}higher_is_better": str(self.higher_is_better).lower(),
            f"{GATE_PREFIX}summary": self.summary,
        }


@dataclass(frozen=True)
class Publication:
    """What the flow's `register` step did: the run, the new version, the gate's decision."""

    run: RunInfo
    version: ModelVersionInfo
    decision: GateDecision


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
    Both checks happen before anything is logged.
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
    client = _client(settings)
    with _mlflow_errors(settings, f"log run {run_name!r} in experiment {experiment!r}"):
        from mlflow.entities import Metric, Param

        experiment_id = _experiment_id(client, settings, experiment)
        run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        run_id = run.info.run_id
        try:
            now_ms = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                params=[Param(k, _param_value(v)) for k, v in params.items()],
            )
            client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
            if card_path is not None:
                _log_card(client, run_id, card_path)
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
    log.info("logged run %s in experiment %s at %s", run_id, experiment, _where(settings))
    return RunInfo(
        run_id=run_id,
        experiment_id=experiment_id,
        experiment=experiment,
        run_name=run_name,
        artifact_uri=run.info.artifact_uri,
        tracking_uri=_redact(settings.mlflow_tracking_uri),
    )


def register_version(
    settings: Settings, *, model_name: str, run_id: str, description: str | None = None
) -> ModelVersionInfo:
    """A new version of `model_name` (created if new) pointing at the run's `bundle/` artifacts."""
    _check_model_name(model_name)
    client = _client(settings)
    with _mlflow_errors(settings, f"register run {run_id} as a version of {model_name!r}"):
        from mlflow.exceptions import MlflowException

        run = _get_run(client, settings, run_id)
        listed = {a.path for a in client.list_artifacts(run_id, BUNDLE_ARTIFACT)}
        if f"{BUNDLE_ARTIFACT}/{BUNDLE_META}" not in listed:
            raise RegistryError(
                f"run {run_id} at {_where(settings)} has no {BUNDLE_ARTIFACT}/{BUNDLE_META}: "
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
    info = _version_info(created, aliases=())
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
    client = _client(settings)
    with _mlflow_errors(settings, f"gate {model_name} v{version}"):
        model = _registered_model(client, settings, model_name)
        target = _model_version(client, settings, model_name, version)
        previous = _aliases(model).get(CHAMPION)
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
            _run_id(target, settings),
            tags=[RunTag(k, v) for k, v in tags.items()]
            + [RunTag(f"{GATE_PREFIX}model_version", f"{model_name}/{version}")],
        )
    log.info("%s", decision.summary)
    return decision


def champion(settings: Settings, *, model_name: str) -> ChampionInfo | None:
    """The current champion and its run's metrics; None when the model has no champion yet
    (or is not registered at all: the first training run asks this)."""
    _check_model_name(model_name)
    client = _client(settings)
    with _mlflow_errors(settings, f"look up the champion of {model_name!r}"):
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = _aliases(model).get(CHAMPION)
        if version is None:
            return None
        found = _model_version(client, settings, model_name, version)
        run_id = _run_id(found, settings)
        run = _get_run(client, settings, run_id)
    return ChampionInfo(
        model_name=model_name,
        version=version,
        run_id=run_id,
        metrics=dict(run.data.metrics),
        created_at=_from_ms(found.creation_timestamp),
    )


def model_versions(settings: Settings, *, model_name: str) -> list[ModelVersionInfo]:
    """Every version of `model_name`, newest first, with aliases, gate decision and scores."""
    _check_model_name(model_name)
    client = _client(settings)
    with _mlflow_errors(settings, f"list the versions of {model_name!r}"):
        by_version: dict[int, list[str]] = {}
        for alias, number in _aliases(_registered_model(client, settings, model_name)).items():
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
        _version_info(v, aliases=tuple(sorted(by_version.get(int(v.version), [])))) for v in found
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
    client = _client(settings)
    with _mlflow_errors(settings, f"find the bundle of {model_name!r}"):
        if version is None:
            wanted = alias or CHAMPION
            number = _aliases(_registered_model(client, settings, model_name)).get(wanted)
            if number is None:
                raise RegistryError(
                    f"{model_name} at {_where(settings)} has no version with alias {wanted!r}: "
                    "train and register one first"
                )
            version = number
        found = _model_version(client, settings, model_name, version)
    target = settings.model_cache_dir / model_name / f"v{version}-{found.run_id}"
    if (target / BUNDLE_META).is_file():
        return target
    source = _RUNS_SOURCE.fullmatch(found.source or "")
    if source is None:
        raise RegistryError(
            f"{model_name} v{version} points at {found.source!r}, not a run's artifacts "
            "(runs:/<run_id>/<path>): it was not registered by smallboat"
        )
    with _mlflow_errors(settings, f"download {model_name} v{version} to {target}"):
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


# -- the client and its errors ---------------------------------------------------------------


def _client(settings: Settings) -> MlflowClient:
    """A client for the configured store, after the checks that give clear errors early."""
    uri = settings.mlflow_tracking_uri
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        _check_reachable(settings)
    elif not settings.mlflow_uri:
        try:
            settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(
                f"cannot create the MLflow store {settings.mlflow_dir}: {exc}"
            ) from None
    from mlflow.tracking import MlflowClient

    with _mlflow_errors(settings, "open the tracking store"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _check_reachable(settings: Settings) -> None:
    import httpx

    url = settings.mlflow_tracking_uri.rstrip("/") + "/health"
    try:
        httpx.get(url, timeout=REACHABLE_TIMEOUT_S)
    except httpx.TransportError as exc:
        raise RegistryError(
            f"MLflow tracking server {_where(settings)} is not reachable ({exc}): start it, or "
            "unset SMALLBOAT_MLFLOW_URI to use the local store under SMALLBOAT_HOME"
        ) from None


@contextlib.contextmanager
def _mlflow_errors(settings: Settings, action: str) -> Iterator[None]:
    """Turn MLflow's and the store's exceptions into one RegistryError naming the URI."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except SmallboatError:
        raise
    except MlflowException as exc:
        raise RegistryError(
            f"MLflow at {_where(settings)} could not {action}: {_brief(exc.message)}"
        ) from None
    except ImportError as exc:  # a database URI whose driver is not installed
        raise RegistryError(
            f"MLflow at {_where(settings)} could not {action}: its driver is missing ({exc}); "
            "install it next to smallboat"
        ) from None
    except OSError as exc:  # also requests' connection errors, and SQLite folders MLflow creates
        raise RegistryError(f"MLflow at {_where(settings)} could not {action}: {exc}") from None


def _where(settings: Settings) -> str:
    """The store in a message: its URI without a password, and where that URI came from."""
    origin = "SMALLBOAT_MLFLOW_URI" if settings.mlflow_uri else "default under SMALLBOAT_HOME"
    return f"{_redact(settings.mlflow_tracking_uri)} ({origin})"


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username}:***@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _brief(message: str) -> str:
    """MLflow's message without its links and tracebacks: the first sentence-bearing line."""
    first = next((line.strip() for line in str(message).splitlines() if line.strip()), "")
    return first if len(first) <= 400 else first[:397] + "..."


# -- small helpers -----------------------------------------------------------------------------


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


def _experiment_id(client: MlflowClient, settings: Settings, name: str) -> str:
    """The experiment's id, creating it with its artifacts under the home when it is new."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(
                client.create_experiment(name, artifact_location=_artifact_location(settings, name))
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile by another run
                raise
            found = client.get_experiment_by_name(name)
    if found is None or found.lifecycle_stage != "active":
        raise RegistryError(
            f"experiment {name!r} at {_where(settings)} is deleted: restore it "
            "(`mlflow experiments restore`) or log to another experiment"
        )
    return str(found.experiment_id)


def _artifact_location(settings: Settings, experiment: str) -> str | None:
    """None lets a tracking server choose; with a database store MLflow would use ./mlruns."""
    if urlsplit(settings.mlflow_tracking_uri).scheme in SERVER_SCHEMES:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-.") or "experiment"
    # Two names with one slug share the folder harmlessly: each run has its own run-id folder.
    return (settings.mlflow_artifacts_dir / slug).as_uri()


def _registered_model(client: MlflowClient, settings: Settings, name: str) -> RegisteredModel:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"no registered model named {name!r} at {_where(settings)}: train and register "
                "one first"
            ) from None
        raise


def _model_version(
    client: MlflowClient, settings: Settings, name: str, version: int
) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{name} has no version {version} at {_where(settings)}") from None
        raise


def _run_id(found: ModelVersion, settings: Settings) -> str:
    if not found.run_id:
        raise RegistryError(
            f"{found.name} v{found.version} at {_where(settings)} has no run: it was not "
            "registered by smallboat"
        )
    return str(found.run_id)


def _get_run(client: MlflowClient, settings: Settings, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no run {run_id} at {_where(settings)}") from None
        raise


def _aliases(model: RegisteredModel) -> dict[str, int]:
    """alias -> version (SQLite stores give ints, tracking servers strings)."""
    return {alias: int(number) for alias, number in (model.aliases or {}).items()}


def _version_info(found: ModelVersion, *, aliases: tuple[str, ...]) -> ModelVersionInfo:
    return ModelVersionInfo(
        model_name=found.name,
        version=int(found.version),
        run_id=found.run_id or "",
        source=found.source or "",
        created_at=_from_ms(found.creation_timestamp),
        aliases=aliases,
        tags=dict(found.tags or {}),
    )


def _log_card(client: MlflowClient, run_id: str, card_path: Path) -> None:
    """Log the card as `card.html` at the run's artifact root, whatever the file is called."""
    if card_path.name == CARD_ARTIFACT:
        client.log_artifact(run_id, str(card_path))
        return
    with tempfile.TemporaryDirectory(prefix="smallboat-card-") as folder:
        copy = Path(folder) / CARD_ARTIFACT
        shutil.copyfile(card_path, copy)
        client.log_artifact(run_id, str(copy))


def _param_value(value: object) -> str:
    """Params as text: strings as they are, anything else as JSON (a grid stays readable)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _float_tag(tags: Mapping[str, str], name: str) -> float | None:
    text = tags.get(f"{GATE_PREFIX}{name}")
    if text is None or text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _from_ms(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)

"""Talking to the MLflow store: the client, its errors as RegistryError, the lookups and names.

Every call builds its own `MlflowClient` from the settings (MLflow caches the store per URI, so this
is cheap); nothing sets MLflow's global tracking URI, and importing this module does not import
MLflow. Every error names the store's URI (password redacted) and where that URI came from.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from smallboat.bundle import CARD_FILE
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.registry.records import ModelVersionInfo, RegistryError

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel
    from mlflow.tracking import MlflowClient

SERVER_SCHEMES = frozenset({"http", "https", "databricks"})
"""Tracking URIs whose server chooses where artifacts live."""
REACHABLE_TIMEOUT_S = 5.0
"""How long to wait for a tracking server's /health: MLflow's own client retries a dead server
for minutes before it gives up."""

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_model_name(model_name: str) -> None:
    """A registered model's name as the registry accepts it, or a RegistryError saying the rule."""
    if not _MODEL_NAME.fullmatch(model_name):
        raise RegistryError(
            f"model name {model_name!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def client(settings: Settings) -> MlflowClient:
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

    with mlflow_errors(settings, "open the tracking store"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _check_reachable(settings: Settings) -> None:
    import httpx

    url = settings.mlflow_tracking_uri.rstrip("/") + "/health"
    try:
        httpx.get(url, timeout=REACHABLE_TIMEOUT_S)
    except httpx.TransportError as exc:
        raise RegistryError(
            f"MLflow tracking server {where(settings)} is not reachable ({exc}): start it, or "
            "unset SMALLBOAT_MLFLOW_URI to use the local store under SMALLBOAT_HOME"
        ) from None


@contextlib.contextmanager
def mlflow_errors(settings: Settings, action: str) -> Iterator[None]:
    """Turn MLflow's and the store's exceptions into one RegistryError naming the URI."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except SmallboatError:
        raise
    except MlflowException as exc:
        raise RegistryError(
            f"MLflow at {where(settings)} could not {action}: {_brief(exc.message)}"
        ) from None
    except ImportError as exc:  # a database URI whose driver is not installed
        raise RegistryError(
            f"MLflow at {where(settings)} could not {action}: its driver is missing ({exc}); "
            "install it next to smallboat"
        ) from None
    except OSError as exc:  # also requests' connection errors, and SQLite folders MLflow creates
        raise RegistryError(f"MLflow at {where(settings)} could not {action}: {exc}") from None


def where(settings: Settings) -> str:
    """The store in a message: its URI without a password, and where that URI came from."""
    origin = "SMALLBOAT_MLFLOW_URI" if settings.mlflow_uri else "default under SMALLBOAT_HOME"
    return f"{redact(settings.mlflow_tracking_uri)} ({origin})"


def redact(uri: str) -> str:
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


def experiment_id(client: MlflowClient, settings: Settings, name: str) -> str:
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
            f"experiment {name!r} at {where(settings)} is deleted: restore it "
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


def registered_model(client: MlflowClient, settings: Settings, name: str) -> RegisteredModel:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"no registered model named {name!r} at {where(settings)}: train and register "
                "one first"
            ) from None
        raise


def model_version(
    client: MlflowClient, settings: Settings, name: str, version: int
) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"{name} has no version {version} at {where(settings)}") from None
        raise


def version_run_id(found: ModelVersion, settings: Settings) -> str:
    if not found.run_id:
        raise RegistryError(
            f"{found.name} v{found.version} at {where(settings)} has no run: it was not "
            "registered by smallboat"
        )
    return str(found.run_id)


def get_run(client: MlflowClient, settings: Settings, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no run {run_id} at {where(settings)}") from None
        raise


def alias_versions(model: RegisteredModel) -> dict[str, int]:
    """alias -> version (SQLite stores give ints, tracking servers strings)."""
    return {alias: int(number) for alias, number in (model.aliases or {}).items()}


def version_info(found: ModelVersion, *, aliases: tuple[str, ...]) -> ModelVersionInfo:
    return ModelVersionInfo(
        model_name=found.name,
        version=int(found.version),
        run_id=found.run_id or "",
        source=found.source or "",
        created_at=from_ms(found.creation_timestamp),
        aliases=aliases,
        tags=dict(found.tags or {}),
    )


def log_card(client: MlflowClient, run_id: str, card_path: Path) -> None:
    """Log the card as `card.html` at the run's artifact root, whatever the file is called."""
    if card_path.name == CARD_FILE:
        client.log_artifact(run_id, str(card_path))
        return
    with tempfile.TemporaryDirectory(prefix="smallboat-card-") as folder:
        copy = Path(folder) / CARD_FILE
        shutil.copyfile(card_path, copy)
        client.log_artifact(run_id, str(copy))


def param_value(value: object) -> str:
    """Params as text: strings as they are, anything else as JSON (a grid stays readable)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def from_ms(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)

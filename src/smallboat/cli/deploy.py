"""`smallboat deploy`: TrainFlow and MonitorFlow as Argo Workflows or Step Functions JSON."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import app, console, friendly_errors
from smallboat.config import Settings
from smallboat.errors import SmallboatError


class DeployTarget(StrEnum):
    argo = "argo"
    step_functions = "step-functions"


class WarehouseTarget(StrEnum):
    # Only targets profiles.yml defines: a Spark target comes with the dbt-on-Spark work.
    snowflake = "snowflake"


@app.command("deploy")
@friendly_errors
def deploy_cmd(
    target: Annotated[
        DeployTarget,
        typer.Option(help="argo (Kubernetes) or step-functions (AWS Batch)."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for <flow>.<target>.json.")],
    image: Annotated[
        str, typer.Option(help="Container image every step runs in (smallboat installed).")
    ],
    s3_root: Annotated[
        str, typer.Option(help="Metaflow's S3 datastore, e.g. s3://bucket/metaflow.")
    ],
    mlflow_uri: Annotated[
        str | None,
        typer.Option(help="MLflow server the steps log to (default: SMALLBOAT_MLFLOW_URI)."),
    ] = None,
    dbt_target: Annotated[
        WarehouseTarget, typer.Option(help="The warehouse the steps' dbt build runs on.")
    ] = WarehouseTarget.snowflake,
    train_gpus: Annotated[int, typer.Option(min=0, help="GPUs per training branch.")] = 0,
    env: Annotated[
        list[str] | None,
        typer.Option(help="Extra NAME=VALUE for every step (repeatable), e.g. warehouse names."),
    ] = None,
) -> None:
    """Write the flows' cluster deployments with Metaflow's own deployers (--only-json)."""
    from smallboat.pipeline.deploy import DeploySpec, write_deployment

    settings = Settings()
    extra: dict[str, str] = {}
    for item in env or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SmallboatError(f"--env {item!r} is not NAME=VALUE")
        extra[name] = value
    uri = mlflow_uri if mlflow_uri is not None else (settings.mlflow_uri or "")
    spec = DeploySpec(
        target=target.value,
        image=image,
        s3_root=s3_root,
        mlflow_uri=uri,
        dbt_target=dbt_target.value,
        train_gpus=train_gpus,
        extra_env=extra,
    )
    for path in write_deployment(spec, settings, out):
        console.print(f"wrote {path}")

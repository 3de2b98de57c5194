"""`smallboat serve`: the prediction service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from fastapi import FastAPI

from smallboat.cli.common import app, console, friendly_errors
from smallboat.config import Settings


@app.command("serve")
@friendly_errors
def serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: SMALLBOAT_SERVE_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: SMALLBOAT_SERVE_PORT, 8080].")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Serve this bundle folder instead of the registry's champion.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes sharing the port [default: SMALLBOAT_SERVE_WORKERS, 1]; more than "
            "one needs SMALLBOAT_REDIS_URL (sessions shared by the workers).",
        ),
    ] = None,
) -> None:
    """Serve purchase-intent predictions: /v1/predict, /v1/sessions/{id}/events, SageMaker's
    /ping, /invocations and /endpoints/{name}/invocations, KServe v1 (/v1/models/{name}) and
    the Open Inference Protocol (/v2), /healthz, /readyz, /metrics, and the monitoring
    dashboard at /dashboard."""
    from smallboat.monitor.dashboard import dashboard_router
    from smallboat.serve.server import serve

    settings = Settings()
    serve(
        settings,
        host=host or settings.serve_host,
        port=port or settings.serve_port,
        bundle=bundle,
        routers=[dashboard_router(settings)],
        workers=workers or settings.serve_workers,
        worker_app=f"{__name__}:worker_app",
    )


def worker_app() -> FastAPI:
    """One worker's app under `serve --workers N` (uvicorn calls it in each worker process):
    the prediction service with the dashboard mounted, as `serve` mounts it."""
    from smallboat.monitor.dashboard import dashboard_router
    from smallboat.serve.server import worker_app as serve_worker_app

    return serve_worker_app([dashboard_router(Settings())])


@app.command("export-vocab")
@friendly_errors
def export_vocab_cmd(
    out: Annotated[
        Path, typer.Option(help="Where to write the token mapping (JSON).", dir_okay=False)
    ] = Path("token_mapping.json"),
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Export this bundle folder's vocabulary instead of the registry's champion's.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Write the served model's next-item vocabulary in the reference project's token mapping
    shape ({"token2id": ..., "id2token": ...}), for clients that send token ids to
    /invocations, /endpoints/{name}/invocations or /v1/models/{name}:predict."""
    from smallboat.serve.vocabulary import export_bundle_vocabulary

    settings = Settings()
    written = export_bundle_vocabulary(settings, out, bundle=bundle)
    console.print(f"wrote {written.tokens:,} tokens of model {written.version} to {out}")

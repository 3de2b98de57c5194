"""`smallboat serve`: the prediction service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import app, friendly_errors
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
) -> None:
    """Serve purchase-intent predictions: /v1/predict, /v1/sessions/{id}/events, SageMaker's
    /ping, /invocations and /endpoints/{name}/invocations, /healthz, /readyz, /metrics, and
    the monitoring dashboard at /dashboard."""
    from smallboat.monitor.dashboard import dashboard_router
    from smallboat.serve.server import serve

    settings = Settings()
    serve(
        settings,
        host=host or settings.serve_host,
        port=port or settings.serve_port,
        bundle=bundle,
        routers=[dashboard_router(settings)],
    )

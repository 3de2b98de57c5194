"""`smallboat collect serve|compact` and `smallboat replay`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import SourceFormat, app, console, friendly_errors
from smallboat.config import Settings

collect_app = typer.Typer(
    help="Collect browsing events over HTTP (GA pixel, JSON, Segment) into landing Parquet.",
    no_args_is_help=True,
)


class ReplayProtocol(StrEnum):
    ga = "ga"
    segment = "segment"
    json = "json"


@collect_app.command("serve")
@friendly_errors
def collect_serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: SMALLBOAT_COLLECT_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: SMALLBOAT_COLLECT_PORT, 8081].")
    ] = None,
) -> None:
    """Run the collector: GET/POST /collect, Segment's /v1/batch, /v1/track, /v1/page."""
    from smallboat.collect.server import serve

    settings = Settings()
    serve(settings, host=host or settings.collect_host, port=port or settings.collect_port)


@collect_app.command("compact")
@friendly_errors
def collect_compact_cmd() -> None:
    """Land the collector's closed log segments in landing/browsing_events/, exactly once."""
    from smallboat.collect.compaction import compact_events

    console.print(compact_events(Settings()).render())


@app.command("replay")
@friendly_errors
def replay_cmd(
    file: Annotated[Path, typer.Argument(help="A browsing file, e.g. browsing_train.csv.")],
    url: Annotated[str, typer.Option(help="The collector's base URL, e.g. http://127.0.0.1:8081.")],
    format: Annotated[
        SourceFormat, typer.Option("--format", help="Source format of FILE.")
    ] = SourceFormat.coveo,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Events per second [default: unlimited].")
    ] = None,
    as_: Annotated[
        ReplayProtocol, typer.Option("--as", help="Protocol: GA hits, Segment batches or JSON.")
    ] = ReplayProtocol.ga,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send only the first N events (in time order).")
    ] = None,
    write_key: Annotated[
        str | None, typer.Option(help="Segment write key [default: first of SMALLBOAT_WRITE_KEYS].")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 16,
) -> None:
    """Stream a browsing file to a collector in timestamp order, at a given rate."""
    from smallboat.collect.replay import replay_file

    key = write_key or next(iter(sorted(Settings().write_key_set)), None)
    summary = replay_file(
        file,
        url=url,
        source=format.value,
        protocol=as_.value,
        rate=rate,
        limit=limit,
        write_key=key,
        concurrency=concurrency,
        progress=True,
    )
    console.print(summary.render())
    if summary.failed:
        raise typer.Exit(code=1)

"""`smallboat collect serve|compact|status` and `smallboat replay`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import SourceFormat, app, console, friendly_errors
from smallboat.config import Settings

collect_app = typer.Typer(
    help="Collect browsing events over HTTP (GA4, Universal Analytics, JSON, Segment) into "
    "landing Parquet.",
    no_args_is_help=True,
)


class ReplayProtocol(StrEnum):
    ga = "ga"
    ga4 = "ga4"
    segment = "segment"
    json = "json"
    snowplow = "snowplow"


@collect_app.command("serve")
@friendly_errors
def collect_serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: SMALLBOAT_COLLECT_HOST].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [default: SMALLBOAT_COLLECT_PORT, 8081].")
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(
            help="This collector's replica id: its own log on the home "
            "[default: SMALLBOAT_COLLECT_REPLICA; empty: the single log]."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Processes sharing the port, each with its own log slot <replica>-w<i>."
        ),
    ] = 1,
) -> None:
    """Run the collector: GA4 /g/collect and /mp/collect, Universal Analytics /collect and
    /batch, JSON POST /collect, Segment's /v1/batch, /v1/track, /v1/page; /metrics."""
    from smallboat.collect.server import serve

    settings = Settings() if replica is None else Settings(collect_replica=replica)
    serve(
        settings,
        host=host or settings.collect_host,
        port=port or settings.collect_port,
        workers=workers,
    )


@collect_app.command("compact")
@friendly_errors
def collect_compact_cmd() -> None:
    """Land every event acknowledged so far in landing/browsing_events/, exactly once (every
    replica's log; each running collector first closes its active log segment on request). A
    corrupt log segment is landed as far as it is intact, moved to the log's quarantine/ and
    reported: exit status 1."""
    from smallboat.collect.control import compact_now
    from smallboat.data.log.compact import CorruptSegmentError

    try:
        report = compact_now(Settings())
    except CorruptSegmentError as exc:  # the rest was compacted: say so, then fail in one line
        console.print(exc.report.render(), highlight=False, markup=False)
        raise
    console.print(report.render())


@collect_app.command("status")
@friendly_errors
def collect_status_cmd() -> None:
    """Each replica's log segments and collector, what awaits compaction, what landed, and the
    hits the running collectors ignored or refused (per protocol and reason)."""
    from smallboat.collect.control import collector_status

    for line in collector_status(Settings()).lines():
        console.print(line, highlight=False, markup=False)


@collect_app.command("rejects")
@friendly_errors
def collect_rejects_cmd(
    last: Annotated[int, typer.Option(min=1, help="Show the N most recent.")] = 20,
    protocol: Annotated[
        str | None, typer.Option(help="Only this protocol's (segment, snowplow, ...).")
    ] = None,
    events: Annotated[bool, typer.Option(help="Also print each event as it was sent.")] = False,
) -> None:
    """The events the collector refused, newest last: when, protocol, route, message id and
    why (kept in <home>/collect/rejects/, bounded by SMALLBOAT_COLLECT_REJECTS_MAX_BYTES)."""
    from datetime import UTC, datetime

    from smallboat.collect.rejects import RejectsLog

    log = RejectsLog.of(Settings())
    found = log.read(last=last, protocol=protocol)
    if not found:
        console.print(f"no refused events in {log.folder}", highlight=False, markup=False)
        return
    for r in found:
        at = datetime.fromtimestamp(r.at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        where = r.route + ("" if r.index is None else f" [{r.index}]")
        ident = f" {r.message_id}" if r.message_id else ""
        line = f"{at} {r.protocol} {where}{ident}: {r.reason}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)
        if events and r.event is not None:
            console.print(f"    {r.event}", highlight=False, markup=False, soft_wrap=True)


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
        ReplayProtocol,
        typer.Option(
            "--as",
            help="Protocol: UA hits (ga), GA4 hits, Segment batches, JSON or Snowplow tp2 batches.",
        ),
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

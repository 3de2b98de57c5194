"""`smallboat monitor check|serve|run` and `smallboat schedule`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import app, console, err_console, friendly_errors
from smallboat.config import Settings
from smallboat.errors import SmallboatError

monitor_app = typer.Typer(
    help="Watch the served model: live quality from delayed labels, drift, the dashboard.",
    no_args_is_help=True,
)

ALERT_EXIT_CODE = 3
"""`smallboat monitor check` exits with this when a drift or quality threshold is crossed (1 is
an error), so a scheduler or CI can tell the two apart."""


@monitor_app.command("check")
@friendly_errors
def monitor_check_cmd(
    land: Annotated[
        bool, typer.Option(help="Compact the event and prediction logs into landing first.")
    ] = True,
    transform: Annotated[
        bool, typer.Option(help="Run dbt build first (labels join the newly landed events).")
    ] = True,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Bootstrap resamples of the live ROC-AUC's CI.")
    ] = 200,
) -> None:
    """Land, transform, compute live quality and drift, write the dashboard's snapshot; exit 3
    when a drift or quality threshold is crossed (what a scheduler or CI hooks onto)."""
    from smallboat.monitor.render import render_check
    from smallboat.pipeline.jobs import monitor_check

    settings = Settings()
    check = monitor_check(
        settings, land=land, transform=transform, n_bootstrap=bootstrap, progress=True
    )
    console.print(render_check(check.snapshot.data, check.path))
    if check.alerts:
        raise typer.Exit(code=ALERT_EXIT_CODE)


@monitor_app.command("serve")
@friendly_errors
def monitor_serve_cmd(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8082,
) -> None:
    """Serve the dashboard alone (the prediction service also serves it at /dashboard)."""
    from smallboat.monitor.dashboard import create_dashboard_app
    from smallboat.web.connections import run_app

    console.print(f"dashboard: http://{host}:{port}/dashboard")
    settings = Settings()  # the connection limits of both servers hold here too
    run_app(create_dashboard_app(settings), settings, host=host, port=port, log_level="warning")


@monitor_app.command("run")
@friendly_errors
def monitor_run_cmd(
    quiet: Annotated[bool, typer.Option(help="Hide the flow's own log lines.")] = False,
) -> None:
    """Run MonitorFlow (Metaflow): land, transform, quality and drift, a card with the
    Evidently report; exit 3 on an alert, as `monitor check`."""
    from smallboat.monitor.render import render_check
    from smallboat.pipeline.runner import run_monitor

    settings = Settings()
    outcome = run_monitor(settings, show_output=not quiet)
    console.print(render_check(outcome.snapshot, Path(outcome.snapshot_path)))
    console.print(f"card: {outcome.card_hint}")
    if outcome.snapshot.get("alerts"):
        raise typer.Exit(code=ALERT_EXIT_CODE)


@app.command("schedule")
@friendly_errors
def schedule_cmd(
    every: Annotated[
        str,
        typer.Option(help="Time between checks: numbers with units s, m, h, d (90s, 30m, 1h30m)."),
    ] = "1h",
    retrain_on_alert: Annotated[
        bool, typer.Option(help="Retrain (land, transform, TrainFlow, gate, reload) on an alert.")
    ] = True,
    max_runs: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many checks [default: never].")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="The service to hot-reload [default: SMALLBOAT_SERVE_URL or host:port]."),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Bootstrap resamples of the live ROC-AUC's CI.")
    ] = 200,
    grid: Annotated[
        str | None,
        typer.Option(help="Retraining: JSON list of IntentConfig overrides, one branch each."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Retraining: seed of every random choice.")] = 0,
    min_improvement: Annotated[
        float, typer.Option(help="Retraining: test ROC-AUC margin a challenger must beat.")
    ] = 0.0,
) -> None:
    """Run the monitoring check every interval as a Prefect flow, the first right away; a drift
    or quality alert starts the retrain flow. Runs are recorded under <home>/prefect (no server
    or account: Prefect's temporary local server); Ctrl-C stops."""
    import datetime

    from rich.markup import escape

    from smallboat.pipeline.schedule import Watched, parse_duration, prefect_home, schedule

    interval = parse_duration(every)
    settings = Settings()
    settings.ensure_home()
    home = prefect_home(settings)
    on_alert = "retrain" if retrain_on_alert else "report only"
    console.print(f"checking every {interval}; on an alert: {on_alert}", highlight=False)
    console.print(
        f"runs are recorded in {home}; to browse them: PREFECT_HOME={home} prefect server start",
        highlight=False,
        soft_wrap=True,
    )
    train_params: dict[str, object] = {"seed": seed, "min_improvement": min_improvement}
    if grid is not None:
        train_params["grid"] = grid
    failed: list[int] = []

    def stamp(run: int) -> str:
        return f"[{datetime.datetime.now():%H:%M:%S}] run {run}"

    def on_run(run: int, watched: Watched) -> None:
        console.print(
            f"{stamp(run)}: {watched.render()}", highlight=False, markup=False, soft_wrap=True
        )

    def on_error(run: int, exc: Exception) -> None:
        failed.append(run)
        err_console.print(
            f"{escape(stamp(run))}: [bold red]error:[/] {escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )

    try:
        runs = schedule(
            settings,
            interval,
            retrain_on_alert=retrain_on_alert,
            max_runs=max_runs,
            on_run=on_run,
            on_error=on_error,
            url=url,
            n_bootstrap=bootstrap,
            train_params=train_params,
        )
    except KeyboardInterrupt:
        console.print("stopped")
        raise typer.Exit(code=130) from None
    if failed:
        raise SmallboatError(f"{len(failed)} of {runs} scheduled runs failed (runs {failed})")

"""The `smallboat` command: one verb per part of the path, each with --help.

Imports of the heavy parts happen inside the commands, so `smallboat --help` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from smallboat.config import Settings
from smallboat.errors import SmallboatError

app = typer.Typer(
    help="smallboat: clickstream in, a monitored shopping-intent endpoint out, on one laptop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Synthesize and load clickstream data.", no_args_is_help=True)
warehouse_app = typer.Typer(help="Inspect the DuckDB warehouse.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(warehouse_app, name="warehouse")
collect_app = typer.Typer(
    help="Collect browsing events over HTTP (GA pixel, JSON, Segment) into landing Parquet.",
    no_args_is_help=True,
)
app.add_typer(collect_app, name="collect")
monitor_app = typer.Typer(
    help="Watch the served model: live quality from delayed labels, drift, the dashboard.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor")

ALERT_EXIT_CODE = 3
"""`smallboat monitor check` exits with this when a drift or quality threshold is crossed (1 is
an error), so a scheduler or CI can tell the two apart."""

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn the package's errors into one readable line and exit status 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SmallboatError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


class SourceFormat(StrEnum):
    coveo = "coveo"
    rees46 = "rees46"
    otto = "otto"


class OnBadRows(StrEnum):
    fail = "fail"
    skip = "skip"


@data_app.command("synth")
@friendly_errors
def synth_cmd(
    out: Annotated[
        Path, typer.Option(help="Folder to write the three Coveo-format CSVs and the oracle to.")
    ],
    sessions: Annotated[int, typer.Option(min=1, help="Number of sessions to generate.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
) -> None:
    """Write a synthetic dataset in the Coveo release's format, with its purchase oracle."""
    from smallboat.data.synth import SynthConfig, synthesize

    report = synthesize(SynthConfig(sessions=sessions, seed=seed), out, progress=True)
    console.print(report.render())


@data_app.command("load")
@friendly_errors
def load_cmd(
    path: Annotated[
        Path, typer.Argument(help="A folder with the release's CSVs, or a single file.")
    ],
    format: Annotated[
        SourceFormat, typer.Option("--format", help="Source format of PATH.")
    ] = SourceFormat.coveo,
    on_bad_rows: Annotated[
        OnBadRows,
        typer.Option(
            help="fail: stop before landing anything; skip: write bad rows to a rejects file."
        ),
    ] = OnBadRows.fail,
) -> None:
    """Stream source files into canonical landing Parquet under SMALLBOAT_HOME/landing/."""
    from smallboat.data.land import load_path

    summary = load_path(
        path, source=format.value, on_bad_rows=on_bad_rows.value, settings=Settings(), progress=True
    )
    console.print(summary.render())


@app.command("transform")
@friendly_errors
def transform_cmd(
    select: Annotated[
        str | None, typer.Option(help="dbt node selection, e.g. 'intent_examples+'.")
    ] = None,
) -> None:
    """Build the warehouse with dbt (models and their tests); error-severity failures stop it."""
    from smallboat.warehouse.transform import run_transform

    result = run_transform(Settings(), select=select, progress=True)
    console.print(result.render())


@warehouse_app.command("summary")
@friendly_errors
def summary_cmd() -> None:
    """Print the warehouse's tables with their row counts and key figures."""
    from smallboat.warehouse.summary import warehouse_summary

    console.print(warehouse_summary(Settings()))


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
    from smallboat.jobs import monitor_check
    from smallboat.monitor.render import render_check

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
    import uvicorn

    from smallboat.monitor.dashboard import create_dashboard_app

    console.print(f"dashboard: http://{host}:{port}/dashboard")
    uvicorn.run(create_dashboard_app(Settings()), host=host, port=port, log_level="warning")


@monitor_app.command("run")
@friendly_errors
def monitor_run_cmd(
    quiet: Annotated[bool, typer.Option(help="Hide the flow's own log lines.")] = False,
) -> None:
    """Run MonitorFlow (Metaflow): land, transform, quality and drift, a card with the
    Evidently report; exit 3 on an alert, as `monitor check`."""
    from smallboat.flows.runner import run_monitor
    from smallboat.monitor.render import render_check

    settings = Settings()
    outcome = run_monitor(settings, show_output=not quiet)
    console.print(render_check(outcome.snapshot, Path(outcome.snapshot_path)))
    console.print(f"card: {outcome.card_hint}")
    if outcome.snapshot.get("alerts"):
        raise typer.Exit(code=ALERT_EXIT_CODE)


@app.command("retrain")
@friendly_errors
def retrain_cmd(
    url: Annotated[
        str | None,
        typer.Option(help="The service to hot-reload [default: SMALLBOAT_SERVE_URL or host:port]."),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(help="JSON list of IntentConfig overrides, one training branch each."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for CIs.")] = 500,
    min_improvement: Annotated[
        float, typer.Option(help="Test ROC-AUC margin a challenger must beat the champion by.")
    ] = 0.0,
    quiet: Annotated[bool, typer.Option(help="Hide the flow's own log lines.")] = False,
) -> None:
    """Land the logs, transform, run TrainFlow (the champion/challenger gate), and hot-reload
    the running service when the champion changed."""
    from smallboat.jobs import retrain

    settings = Settings()
    params: dict[str, object] = {
        "seed": seed,
        "bootstrap": bootstrap,
        "min_improvement": min_improvement,
    }
    if grid is not None:
        params["grid"] = grid
    result = retrain(settings, url=url, show_output=not quiet, progress=True, **params)
    console.print(result.landed.render())
    console.print(render_training(result.train))
    console.print(result.reload)


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


DEMO_GRID = '[{"name": "gru32"}]'
DEMO_NEXT_ITEM = '{"max_seconds": 60}'
"""The demo bounds the next-item model's training (it stops after the epoch that passes 60 s),
so the whole path stays within its 10 minutes on two cores."""
"""The demo's one-entry sweep: IntentConfig's defaults, the best in bench/train_quality.py."""


@app.command("train")
@friendly_errors
def train_cmd(
    grid: Annotated[
        str | None,
        typer.Option(help="JSON list of IntentConfig overrides, one training branch each."),
    ] = None,
    max_events: Annotated[int, typer.Option(min=1, help="L: events of the prefix seen.")] = 20,
    next_item: Annotated[
        str | None,
        typer.Option(
            help="JSON NextItemConfig overrides of the next-item model, e.g. max_seconds."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    oracle: Annotated[
        Path | None,
        typer.Option(help="Synthetic data folder: also score its oracle on the test split."),
    ] = None,
    skip_transform: Annotated[
        bool, typer.Option(help="Use the warehouse as it is (no dbt build first).")
    ] = False,
    dbt_vars: Annotated[str, typer.Option(help="JSON dbt vars for the transform.")] = "{}",
    window_start: Annotated[str, typer.Option(help="Sessions from this UTC date.")] = "",
    window_end: Annotated[str, typer.Option(help="Sessions before this UTC date.")] = "",
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for CIs.")] = 500,
    min_improvement: Annotated[
        float, typer.Option(help="Test ROC-AUC margin a challenger must beat the champion by.")
    ] = 0.0,
    max_workers: Annotated[
        int, typer.Option(min=1, help="Grid branches trained at the same time.")
    ] = 1,
    resume: Annotated[
        str | None, typer.Option(help="Resume this failed run id instead of starting a new run.")
    ] = None,
    step: Annotated[
        str | None, typer.Option(help="With --resume: the step to re-run from.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Hide the flow's own log lines.")] = False,
) -> None:
    """Run TrainFlow (Metaflow): transform, prepare, prod2vec, sweep, evaluate, card, register."""
    from smallboat.flows.runner import resume_train, run_train

    settings = Settings()
    if step and not resume:
        raise SmallboatError("--step names the step to re-run of a failed run: give --resume too")
    if resume:
        outcome = resume_train(
            settings,
            origin_run_id=resume,
            step_to_rerun=step,
            max_workers=max_workers,
            show_output=not quiet,
        )
    else:
        params: dict[str, object] = {
            "max_events": max_events,
            "seed": seed,
            "skip_transform": skip_transform,
            "dbt_vars": dbt_vars,
            "window_start": window_start,
            "window_end": window_end,
            "bootstrap": bootstrap,
            "min_improvement": min_improvement,
            "threads": max(1, settings.threads // max_workers),
        }
        if grid is not None:
            params["grid"] = grid
        if next_item is not None:
            params["next_item"] = next_item
        if oracle is not None:
            params["oracle"] = str(oracle.resolve())
        outcome = run_train(settings, max_workers=max_workers, show_output=not quiet, **params)
    console.print(render_training(outcome))


def render_training(outcome: Any) -> Any:
    """The training run's figures as a table (model, baselines, oracle) and where things are."""
    from rich.console import Group
    from rich.table import Table

    from smallboat.model.report import LABELS, MODELS, summary_prefix

    s = outcome.summary or {}
    table = Table(title=f"TrainFlow/{outcome.run_id}: test split", title_justify="left")
    for col in ("model", "ROC-AUC", "Challenge score", "PR-AUC", "log-loss"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name in MODELS:
        prefix = summary_prefix(name)
        if f"{prefix}challenge_score" not in s:
            continue
        table.add_row(
            LABELS[name],
            *(
                f"{s[prefix + m]:.4f}" if prefix + m in s else "n/a"
                for m in ("roc_auc", "challenge_score", "pr_auc", "log_loss")
            ),
        )
    reg = outcome.registration or {}
    lines = [
        f"gate: {reg.get('summary')}",
        f"card: {reg.get('card_path')}",
        f"bundle: {reg.get('bundle_dir')}",
        f"MLflow: run {reg.get('mlflow_run_id')} in {reg.get('tracking_uri')}"
        f" (UI: mlflow ui --backend-store-uri {reg.get('tracking_uri')})",
    ]
    return Group(table, *lines)


DEMO_MARKER = ".smallboat-demo"
"""A home the demo made holds this file; the demo starts such a home over (keeping the
synthesized data) and refuses to touch any other home that already has a warehouse."""


def _demo_home(settings: Settings) -> None:
    home = settings.home_dir
    marker = home / DEMO_MARKER
    if settings.warehouse_path.exists() and not marker.exists():
        raise SmallboatError(
            f"{home} already holds a warehouse the demo did not make: the demo starts its home "
            "over, so point SMALLBOAT_HOME at an empty folder (or the demo's own) to run it"
        )
    if home.exists():
        import shutil

        for child in home.iterdir():
            if child.name in ("demo-data", DEMO_MARKER):
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    settings.ensure_home()
    marker.write_text("made by `smallboat demo`; the demo starts this home over on each run\n")


@app.command("demo")
@friendly_errors
def demo_cmd(
    sessions: Annotated[int, typer.Option(min=1_000, help="Sessions to synthesize.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic data.")] = 0,
    live_fraction: Annotated[
        float,
        typer.Option(
            min=0.01, max=0.5, help="Latest share of sessions held out and replayed as live."
        ),
    ] = 0.1,
    retrain: Annotated[bool, typer.Option(help="End with the retraining step.")] = True,
) -> None:
    """Run the whole path on embedded defaults: synthesize, hold out the latest sessions, load,
    transform, train and register, collect, serve, replay the held-out sessions live with a
    planted shift, monitor, retrain. The demo's home starts over on each run."""
    import time

    from smallboat.data.holdout import split_release
    from smallboat.data.land import load_path
    from smallboat.data.synth import SynthConfig, synthesize
    from smallboat.warehouse.summary import warehouse_summary
    from smallboat.warehouse.transform import run_transform

    started = time.perf_counter()
    settings = Settings()
    _demo_home(settings)
    data_dir = settings.home_dir / "demo-data" / f"synth-{sessions}-{seed}"
    console.rule("[bold]1. synthesize, and hold out the latest sessions as live traffic")
    if not (data_dir / "browsing_train.csv").exists():
        console.print(
            synthesize(SynthConfig(sessions=sessions, seed=seed), data_dir, progress=True).render()
        )
    else:
        console.print(f"reusing {data_dir}")
    held = split_release(data_dir, data_dir / "split", live_fraction=live_fraction)
    console.print(
        f"history: {held.history_sessions:,} sessions ({held.history}); held out as live: "
        f"{held.live_sessions:,} sessions, {held.live_events:,} events ({held.live})"
    )
    console.rule("[bold]2. load (the history)")
    console.print(
        load_path(
            held.history, source="coveo", on_bad_rows="fail", settings=settings, progress=True
        ).render()
    )
    console.rule("[bold]3. transform (dbt build: models and the quality gate)")
    console.print(run_transform(settings, progress=True).render())
    console.rule("[bold]4. warehouse")
    console.print(warehouse_summary(settings))
    console.print(f"\nwarehouse: {settings.warehouse_path}\nstate home: {settings.home_dir}")
    console.rule("[bold]5. train (Metaflow TrainFlow -> MLflow registry)")
    from smallboat.flows.runner import run_train

    outcome = run_train(
        settings,
        show_output=False,
        grid=DEMO_GRID,
        next_item=DEMO_NEXT_ITEM,
        skip_transform=True,
        oracle=str(held.history.resolve()),
        seed=seed,
    )
    console.print(render_training(outcome))
    console.rule("[bold]6. collect (test split replayed through the collector, compacted)")
    from smallboat.collect.demo import replay_demo

    replay_demo(settings, console)
    console.rule("[bold]7. serve (the champion answering test-split sessions, then stopped)")
    from smallboat.serve.demo import serve_demo

    serve_demo(settings, console)
    from smallboat.loop_demo import closed_loop, pointers, where_to_look

    result = closed_loop(
        settings,
        console,
        held,
        train_params={"grid": DEMO_GRID, "next_item": DEMO_NEXT_ITEM, "seed": seed},
        do_retrain=retrain,
    )
    console.rule("[bold]11. where to look")
    console.print(where_to_look(result, outcome))
    for line in pointers(settings, result, outcome):
        console.print(line)
    console.print(f"the demo took {time.perf_counter() - started:,.0f} s")


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

    from smallboat.flows.schedule import Watched, parse_duration, prefect_home, schedule

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


if __name__ == "__main__":
    app()

"""`smallboat train` (TrainFlow) and `smallboat retrain` (land, transform, TrainFlow, reload)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import app, console, friendly_errors
from smallboat.config import Settings
from smallboat.errors import SmallboatError

# Options `train` and `retrain` share (the gate's knobs and the CIs' resamples).
Bootstrap = Annotated[int, typer.Option(min=0, help="Bootstrap resamples for CIs.")]
MinImprovement = Annotated[
    float, typer.Option(help="Test ROC-AUC margin a challenger must beat the champion by.")
]
GateAlpha = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Gate level: promote only when DeLong's one-sided p-value is below this.",
    ),
]


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
    bootstrap: Bootstrap = 500,
    min_improvement: MinImprovement = 0.0,
    gate_alpha: GateAlpha = 0.05,
    blend: Annotated[
        str,
        typer.Option(
            help="The blend of the best GRU and the best LightGBM entry: auto (a candidate when "
            "it validates better than both), always, never."
        ),
    ] = "auto",
    recommender: Annotated[
        str,
        typer.Option(
            help="The next-item recommender the bundle keeps: auto (the best by validation "
            "MRR@20), popularity, popularity_category, knn, markov or sequence."
        ),
    ] = "auto",
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
    from smallboat.pipeline.runner import resume_train, run_train

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
            "gate_alpha": gate_alpha,
            "blend": blend,
            "recommender": recommender,
            "threads": max(1, settings.threads // max_workers),
        }
        if grid is not None:
            params["grid"] = grid
        if next_item is not None:
            params["next_item"] = next_item
        if oracle is not None:
            params["oracle"] = str(oracle.resolve())
        outcome = run_train(settings, max_workers=max_workers, show_output=not quiet, **params)
    from smallboat.pipeline.render import render_training

    console.print(render_training(outcome))


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
    bootstrap: Bootstrap = 500,
    min_improvement: MinImprovement = 0.0,
    gate_alpha: GateAlpha = 0.05,
    quiet: Annotated[bool, typer.Option(help="Hide the flow's own log lines.")] = False,
) -> None:
    """Land the logs, transform, run TrainFlow (the champion/challenger gate), and hot-reload
    the running service when the champion changed."""
    from smallboat.pipeline.jobs import retrain

    settings = Settings()
    params: dict[str, object] = {
        "seed": seed,
        "bootstrap": bootstrap,
        "min_improvement": min_improvement,
        "gate_alpha": gate_alpha,
    }
    if grid is not None:
        params["grid"] = grid
    result = retrain(settings, url=url, show_output=not quiet, progress=True, **params)
    console.print(result.landed.render())
    from smallboat.pipeline.render import render_training

    console.print(render_training(result.train))
    console.print(result.reload)

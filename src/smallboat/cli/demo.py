"""`smallboat demo`: the whole path on embedded defaults (what `make demo` runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from smallboat.cli.common import app, console, friendly_errors
from smallboat.config import Settings


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
    from smallboat.demo.run import run_demo

    run_demo(
        Settings(),
        console,
        sessions=sessions,
        seed=seed,
        live_fraction=live_fraction,
        retrain=retrain,
    )

"""The demo, step by step (what `smallboat demo` and `make demo` run).

1-4. synthesize a release, hold out its latest sessions as live traffic, load the history,
     transform (dbt build and the quality gate), summarise the warehouse;
5.   train and register (TrainFlow -> MLflow registry);
6.   collect (`demo.collect`): part of the test split replayed through a real collector;
7.   serve (`demo.serve`): the champion answering test-split sessions click by click;
8-10. the closed loop (`demo.loop`): live traffic with a planted shift, monitor, retrain;
11.  where to look, and the numbers.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from rich.console import Console

from smallboat.config import Settings
from smallboat.data.land.load import load_path
from smallboat.data.synth.generate import SynthConfig, synthesize
from smallboat.data.synth.holdout import HeldOut, split_release
from smallboat.demo.collect import replay_demo
from smallboat.demo.loop import LoopResult, closed_loop, pointers, where_to_look
from smallboat.demo.serve import serve_demo
from smallboat.errors import SmallboatError
from smallboat.pipeline.render import render_training
from smallboat.pipeline.runner import TrainOutcome, run_train
from smallboat.warehouse.summary import warehouse_summary
from smallboat.warehouse.transform import run_transform

DEMO_GRID = '[{"name": "gru32"}]'
"""The demo's one-entry sweep: IntentConfig's defaults, the best in bench/train_quality.py."""
DEMO_NEXT_ITEM = '{"max_seconds": 60}'
"""The demo bounds the next-item model's training (it stops after the epoch that passes 60 s),
so the whole path stays within its 10 minutes on two cores."""

DEMO_MARKER = ".smallboat-demo"
"""A home the demo made holds this file; the demo starts such a home over (keeping the
synthesized data) and refuses to touch any other home that already has a warehouse."""


def start_demo_home(settings: Settings) -> None:
    """Start the demo's home over (keeping its synthesized data), or refuse a home it did not
    make."""
    home = settings.home_dir
    marker = home / DEMO_MARKER
    if settings.warehouse_path.exists() and not marker.exists():
        raise SmallboatError(
            f"{home} already holds a warehouse the demo did not make: the demo starts its home "
            "over, so point SMALLBOAT_HOME at an empty folder (or the demo's own) to run it"
        )
    if home.exists():
        for child in home.iterdir():
            if child.name in ("demo-data", DEMO_MARKER):
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    settings.ensure_home()
    marker.write_text("made by `smallboat demo`; the demo starts this home over on each run\n")


@dataclass(frozen=True)
class DemoResult:
    """What a demo run made: the held-out split, the first training run, the closed loop."""

    held: HeldOut
    trained: TrainOutcome
    loop: LoopResult


def run_demo(
    settings: Settings,
    console: Console,
    *,
    sessions: int,
    seed: int,
    live_fraction: float,
    retrain: bool,
) -> DemoResult:
    """The whole path on embedded defaults, printed step by step to `console`."""
    started = time.perf_counter()
    start_demo_home(settings)
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
    replay_demo(settings, console)
    console.rule("[bold]7. serve (the champion answering test-split sessions, then stopped)")
    serve_demo(settings, console)
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
    return DemoResult(held, outcome, result)

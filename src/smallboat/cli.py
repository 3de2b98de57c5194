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


@app.command("demo")
@friendly_errors
def demo_cmd(
    sessions: Annotated[int, typer.Option(min=1_000, help="Sessions to synthesize.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic data.")] = 0,
) -> None:
    """Run the path on embedded defaults: synthesize, load, transform, summarise the warehouse."""
    from smallboat.data.land import load_path
    from smallboat.data.synth import SynthConfig, synthesize
    from smallboat.warehouse.summary import warehouse_summary
    from smallboat.warehouse.transform import run_transform

    settings = Settings()
    settings.ensure_home()
    data_dir = settings.home_dir / "demo-data" / f"synth-{sessions}-{seed}"
    console.rule("[bold]1. synthesize")
    if not (data_dir / "browsing_train.csv").exists():
        console.print(
            synthesize(SynthConfig(sessions=sessions, seed=seed), data_dir, progress=True).render()
        )
    else:
        console.print(f"reusing {data_dir}")
    console.rule("[bold]2. load")
    console.print(
        load_path(
            data_dir, source="coveo", on_bad_rows="fail", settings=settings, progress=True
        ).render()
    )
    console.rule("[bold]3. transform (dbt build: models and the quality gate)")
    console.print(run_transform(settings, progress=True).render())
    console.rule("[bold]4. warehouse")
    console.print(warehouse_summary(settings))
    console.print(f"\nwarehouse: {settings.warehouse_path}\nstate home: {settings.home_dir}")


if __name__ == "__main__":
    app()

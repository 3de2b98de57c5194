"""`smallboat data synth|load`, `smallboat transform`, `smallboat warehouse summary`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smallboat.cli.common import SourceFormat, app, console, friendly_errors
from smallboat.config import Settings

data_app = typer.Typer(help="Synthesize and load clickstream data.", no_args_is_help=True)
warehouse_app = typer.Typer(help="Inspect the DuckDB warehouse.", no_args_is_help=True)


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
    from smallboat.data.synth.generate import SynthConfig, synthesize

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
    from smallboat.data.land.load import load_path

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

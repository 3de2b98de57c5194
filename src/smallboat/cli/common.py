"""What every verb shares: the `smallboat` Typer app, the consoles, and one-line errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import typer
from rich.console import Console

from smallboat.errors import SmallboatError

app = typer.Typer(
    help="smallboat: clickstream in, a monitored shopping-intent endpoint out, on one laptop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

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

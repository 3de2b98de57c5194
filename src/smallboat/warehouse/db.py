"""Connections to the DuckDB warehouse file, with the settings' thread and memory limits."""

from __future__ import annotations

import duckdb

from smallboat.config import Settings
from smallboat.errors import SmallboatError


def connect(settings: Settings, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open `settings.warehouse_path`; read-only connections need the file to exist already.

    A DuckDB file has one writer at a time, and within one process every connection to it must use
    the same configuration: readers (summary, tests, feature code) should pass read_only=True and
    close the connection (use it as a context manager) before the next `smallboat transform`.
    """
    path = settings.warehouse_path
    if read_only and not path.exists():
        raise SmallboatError(
            f"no warehouse at {path}: run `smallboat data load`, then `smallboat transform`"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "threads": settings.threads,
        "memory_limit": settings.memory_limit,
    }
    return duckdb.connect(str(path), read_only=read_only, config=config)

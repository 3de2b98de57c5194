"""`smallboat warehouse summary`: what the last transform built, at a glance.

Reads the live warehouse read-only: which build it is, each mart's row count, sessions per split
with their add and purchase shares, and the intent examples per split and k with their label rate.
Safe to run at any time, also while a transform runs (it builds another file and swaps it in); a
build running, interrupted or failed beside the live one is said in a warning line, and a mart that
is missing (never built) is shown as such.
"""

from __future__ import annotations

import duckdb
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smallboat.config import Settings
from smallboat.warehouse.db import BUILD_TABLE, build_warnings, connect
from smallboat.warehouse.spark import SPARK_TARGET, spark_live

MARTS: tuple[str, ...] = ("session_events", "sessions", "intent_examples", "sku_features")
"""The tables `smallboat transform` builds for training and serving, in data-path order."""

SPLIT_ORDER = {"train": 0, "valid": 1, "test": 2}


def warehouse_summary(settings: Settings) -> RenderableType:
    """A rich renderable describing the warehouse at `settings.warehouse_path`.

    Raises SmallboatError (from `connect`) when there is no warehouse yet.
    """
    with connect(settings, read_only=True) as con:
        existing = _existing_tables(con)
        where = settings.warehouse_path
        if settings.dbt_target == SPARK_TARGET:
            where = (spark_live(settings) or {}).get("location", where)
        parts: list[RenderableType] = [
            Text(f"warehouse {where}", style="bold"),
            *_built_by(con, existing),
            *(Text(f"warning: {line}", style="yellow") for line in build_warnings(settings, con)),
            _row_counts(con, existing),
        ]
        if "sessions" in existing:
            parts.append(_sessions_per_split(con))
        if "intent_examples" in existing:
            parts.append(_intent_examples(con))
    return Group(*parts)


def _built_by(con: duckdb.DuckDBPyConnection, existing: set[str]) -> list[Text]:
    if BUILD_TABLE not in existing:
        return []
    rows = con.sql(f"select started_at, select_nodes from main.{BUILD_TABLE}").fetchall()
    return [
        Text(f"built by the transform started at {started_at}{f' (select {sel})' if sel else ''}")
        for started_at, sel in rows
    ]


def _existing_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.sql(
        "select table_name from information_schema.tables where table_schema = 'main'"
    ).fetchall()
    return {name for (name,) in rows}


def _row_counts(con: duckdb.DuckDBPyConnection, existing: set[str]) -> Table:
    table = Table(title="marts", title_justify="left", box=None, header_style="bold")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for mart in MARTS:
        if mart in existing:
            [(n,)] = con.sql(f"select count(*) from main.{mart}").fetchall()
            table.add_row(mart, f"{n:,}")
        else:
            table.add_row(mart, Text("missing: run `smallboat transform`", style="yellow"))
    return table


def _sessions_per_split(con: duckdb.DuckDBPyConnection) -> Table:
    table = Table(title="sessions per split", title_justify="left", box=None, header_style="bold")
    table.add_column("split")
    for name in ("sessions", "avg events", "with add", "with purchase"):
        table.add_column(name, justify="right")
    rows = con.sql(
        """
        select
            split,
            count(*) as n_sessions,
            avg(n_events) as avg_events,
            avg(case when has_add then 1.0 else 0.0 end) as add_share,
            avg(case when has_purchase then 1.0 else 0.0 end) as purchase_share
        from main.sessions
        group by split
        """
    ).fetchall()
    rows.sort(key=lambda row: SPLIT_ORDER.get(row[0], len(SPLIT_ORDER)))
    for split, n, avg_events, add_share, purchase_share in rows:
        table.add_row(
            split, f"{n:,}", f"{avg_events:.2f}", f"{add_share:.2%}", f"{purchase_share:.2%}"
        )
    return table


def _intent_examples(con: duckdb.DuckDBPyConnection) -> Table:
    table = Table(
        title="intent examples per split and k (label rate)",
        title_justify="left",
        box=None,
        header_style="bold",
    )
    rows = con.sql(
        """
        select split, k, count(*) as n_examples, avg(label) as label_rate
        from main.intent_examples
        group by split, k
        """
    ).fetchall()
    splits = sorted({r[0] for r in rows}, key=lambda s: SPLIT_ORDER.get(s, len(SPLIT_ORDER)))
    ks = sorted({r[1] for r in rows})
    cells = {(split, k): (n, rate) for split, k, n, rate in rows}
    table.add_column("split")
    for k in ks:
        table.add_column(f"k={k}", justify="right")
    for split in splits:
        row = [split]
        for k in ks:
            n, rate = cells.get((split, k), (0, None))
            row.append(f"{n:,} ({rate:.0%})" if rate is not None else "0")
        table.add_row(*row)
    if not rows:
        table.add_column("examples")
        table.add_row("none", "no session has an add before its first purchase")
    return table

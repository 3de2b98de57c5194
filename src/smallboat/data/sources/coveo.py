"""The Coveo SIGIR eCom 2021 release (and the synthetic generator's copy): CSV -> canonical tables.

Each of the three files maps onto one canonical table with the same column names, so the mapping
is derived from `smallboat.schema`: a column's canonical type says how to parse its text (int64:
an integer; list<float32>: "[f1, f2, ...]" of VECTOR_DIM numbers; list<string>: "['h1', 'h2']";
int8: a price decile such as "7.0"), and a non-nullable column may not be empty. On top of that,
browsing events have allowed values: event_type in EVENT_TYPES, product_action in PRODUCT_ACTIONS
and empty exactly on plain pageviews (DESIGN.md section 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from smallboat import schema
from smallboat.data.sources import parse
from smallboat.data.sources.base import Problems, ReadStats, RowChecks, make_batch
from smallboat.data.sources.csvstream import CsvStream, read_header
from smallboat.errors import DataError
from smallboat.schema import Table

_VECTOR = pa.list_(pa.float32())
_SKUS = pa.list_(pa.string())
_ACTIONS_TEXT = "'', " + ", ".join(schema.PRODUCT_ACTIONS)


EVENT_TYPE_ALIASES = {"event": "event_product"}
"""event_type spellings of the release's documentation -> the files' (and the schema's) spelling."""


def release_table(name: str) -> str | None:
    """The canonical table a file name of the release stands for: `browsing_train.csv`, the
    published samples' `browsing_train_sample.csv`, either gzipped (`.csv.gz`); else None."""
    base = name.removesuffix(".gz")
    for table_name, file_name in schema.COVEO_FILES.items():
        if base in (file_name, file_name.replace(".csv", "_sample.csv")):
            return table_name
    return None


def table_of(path: Path) -> Table:
    """The canonical table a Coveo file holds: by its release file name, else by its header."""
    named = release_table(path.name)
    if named is not None:
        return schema.TABLES[named]
    header = set(read_header(path))
    matches = [
        schema.TABLES[name]
        for name in schema.COVEO_FILES
        if set(schema.TABLES[name].column_names) <= header
    ]
    if len(matches) == 1:
        return matches[0]
    expected = "; ".join(
        f"{file} ({', '.join(schema.TABLES[name].column_names)})"
        for name, file in schema.COVEO_FILES.items()
    )
    raise DataError(
        f"{path.name}: cannot tell which Coveo table it holds from its name or header "
        f"({', '.join(sorted(header))}); expected the columns of one of {expected}"
    )


def _required(text: pa.Array) -> pa.BooleanArray:
    return pc.is_null(text)


def _check_event_type(text: pa.Array, raw: pa.RecordBatch, checks: RowChecks) -> None:
    allowed = pa.array(schema.EVENT_TYPES)
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.is_in(text, value_set=allowed)))
    checks.flag("event_type", bad, f"is not one of {', '.join(schema.EVENT_TYPES)}")


def _check_product_action(text: pa.Array, raw: pa.RecordBatch, checks: RowChecks) -> None:
    unknown = pc.and_(
        pc.is_valid(text), pc.invert(pc.is_in(text, value_set=pa.array(schema.PRODUCT_ACTIONS)))
    )
    checks.flag("product_action", unknown, f"is not one of {_ACTIONS_TEXT}")
    event_type = raw.column("event_type")
    on_pageview = pc.and_(pc.equal(event_type, "pageview"), pc.is_valid(text))
    checks.flag("product_action", on_pageview, "must be empty on a pageview row")
    missing = pc.and_(pc.equal(event_type, "event_product"), pc.is_null(text))
    checks.flag(
        "product_action",
        missing,
        f"is empty on an event_product row; expected one of {', '.join(schema.PRODUCT_ACTIONS)}",
    )


_RULES: dict[tuple[str, str], Callable[[pa.Array, pa.RecordBatch, RowChecks], None]] = {
    ("browsing_events", "event_type"): _check_event_type,
    ("browsing_events", "product_action"): _check_product_action,
}
"""Allowed-value rules beyond what a column's type says, by (table, column)."""


def convert_column(
    table: Table, column: schema.Column, raw: pa.RecordBatch, checks: RowChecks
) -> pa.Array:
    """Parse one column's text into its canonical type, flagging bad rows in `checks`."""
    text = raw.column(column.name)
    if not column.nullable:
        checks.flag(column.name, _required(text), "is empty; every row needs one")
    if column.type == pa.string():
        values: pa.Array = text
    elif column.type == pa.int64():
        values, bad = parse.parse_int64(text)
        checks.flag(column.name, bad, f"is not an integer ({column.description})")
    elif column.type == _VECTOR:
        values, bad = parse.parse_vectors(text, schema.VECTOR_DIM)
        checks.flag(column.name, bad, lambda v: parse.describe_vector(v, schema.VECTOR_DIM))
    elif column.type == _SKUS:
        values, bad = parse.parse_sku_lists(text)
        checks.flag(column.name, bad, parse.describe_sku_list)
    elif column.type == pa.int8():
        values, bad = parse.parse_price_bucket(text)
        checks.flag(column.name, bad, parse.describe_price_bucket)
    else:  # pragma: no cover - a new canonical type needs a parser here
        raise TypeError(f"no text parser for {table.name}.{column.name} of type {column.type}")
    rule = _RULES.get((table.name, column.name))
    if rule is not None:
        rule(text, raw, checks)
    return values


class CoveoSource:
    """Coveo-format CSVs: browsing_train.csv, search_train.csv, sku_to_content.csv (or the
    published samples' `_sample` names, or gzipped). Blank lines are skipped and counted (the
    samples end with one); `event_type` may be spelt `event`, as the release's README does."""

    name = "coveo"

    def files_in(self, folder: Path) -> list[Path]:
        """The release files present in `folder` (at least one must be): the release names, the
        samples' `_sample` names, each plain or `.gz`; at most one file per table."""
        found: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            table = release_table(path.name)
            if table is not None and path.is_file():
                found.setdefault(table, []).append(path)
        if not found:
            raise DataError(
                f"{folder} holds none of the Coveo files {', '.join(schema.COVEO_FILES.values())} "
                "(nor their _sample or .gz forms)"
            )
        for table, paths in found.items():
            if len(paths) > 1:
                names = " and ".join(p.name for p in paths)
                raise DataError(
                    f"{folder} holds {names}, both {table}: load one of them by its path"
                )
        return [found[t][0] for t in schema.COVEO_FILES if t in found]

    def tables(self, path: Path) -> tuple[Table, ...]:
        """A Coveo file holds exactly one canonical table."""
        return (table_of(path),)

    def read(
        self, path: Path, *, problems: Problems, stats: ReadStats, block_size: int
    ) -> Iterator[tuple[Table, pa.RecordBatch]]:
        """Stream `path` as batches of its canonical table."""
        table = table_of(path)
        stream = CsvStream(path, required=table.column_names, block_size=block_size, stats=stats)
        for batch in stream.batches():
            blank = batch.skip_blank_lines()
            if "event_type" in table.column_names:
                batch.rename_values("event_type", EVENT_TYPE_ALIASES)
            checks = batch.checks(skip=blank)
            arrays = [convert_column(table, c, batch.data, checks) for c in table.columns]
            problems.report_all(batch.structural, checks.problems())
            yield table, make_batch(table, arrays, checks.keep())
        problems.report_all(stream.trailing())

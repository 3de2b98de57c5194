"""What every source adapter shares: bad-row reports, vectorised row checks, the adapter contract.

An adapter streams one source file as canonical record batches (`smallboat.schema` tables). Rows
that break the format become `Problem`s handed to a `Problems` sink, which either stops the load on
the first one (`fail`) or passes them to a rejects file (`skip`): no row is ever dropped silently.
Checks run on whole batches with pyarrow.compute; Python only touches the (rare) bad rows.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smallboat.errors import DataError
from smallboat.schema import Table

OnBadRows = Literal["fail", "skip"]

MAX_SHOWN_VALUE = 80
"""Longest value quoted in full in an error message (a bad 50-float vector is ~1 kB of text)."""


def quote(value: str) -> str:
    """Quote a value for a one-line message: line breaks escaped, very long values shortened."""
    value = value.replace("\r", "\\r").replace("\n", "\\n")
    if len(value) > MAX_SHOWN_VALUE:
        value = value[: MAX_SHOWN_VALUE - 3] + "..."
    return f"'{value}'"


@dataclass(frozen=True)
class Problem:
    """One bad input row: where it is, which field, the value seen and what was expected."""

    file: str
    line: int | None
    field: str | None
    value: str | None
    reason: str
    raw: str | None = None

    def message(self) -> str:
        """The one-line message, e.g. `f.csv line 1,204: product_action 'buy' is not one of ...`."""
        where = self.file if self.line is None else f"{self.file} line {self.line:,}"
        if self.field is None:
            what = self.reason
        elif self.value is None:
            what = f"{self.field} {self.reason}"
        else:
            what = f"{self.field} {quote(self.value)} {self.reason}"
        return f"{where}: {what}"

    def record(self) -> dict[str, Any]:
        """The row of the rejects file (the value is kept in full here)."""
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "value": self.value,
            "reason": self.reason,
            "raw": self.raw,
        }


class Problems:
    """Where adapters report bad rows: `fail` raises on the first, `skip` hands each to a callback.

    Under `skip` the rows are counted in `count`.
    """

    def __init__(
        self, on_bad_rows: OnBadRows, on_reject: Callable[[Problem], None] | None = None
    ) -> None:
        if on_bad_rows not in ("fail", "skip"):
            raise DataError(f"on_bad_rows {on_bad_rows!r} is not one of fail, skip")
        if on_bad_rows == "skip" and on_reject is None:
            raise ValueError("on_bad_rows='skip' needs an on_reject callback")
        self.on_bad_rows = on_bad_rows
        self._on_reject = on_reject
        self.count = 0

    def report(self, problem: Problem) -> None:
        """Stop the load (fail) or record the row as rejected (skip)."""
        if self.on_bad_rows == "fail":
            raise DataError(problem.message())
        self.count += 1
        assert self._on_reject is not None
        self._on_reject(problem)

    def report_all(self, *sorted_streams: Iterable[Problem]) -> None:
        """Report problems of several line-sorted streams in file order: `fail` names the first."""
        for problem in heapq.merge(*sorted_streams, key=lambda p: p.line or 0):
            self.report(problem)


@dataclass
class ReadStats:
    """Progress of one file: source records read (CSV rows or JSON lines) and bytes consumed."""

    rows_read: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    blank_lines: int = 0
    """Blank lines an adapter skipped (not rows: they are not in `rows_read`)."""


Reason = str | Callable[[str | None], str]


@dataclass(frozen=True)
class _Check:
    field: str
    bad: pa.BooleanArray
    reason: Reason
    values: pa.Array


@dataclass
class RowChecks:
    """Vectorised checks of one batch of raw text rows; each bad row yields one `Problem`.

    Checks are boolean masks added in column order; a row's problem is its first failing check, so
    the report names the leftmost bad field. `line_of` and `raw_of` are only called for bad rows.
    """

    raw: pa.RecordBatch
    file: str
    line_of: Callable[[int], int]
    raw_of: Callable[[int], str | None]
    skip: pa.BooleanArray | None = None
    """Rows neither checked nor kept (blank lines an adapter skips)."""
    _checks: list[_Check] = field(default_factory=list)
    _union: pa.BooleanArray | None = None

    def flag(self, field: str, bad: pa.Array | pa.ChunkedArray, reason: Reason) -> None:
        """Mark rows where `bad` is true as failing `field`; the value shown is the raw text."""
        mask = pc.fill_null(bad, False)
        if isinstance(mask, pa.ChunkedArray):
            mask = mask.combine_chunks()
        if self.skip is not None:
            mask = pc.and_(mask, pc.invert(self.skip))
        self._checks.append(_Check(field, mask, reason, self.raw.column(field)))
        self._union = None

    def any_bad(self) -> pa.BooleanArray | None:
        """The union of all checks, or None when every row passes (the fast path)."""
        if not self._checks:
            return None
        if self._union is None:
            self._union = reduce(pc.or_, (c.bad for c in self._checks))
        return self._union if pc.any(self._union).as_py() else None

    def keep(self) -> pa.BooleanArray | None:
        """Filter mask of the good rows, or None when all rows are good (and none skipped)."""
        union = self.any_bad()
        if self.skip is not None:
            union = self.skip if union is None else pc.or_(union, self.skip)
        return None if union is None else pc.invert(union)

    def problems(self) -> Iterator[Problem]:
        """The bad rows' problems in row order (hence in line order)."""
        union = self.any_bad()
        if union is None:
            return
        rows = np.flatnonzero(union.to_numpy(zero_copy_only=False))
        first = np.full(len(rows), -1)
        for i, check in enumerate(self._checks):
            fails = check.bad.to_numpy(zero_copy_only=False)[rows]
            first[(first < 0) & fails] = i
        for row, i in zip(rows.tolist(), first.tolist(), strict=True):
            check = self._checks[i]
            value = check.values[row].as_py()
            shown = None if value is None else str(value)
            reason = check.reason if isinstance(check.reason, str) else check.reason(shown)
            if all(self.raw.column(c)[row].as_py() is None for c in range(self.raw.num_columns)):
                yield Problem(self.file, self.line_of(row), None, None, "the line is blank")
                continue
            yield Problem(
                self.file, self.line_of(row), check.field, shown, reason, raw=self.raw_of(row)
            )


def scatter_rows(length: int, rows: pa.Array | np.ndarray) -> pa.BooleanArray:
    """A mask of `length` rows, true at the given row indices (e.g. rows owning a bad list item)."""
    mask = np.zeros(length, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return pa.array(mask, type=pa.bool_())


def make_batch(
    table: Table, arrays: Iterable[pa.Array], keep: pa.BooleanArray | None
) -> pa.RecordBatch:
    """Assemble the canonical batch of `table` from its converted columns, dropping bad rows."""
    batch = pa.RecordBatch.from_arrays(list(arrays), schema=table.arrow_schema)
    return batch if keep is None else batch.filter(keep)


class Source(Protocol):
    """A source format: which files of a folder it reads, which tables a file yields, and how."""

    name: str

    def files_in(self, folder: Path) -> list[Path]:
        """The files of `folder` this source loads; a DataError when there are none."""
        ...

    def tables(self, path: Path) -> tuple[Table, ...]:
        """The canonical tables that reading `path` yields."""
        ...

    def read(
        self, path: Path, *, problems: Problems, stats: ReadStats, block_size: int
    ) -> Iterator[tuple[Table, pa.RecordBatch]]:
        """Stream `path` as canonical batches; bad rows go to `problems`, progress to `stats`."""
        ...


def files_with_suffix(folder: Path, suffix: str, source_label: str) -> list[Path]:
    """Every `*suffix` file directly in `folder`, by name; an error naming the folder if none."""
    files = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
    if not files:
        raise DataError(f"{folder} holds no {suffix} files to load as {source_label}")
    return files

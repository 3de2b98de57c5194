"""Stream a CSV file as all-text record batches, knowing the line number of every row.

pyarrow's streaming reader parses block by block (memory bounded by the block size). Rows with the
wrong number of fields never reach a batch: the reader hands them to `invalid_row_handler` with
their text and record number, which are only known when the reader runs single-threaded
(`use_threads=False`; with threads the number is None). That costs little here: the reader is not
the bottleneck and it still reads ahead on its own I/O thread.

Line numbers count the header as line 1 and assume no field holds a newline (none of the supported
formats has one; such a field would itself be reported as a line with too few fields). Blank lines
are kept as all-NULL rows (`ignore_empty_lines=False`) so that they count as lines; an adapter
either reports them or skips them (`CsvBatch.skip_blank_lines`, counted in `ReadStats`). A file
named `*.gz` is read through gzip.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from smallboat.data.sources.base import Problem, ReadStats, RowChecks
from smallboat.errors import DataError

HEADER_LINE = 1


def read_header(path: Path) -> list[str]:
    """The column names on the first line of `path` (a DataError when the file is empty)."""
    try:
        with gzip.open(path, "rb") if is_gzip(path) else path.open("rb") as f:
            first = f.readline(1 << 20)
    except (OSError, EOFError) as exc:  # not gzip data, or cut off
        raise DataError(f"{path.name} cannot be read as gzip: {exc}") from None
    if not first.strip():
        raise DataError(f"{path.name} is empty; expected a header line with column names")
    text = first.decode("utf-8-sig", errors="replace")
    return next(csv.reader([text.rstrip("\r\n")]))


def is_gzip(path: Path) -> bool:
    """Files named `*.gz` are gzipped (the Coveo release's samples are also published so)."""
    return path.name.endswith(".gz")


def require_columns(name: str, header: Sequence[str], required: Sequence[str]) -> None:
    """Raise a DataError naming the required columns the header lacks."""
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{name} header is missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(required)} (found {', '.join(header) or 'no columns'})"
        )


@dataclass
class CsvBatch:
    """One block of rows as text (NULL for empty fields), with the defects found up to its end."""

    data: pa.RecordBatch
    first_row: int
    structural: list[Problem]
    stream: CsvStream

    def line(self, row: int) -> int:
        """The file line of the batch's row `row`."""
        return self.stream.line_of(self.first_row + row)

    def raw(self, row: int) -> str:
        """The row's text, re-assembled from its fields (the same as the line for plain CSV)."""
        out = io.StringIO()
        values = [self.data.column(c)[row].as_py() for c in range(self.data.num_columns)]
        csv.writer(out, lineterminator="").writerow(["" if v is None else v for v in values])
        return out.getvalue()

    def checks(self, *, skip: pa.BooleanArray | None = None) -> RowChecks:
        """An empty set of vectorised checks for this batch; `skip` rows are neither checked nor
        kept."""
        return RowChecks(self.data, self.stream.name, self.line, self.raw, skip=skip)

    def skip_blank_lines(self) -> pa.BooleanArray | None:
        """The batch's blank lines (no field has a value), counted in the stream's stats as
        blank lines instead of rows; None when there are none (the usual case)."""
        if self.data.num_columns == 0:
            return None
        blank = reduce(pc.and_, (pc.is_null(column) for column in self.data.columns))
        count = int(pc.sum(blank).as_py() or 0)
        if not count:
            return None
        self.stream.stats.blank_lines += count
        self.stream.stats.rows_read -= count
        return blank

    def rename_values(self, column: str, aliases: Mapping[str, str]) -> None:
        """Replace other spellings of a column's values by the canonical one, before checks."""
        index = self.data.schema.get_field_index(column)
        values = self.data.column(index)
        for alias, canonical in aliases.items():
            values = pc.if_else(pc.equal(values, alias), canonical, values)
        self.data = self.data.set_column(index, column, values)


class CsvStream:
    """A CSV file read block by block, every column as text, with its structural defects.

    Rows with the wrong number of fields become `Problem`s; each batch carries those that lie
    before its last row, and `trailing()` returns the ones after the last good row (a file whose
    last line is cut off ends with one).
    """

    def __init__(
        self, path: Path, *, required: Sequence[str], block_size: int, stats: ReadStats
    ) -> None:
        self.path = path
        self.name = path.name
        self.header = read_header(path)
        require_columns(self.name, self.header, required)
        self.block_size = block_size
        self.stats = stats
        self._skipped: list[int] = []  # record numbers the reader skipped, ascending
        self._pending: deque[Problem] = deque()
        self._rows = 0

    def line_of(self, row: int) -> int:
        """File line of the `row`-th (0-based) row the reader returned, skipping defective lines."""
        # Fixed point of line = row + 2 + (#skipped lines <= line); it rises monotonically.
        skipped = 0
        while True:
            line = row + HEADER_LINE + 1 + skipped
            now = bisect_right(self._skipped, line)
            if now == skipped:
                return line
            skipped = now

    def _on_invalid_row(self, row: pacsv.InvalidRow) -> str:
        assert row.number is not None, "line numbers need use_threads=False"
        self._skipped.append(row.number)
        self.stats.rows_read += 1
        reason = (
            f"the line has {row.actual_columns} fields; expected {row.expected_columns} "
            f"({', '.join(self.header)}): it is cut off or has an unquoted comma"
        )
        if "\n" in row.text:  # an unclosed quote: the lines it swallowed are part of this row
            reason += (
                f"; an unclosed quote joins it with the next {row.text.count(chr(10))} line(s)"
            )
        self._pending.append(Problem(self.name, row.number, None, None, reason, raw=row.text))
        return "skip"

    def batches(self) -> Iterator[CsvBatch]:
        """The file's rows as text batches, in file order."""
        raw = pa.OSFile(str(self.path))
        self.stats.bytes_total = raw.size()
        source = pa.CompressedInputStream(raw, "gzip") if is_gzip(self.path) else raw
        try:
            # open_csv already parses the first block, so it is inside the try as well.
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=self.block_size),
                parse_options=pacsv.ParseOptions(
                    invalid_row_handler=self._on_invalid_row, ignore_empty_lines=False
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in self.header},
                    strings_can_be_null=True,
                    null_values=[""],
                    quoted_strings_can_be_null=True,
                ),
            )
            for data in reader:
                if data.num_rows == 0:
                    continue
                first = self._rows
                self._rows += data.num_rows
                self.stats.rows_read += data.num_rows
                self.stats.bytes_read = raw.tell()
                last_line = self.line_of(self._rows - 1)
                structural = []
                while self._pending and (self._pending[0].line or 0) < last_line:
                    structural.append(self._pending.popleft())
                yield CsvBatch(data, first, structural, self)
        except pa.ArrowInvalid as exc:
            raise self._unreadable(exc) from None
        finally:
            source.close()
            raw.close()
        self.stats.bytes_read = self.stats.bytes_total

    def _unreadable(self, exc: pa.ArrowInvalid) -> DataError:
        """A DataError for what stops pyarrow's reader outright (bytes that are not UTF-8 text):
        such a block cannot be parsed, so no `skip` is possible; the file must be fixed."""
        text = str(exc)
        found = re.search(r"Row #(\d+)", text)
        if "invalid UTF8" in text and found is not None:
            line = int(found.group(1))  # the reader counts every line here, header included
            return DataError(
                f"{self.name} line {line:,}: the line is not valid UTF-8 text; convert the file "
                "to UTF-8 (e.g. with iconv) and load it again"
            )
        return DataError(f"{self.name} cannot be read as CSV: {text}")

    def trailing(self) -> list[Problem]:
        """Defective lines after the last good row; call after `batches()` is exhausted."""
        rest = list(self._pending)
        self._pending.clear()
        return rest

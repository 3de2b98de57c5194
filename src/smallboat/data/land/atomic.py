"""Atomic landing files: written under a temporary name, renamed into place only when complete.

Readers glob `landing/<table>/*.parquet`; a file being written is called `.<name>.parquet.tmp-...`
(hidden, and not matching the glob), so a reader sees a landing file whole or not at all. The
Parquet encoding runs on a writer thread fed through a small bounded queue: pyarrow releases the GIL
while it encodes and compresses, so the caller parses the next block on the other core, and memory
stays bounded by the queue and one row group.

Used by `smallboat.data.land.load` for source loads, and meant for anything else that lands rows
(the event collector's compaction), through `land_batches`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from smallboat.config import Settings
from smallboat.durable import fsync_dir, process_alive
from smallboat.errors import DataError
from smallboat.schema import Table

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 1 << 17
"""Rows per Parquet row group, near DuckDB's own 122,880: readers parallelise over row groups."""
ROW_GROUP_BYTES = 128 << 20
"""Flush a row group earlier when its Arrow data reaches this size (wide vector rows)."""
QUEUE_DEPTH = 4
"""Batches waiting for the writer thread: bounds memory when encoding is slower than parsing."""
COMPRESSION = "zstd"
"""zstd level 1: half the size of snappy on hex-hash columns, for about 10% more CPU."""
COMPRESSION_LEVEL = 1
DICTIONARY_PAGE_BYTES = 8 << 20
"""Let a row group's dictionary of session, SKU and URL hashes grow to 8 MB before falling back
to plain encoding (pyarrow's 1 MB default gives up early): files ~40% smaller, and faster."""


def temp_name(folder: Path, stem: str) -> Path:
    """A hidden temporary name in `folder`, unique per process and call, matching no `*.parquet`;
    it names the writing process, so `remove_stale_temps` can tell a dead writer's leftovers."""
    return folder / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")


def remove_stale_temps(folders: Iterable[Path]) -> list[tuple[Path, int]]:
    """Delete the temp files (`temp_name`) in `folders` whose writing process is dead (a load or
    compaction that was killed); returns each removed file with its size. A live process's temp
    file is never touched (nor one whose pid now belongs to another live process)."""
    removed: list[tuple[Path, int]] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _TEMP_NAME.match(path.name)
            if match is None or process_alive(int(match.group(1))):
                continue
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile
            log.warning(
                "removed %s (%s bytes), left by process %s, which is gone",
                path,
                f"{size:,}",
                match.group(1),
            )
            removed.append((path, size))
    return removed


def _dictionary_columns(table: Table) -> list[str]:
    """Parquet column paths to dictionary-encode: text, including the items of text lists (ids
    repeat). Never floats: a dictionary of vector values costs 3x the write and grows the file."""
    paths: list[str] = []
    for column in table.columns:
        if pa.types.is_string(column.type):
            paths.append(column.name)
        elif pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type):
            paths.append(f"{column.name}.list.element")
    return paths


def _statistics_columns(table: Table) -> list[str]:
    """Columns worth min/max statistics: numbers and times. A hash's range prunes nothing, and
    computing it costs ~10% of the write."""
    return [c.name for c in table.columns if pa.types.is_integer(c.type)]


def conform(batch: pa.RecordBatch, table: Table) -> pa.RecordBatch:
    """`batch` with exactly the columns and types of `table` (a DataError when it cannot be)."""
    schema = table.arrow_schema
    if batch.schema.equals(schema):
        arrays = batch.columns
    else:
        missing = [name for name in table.column_names if name not in batch.schema.names]
        if missing:
            raise DataError(f"rows for {table.name} lack column(s) {', '.join(missing)}")
        try:
            arrays = [batch.column(f.name).cast(f.type) for f in schema]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"rows for {table.name} do not fit its column types: {exc}") from None
    for field, array in zip(schema, arrays, strict=True):
        if not field.nullable and array.null_count:
            raise DataError(
                f"rows for {table.name} have {array.null_count} empty {field.name} values"
            )
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class LandingWriter:
    """One landing Parquet file of `table`, written on a background thread under a temp name.

    `write` batches, then `commit(name)` (rename to `<name>.parquet`, returns the path) or
    `abort()` (delete). The name comes last because a load only knows it (the source file's
    content hash) once the file is read. A writer never committed leaves nothing visible behind.
    """

    def __init__(self, table: Table, *, settings: Settings, durable: bool = True) -> None:
        self.folder = settings.table_landing_dir(table.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.table = table
        self.temp = temp_name(self.folder, table.name)
        self.rows = 0
        self._durable = durable
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=f"land-{table.name}", daemon=True)
        self._thread.start()

    def write(self, batch: pa.RecordBatch) -> None:
        """Queue a batch (blocks while the writer is QUEUE_DEPTH batches behind)."""
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError(f"{self.temp.name} is already closed")
        batch = conform(batch, self.table)
        self.rows += batch.num_rows
        self._queue.put(batch)

    def close(self) -> None:
        """Finish the temp file (still invisible); raises what went wrong on the writer thread."""
        self._end_thread()
        if self._error is not None:
            raise self._error

    def commit(self, name: str) -> Path:
        """Rename the finished file to `<name>.parquet` (replacing one of that name)."""
        self.close()
        path = self.folder / f"{name}.parquet"
        os.replace(self.temp, path)
        if self._durable:
            # best effort: a no-op where directories cannot be opened (e.g. Windows)
            with contextlib.suppress(OSError):
                fsync_dir(self.folder)
        log.info("landed %s rows in %s", f"{self.rows:,}", path)
        return path

    def abort(self) -> None:
        """Stop writing and delete the temp file."""
        self._aborted.set()
        self._end_thread()
        self.temp.unlink(missing_ok=True)

    def _end_thread(self) -> None:
        """Send the end marker once and wait for the writer thread to finish."""
        if not self._finished:
            self._finished = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        writer: pq.ParquetWriter | None = None
        pending: list[pa.RecordBatch] = []
        ended = False
        try:
            writer = pq.ParquetWriter(
                self.temp,
                self.table.arrow_schema,
                compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL,
                use_dictionary=_dictionary_columns(self.table),
                dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
                write_statistics=_statistics_columns(self.table),
            )
            while (batch := self._queue.get()) is not None:
                if self._aborted.is_set():
                    continue
                pending.append(batch)
                rows = sum(b.num_rows for b in pending)
                if rows >= ROW_GROUP_ROWS or sum(b.nbytes for b in pending) >= ROW_GROUP_BYTES:
                    self._flush(writer, pending)
            ended = True
            if not self._aborted.is_set():
                self._flush(writer, pending)
                writer.close()
                writer = None
                if self._durable:
                    with self.temp.open("rb") as f:
                        os.fsync(f.fileno())
        except BaseException as exc:
            self._error = exc
            while not ended and self._queue.get() is not None:  # never leave the producer blocked
                pass
        finally:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()

    @staticmethod
    def _flush(writer: pq.ParquetWriter, pending: list[pa.RecordBatch]) -> None:
        if pending:
            table = pa.Table.from_batches(pending)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            pending.clear()


def land_batches(
    table: Table, batches: Iterable[pa.RecordBatch], *, settings: Settings, name: str
) -> Path:
    """Land `batches` as `landing/<table>/<name>.parquet`, atomically; returns the file's path.

    The batches must hold the table's columns (extra columns are dropped, types are cast). An
    existing file of the same name is replaced as a whole, so landing is idempotent by name.
    """
    writer = LandingWriter(table, settings=settings)
    try:
        for batch in batches:
            writer.write(batch)
        return writer.commit(name)
    except BaseException:
        writer.abort()
        raise


class AtomicJsonLines:
    """A JSON-lines file in `folder` that appears, as `<name>.jsonl`, only on `commit(name)`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.temp = temp_name(folder, "rejects")
        self.count = 0
        self._file: TextIO | None = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (the file is created on the first)."""
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = self.temp.open("w", encoding="utf-8")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self, name: str) -> Path | None:
        """Move the file into place; None when nothing was written."""
        if self._file is None:
            return None
        self._file.close()
        path = self.folder / f"{name}.jsonl"
        os.replace(self.temp, path)
        return path

    def abort(self) -> None:
        """Delete the temp file."""
        if self._file is not None:
            self._file.close()
            self.temp.unlink(missing_ok=True)

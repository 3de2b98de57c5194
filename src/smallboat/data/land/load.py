"""Load source files into canonical landing Parquet: streamed, validated, deduplicated, atomic.

`load_path` reads a folder or one file through a source adapter (`smallboat.data.sources`), block by
block, and lands each canonical table as `landing/<table>/<source>-<hash16>.parquet`. Everything is
all-or-nothing: files are written under temporary names and renamed only when every file of the
call has loaded, so a failed load leaves nothing behind and a reader never sees half a file.

Loads are idempotent by content: each file's sha256 is recorded in `landing/_manifest.jsonl`
(one line per file and table), and a file whose bytes were loaded before is reported as already
loaded and skipped (a torn last manifest line, from a load killed while recording, is cut off
with a warning; `manifest.read_manifest`). The temp files of a load or compaction that was
killed are removed by the next load, with a warning naming each and its size (never a live
process's). Bad rows stop the load (`fail`, the default) or go to
`rejects/<source>-<hash16>.jsonl` (`skip`); the summary counts them either way.

A zip (the Coveo release is published as one) is unpacked into a temporary folder under the home
first, at most `SMALLBOAT_LOAD_MAX_UNZIPPED_BYTES`, and loaded as a folder; the manifest names
each file as `<zip>!<member>`. A folder's other files are named in the summary as ignored.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.data.land.atomic import AtomicJsonLines, LandingWriter, remove_stale_temps
from smallboat.data.land.manifest import BackgroundHash, append_manifest, read_manifest
from smallboat.data.land.report import FileLoad, LoadDisplay, LoadSummary, TableLoad, load_display
from smallboat.data.sources.base import OnBadRows, Problem, Problems, ReadStats, Source
from smallboat.data.sources.coveo import CoveoSource
from smallboat.data.sources.otto import OttoSource
from smallboat.data.sources.rees46 import Rees46Source
from smallboat.errors import DataError

__all__ = ["DEFAULT_BLOCK_SIZE", "SOURCES", "load_path"]

log = logging.getLogger(__name__)

SOURCES: dict[str, Source] = {s.name: s for s in (CoveoSource(), Rees46Source(), OttoSource())}
"""The source formats `load_path` understands, by name."""

DEFAULT_BLOCK_SIZE = 8 << 20
"""Bytes parsed per block: large enough to amortise per-batch overhead, small for memory."""


def _seen_before(hasher: BackgroundHash, loaded: set[str]) -> bool:
    return hasher.peek() in loaded


class _AlreadyLoaded(Exception):
    """Stops a load midway: the file's content turned out to be loaded before."""


@dataclass
class _Staged:
    """One file's load, written to temp files, waiting for the whole call to succeed."""

    path: Path
    digest: str = ""
    writers: dict[str, LandingWriter] = field(default_factory=dict)
    rejects: AtomicJsonLines | None = None
    rows_read: int = 0
    blank_lines: int = 0
    seconds: float = 0.0

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()
        if self.rejects is not None:
            self.rejects.abort()


def _files_of(source: Source, path: Path) -> tuple[list[Path], list[Path]]:
    """The files to load, and the other files of a folder (ignored)."""
    if path.is_dir():
        files = source.files_in(path)
        ignored = sorted(p for p in path.iterdir() if p not in files and not p.name.startswith("."))
        return files, ignored
    if path.is_file():
        return [path], []
    raise DataError(f"{path} does not exist; expected a folder of {source.name} files or one file")


def _unzip(archive: Path, into: Path, *, max_bytes: int) -> dict[Path, str]:
    """Unpack the files of a zip flat into `into` (each by its base name; folders and macOS
    metadata skipped), at most `max_bytes` in all; returns each file's origin `<zip>!<member>`."""
    origins: dict[Path, str] = {}
    total = 0
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                name = Path(member.filename).name
                if member.is_dir() or not name or member.filename.startswith("__MACOSX/"):
                    continue
                target = into / name
                if target in origins:
                    raise DataError(
                        f"{archive.name} holds two files named {name}; unpack it and load one"
                    )
                with zipped.open(member) as src, target.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise DataError(
                                f"{archive.name} unpacks to more than {max_bytes:,} bytes "
                                "(SMALLBOAT_LOAD_MAX_UNZIPPED_BYTES): raise it, or unpack the "
                                "zip and load the folder"
                            )
                        dst.write(chunk)
                origins[target] = f"{archive.resolve()}!{member.filename}"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DataError(f"{archive.name} cannot be read as a zip: {exc}") from None
    except (NotImplementedError, RuntimeError) as exc:  # a compression method or encryption
        raise DataError(
            f"{archive.name}: {exc}; unpack it with a zip tool and load the folder"
        ) from None
    return origins


def _stage(
    source: Source,
    staged: _Staged,
    *,
    on_bad_rows: OnBadRows,
    settings: Settings,
    block_size: int,
    display: LoadDisplay,
    seen_before: Callable[[], bool],
) -> None:
    """Read one file into temp landing files (and a temp rejects file).

    Raises _AlreadyLoaded as soon as `seen_before()` says the file's content was loaded before.
    """
    if on_bad_rows == "skip":
        staged.rejects = AtomicJsonLines(settings.rejects_dir)
    rejects = staged.rejects

    def on_reject(problem: Problem) -> None:
        assert rejects is not None
        rejects.write(problem.record())

    problems = Problems(on_bad_rows, on_reject if rejects is not None else None)
    stats = ReadStats(bytes_total=staged.path.stat().st_size)
    start = time.perf_counter()
    batches = source.read(staged.path, problems=problems, stats=stats, block_size=block_size)
    for table, batch in batches:
        if seen_before():
            raise _AlreadyLoaded
        if batch.num_rows:
            writer = staged.writers.get(table.name)
            if writer is None:
                writer = staged.writers[table.name] = LandingWriter(table, settings=settings)
            writer.write(batch)
        display.update(stats)
    for writer in staged.writers.values():
        writer.close()
    staged.rows_read = stats.rows_read
    staged.blank_lines = stats.blank_lines
    staged.seconds = time.perf_counter() - start
    stats.bytes_read = stats.bytes_total
    display.update(stats)


def load_path(
    path: Path,
    *,
    source: str = "coveo",
    on_bad_rows: str = "fail",
    settings: Settings,
    progress: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> LoadSummary:
    """Load a folder (or one file) of `source` files into landing Parquet, all or nothing.

    Raises DataError, before anything is landed, on the first bad row under `fail`, on a missing
    header column, or on a path that holds no loadable file.
    """
    if source not in SOURCES:
        raise DataError(f"source format {source!r} is not one of {', '.join(SOURCES)}")
    if on_bad_rows not in ("fail", "skip"):
        raise DataError(f"on_bad_rows {on_bad_rows!r} is not one of fail, skip")
    adapter = SOURCES[source]
    mode: OnBadRows = "skip" if on_bad_rows == "skip" else "fail"
    settings.ensure_home()
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        unpacked = settings.home_dir / "tmp"
        unpacked.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="unzip-", dir=unpacked) as folder:
            origins = _unzip(path, Path(folder), max_bytes=settings.load_max_unzipped_bytes)
            summary = _load_files(
                adapter,
                Path(folder),
                source=source,
                mode=mode,
                settings=settings,
                progress=progress,
                block_size=block_size,
                origins=origins,
            )
        return summary
    return _load_files(
        adapter,
        path,
        source=source,
        mode=mode,
        settings=settings,
        progress=progress,
        block_size=block_size,
        origins={},
    )


def _load_files(
    adapter: Source,
    path: Path,
    *,
    source: str,
    mode: OnBadRows,
    settings: Settings,
    progress: bool,
    block_size: int,
    origins: dict[Path, str],
) -> LoadSummary:
    files, ignored = _files_of(adapter, path)
    started = time.perf_counter()
    landing = settings.landing_dir
    tables = sorted(p for p in landing.iterdir() if p.is_dir()) if landing.is_dir() else []
    remove_stale_temps([*tables, settings.rejects_dir])
    previous: dict[str, list[dict[str, Any]]] = {}
    for entry in read_manifest(settings):
        previous.setdefault(entry["sha256"], []).append(entry)

    summary = LoadSummary(source=source, ignored=[p.name for p in ignored])
    staged_all: list[_Staged] = []
    with load_display(progress) as display:
        try:
            for file in files:
                display.start(file, file.stat().st_size)
                loaded = {s.digest for s in staged_all} | previous.keys()
                hasher = BackgroundHash(file)
                staged = _Staged(file)
                try:
                    _stage(
                        adapter,
                        staged,
                        on_bad_rows=mode,
                        settings=settings,
                        block_size=block_size,
                        display=display,
                        seen_before=functools.partial(_seen_before, hasher, loaded),
                    )
                    staged.digest = hasher.result()
                    if staged.digest in loaded:
                        raise _AlreadyLoaded
                except (_AlreadyLoaded, DataError) as exc:
                    staged.abort()
                    digest = hasher.result()
                    if isinstance(exc, DataError) and digest not in loaded:
                        raise  # a bad file is only excused when its content is loaded already
                    log.info("%s was already loaded (sha256 %s)", file, digest[:16])
                    summary.files.append(_already_loaded(file, digest, previous.get(digest, [])))
                    display.skipped(file)
                    continue
                except BaseException:
                    staged.abort()
                    hasher.cancel()
                    raise
                staged_all.append(staged)
            entries = _commit(adapter, staged_all, summary, source=source, origins=origins)
        except BaseException:
            for staged in staged_all:
                staged.abort()
            raise
    append_manifest(settings, entries)
    order = {file: i for i, file in enumerate(files)}
    summary.files.sort(key=lambda f: order[f.file])
    summary.seconds = time.perf_counter() - started
    return summary


def _already_loaded(file: Path, digest: str, entries: list[dict[str, Any]]) -> FileLoad:
    tables = tuple(TableLoad(e["table"], 0) for e in entries)
    return FileLoad(file, digest, 0, 0, already_loaded=True, seconds=0.0, tables=tables)


def _commit(
    adapter: Source,
    staged_all: list[_Staged],
    summary: LoadSummary,
    *,
    source: str,
    origins: dict[Path, str],
) -> list[dict[str, Any]]:
    """Rename every staged file into place; returns the manifest entries to append."""
    entries: list[dict[str, Any]] = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for staged in staged_all:
        name = f"{source}-{staged.digest[:16]}"
        rejected = staged.rejects.count if staged.rejects is not None else 0
        rejects_file = staged.rejects.commit(name) if staged.rejects is not None else None
        tables: list[TableLoad] = []
        for table in adapter.tables(staged.path):
            writer = staged.writers.get(table.name)
            landed = writer.commit(name) if writer is not None else None
            rows = writer.rows if writer is not None else 0
            tables.append(TableLoad(table.name, rows, landed))
            entries.append(
                {
                    "sha256": staged.digest,
                    "source_path": origins.get(staged.path, str(staged.path.resolve())),
                    "format": source,
                    "table": table.name,
                    "landed_file": None if landed is None else landed.name,
                    "rows_read": staged.rows_read,
                    "rows_landed": rows,
                    "rows_rejected": rejected,
                    "blank_lines": staged.blank_lines,
                    "loaded_at": now,
                }
            )
        summary.files.append(
            FileLoad(
                staged.path,
                staged.digest,
                staged.rows_read,
                rejected,
                already_loaded=False,
                seconds=staged.seconds,
                tables=tuple(tables),
                rejects_file=rejects_file,
                blank_lines=staged.blank_lines,
            )
        )
    return entries

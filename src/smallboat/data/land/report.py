"""What a load shows its user: progress bars while it runs, then a summary table.

`LoadSummary` is what `smallboat.data.land.load.load_path` returns: per source file the records
read and rejected, the time taken and the rate, and per canonical table the rows landed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from smallboat.data.sources.base import ReadStats


@dataclass(frozen=True)
class TableLoad:
    """Rows one source file landed in one canonical table."""

    table: str
    rows_landed: int
    landed_file: Path | None = None


@dataclass(frozen=True)
class FileLoad:
    """What loading one source file did: records read and rejected, and what each table got."""

    file: Path
    sha256: str
    rows_read: int
    """Source records read: CSV data rows or JSON lines (an OTTO line holds many events)."""
    rows_rejected: int
    already_loaded: bool
    seconds: float
    tables: tuple[TableLoad, ...] = ()
    rejects_file: Path | None = None
    blank_lines: int = 0
    """Blank lines skipped (not rows: not in rows_read)."""

    @property
    def rows_landed(self) -> int:
        return sum(t.rows_landed for t in self.tables)

    @property
    def rows_per_second(self) -> float | None:
        return self.rows_read / self.seconds if self.rows_read and self.seconds > 0 else None


@dataclass
class LoadSummary:
    """The outcome of one `load_path` call, printable with `render()`."""

    source: str
    files: list[FileLoad] = field(default_factory=list)
    seconds: float = 0.0
    ignored: list[str] = field(default_factory=list)
    """Files of the loaded folder (or zip) that are not files of the source format."""

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_landed(self) -> int:
        return sum(f.rows_landed for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    def landed(self, table: str) -> int:
        """Rows this load landed in `table`."""
        return sum(t.rows_landed for f in self.files for t in f.tables if t.table == table)

    def render(self) -> RichTable:
        """One line per file (read, rejected, time, rate), indented lines per table (landed)."""
        out = RichTable(title=f"data load ({self.source})", title_justify="left")
        out.add_column("file / table", overflow="fold")
        for name in ("read", "landed", "rejected", "seconds", "rows/s"):
            out.add_column(name, justify="right", no_wrap=True)
        for f in self.files:
            rate = f.rows_per_second
            out.add_row(
                f"{f.file.name} *" if f.already_loaded else f.file.name,
                f"{f.rows_read:,}",
                "",
                f"{f.rows_rejected:,}",
                f"{f.seconds:.2f}",
                "" if rate is None else f"{rate:,.0f}",
            )
            for t in f.tables:
                out.add_row(f"  {t.table}", "", f"{t.rows_landed:,}", "", "", "")
        rate = self.rows_read / self.seconds if self.seconds > 0 else 0.0
        out.add_section()
        out.add_row(
            "total",
            f"{self.rows_read:,}",
            f"{self.rows_landed:,}",
            f"{self.rows_rejected:,}",
            f"{self.seconds:.2f}",
            f"{rate:,.0f}",
        )
        notes = [f"rejected rows: {f.rejects_file}" for f in self.files if f.rejects_file]
        notes += [
            f"{f.file.name}: {f.blank_lines:,} blank line(s) skipped"
            for f in self.files
            if f.blank_lines
        ]
        if self.ignored:
            notes.append(f"ignored (not {self.source} files): {', '.join(self.ignored)}")
        if any(f.already_loaded for f in self.files):
            notes.append("* already loaded (same sha256): nothing landed again")
        if notes:
            out.caption = "\n".join(notes)
            out.caption_justify = "left"
        return out


class _RowsColumn(ProgressColumn):
    """Rows read so far and the rate, e.g. `1,204,000 rows  1,010,322 rows/s`."""

    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        elapsed = task.elapsed or 0.0
        rate = f"  {rows / elapsed:,.0f} rows/s" if rows and elapsed > 0 else ""
        return Text(f"{rows:,} rows{rate}", style="progress.data.speed")


class LoadDisplay:
    """The progress bar of each file (bytes and rows read, rows/s); inert when off."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, file: Path, size: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(f"load {file.name}", total=size, rows=0)

    def update(self, stats: ReadStats) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=stats.bytes_read, rows=stats.rows_read)

    def skipped(self, file: Path) -> None:
        if self._progress is not None and self._task is not None:
            description = f"skip {file.name} (already loaded)"
            self._progress.update(
                self._task, description=description, completed=file.stat().st_size
            )


@contextmanager
def load_display(enabled: bool) -> Iterator[LoadDisplay]:
    """Progress bars on stderr while loading (when enabled); they vanish when the load ends."""
    if not enabled:
        yield LoadDisplay(None)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        _RowsColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,  # the summary table replaces the bars; an error stays one line
    ) as progress:
        yield LoadDisplay(progress)

"""The landing manifest: which file contents were loaded, by sha256.

`landing/_manifest.jsonl` holds one JSON line per loaded file and table; `load_path` skips a file
whose bytes it lists. The digest is computed on a thread while the file loads (`BackgroundHash`).
Appends are fsync'd; a torn last line is repaired on the next read, a bad line in the middle is a
one-line error (`read_manifest`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.durable import fsync_dir
from smallboat.errors import DataError

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.jsonl"
_HASH_CHUNK = 8 << 20


def sha256_file(path: Path, *, stop: threading.Event | None = None) -> str:
    """Hex sha256 of the file's bytes, streamed in chunks (hashlib releases the GIL on each).

    Returns "" when `stop` is set before the end.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            if stop is not None and stop.is_set():
                return ""
            digest.update(chunk)
    return digest.hexdigest()


class BackgroundHash:
    """A file's sha256, computed on a thread while the file loads: hashing is ~5x faster than
    parsing, so it is known early in the load (a second load of the same bytes stops there) and
    costs no wall time of its own."""

    def __init__(self, path: Path) -> None:
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._digest = sha256_file(path, stop=self._stop)
        except BaseException as exc:
            self._error = exc

    def peek(self) -> str | None:
        """The digest if already computed, else None (never waits)."""
        return None if self._thread.is_alive() else self._digest

    def result(self) -> str:
        """The digest (waits for it)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def cancel(self) -> None:
        """Stop hashing (when the load is abandoned)."""
        self._stop.set()
        self._thread.join()


MANIFEST_LOCK = ".manifest.lock"
"""Held (flock) while the manifest is read, repaired or appended: a reader never mistakes an
append in progress for a torn line."""


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.landing_dir / MANIFEST_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_manifest(settings: Settings) -> list[dict[str, Any]]:
    """Every manifest entry: one per loaded file and table, oldest first.

    A torn LAST line (a load killed while appending, or a power loss before the append reached
    the disk) is cut off with a warning: its load's files are then simply loaded again next time
    (landing is idempotent by name). A bad line anywhere else is corruption, not a torn write:
    a DataError naming the file and line, and nothing is changed.
    """
    manifest = settings.landing_dir / MANIFEST_NAME
    if not manifest.is_file():
        return []
    with _locked(settings):
        data = manifest.read_bytes()
        lines = data.split(b"\n")
        # After a final newline, split leaves b"": a complete file. Anything else is a last line
        # without its newline: complete when it parses, torn when it does not.
        entries: list[dict[str, Any]] = []
        offset = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            entry = _parse(line) if line.strip() else None
            if line.strip() and entry is None:
                if last:
                    _cut_torn_tail(manifest, offset, len(line))
                    break
                raise DataError(
                    f"{manifest} line {number} is not a JSON object (the manifest is corrupt "
                    "in the middle, not torn at its end): restore the file from a backup, or "
                    "delete that line so the file it names is loaded again"
                )
            if entry is not None:
                entries.append(entry)
                if last:  # complete but unterminated: end it, so the next append starts clean
                    with manifest.open("ab") as f:
                        f.write(b"\n")
                        f.flush()
                        os.fsync(f.fileno())
            offset += len(line) + 1
    return entries


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _cut_torn_tail(manifest: Path, offset: int, size: int) -> None:
    log.warning(
        "%s: removed a torn last line (%d bytes, from a load that was interrupted while "
        "recording it); the files it named will be loaded again",
        manifest,
        size,
    )
    with manifest.open("r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())


def append_manifest(settings: Settings, entries: list[dict[str, Any]]) -> None:
    """Record a load's entries (one per file and table) at the end of the manifest, durably
    (fsync'd, and the folder too when the append created the file)."""
    if not entries:
        return
    text = "".join(json.dumps(e) + "\n" for e in entries)
    manifest = settings.landing_dir / MANIFEST_NAME
    with _locked(settings):
        created = not manifest.exists()
        with manifest.open("a", encoding="utf-8") as f:
            f.write(text)  # one write call: concurrent appenders do not interleave lines
            f.flush()
            os.fsync(f.fileno())
        if created:
            fsync_dir(settings.landing_dir)

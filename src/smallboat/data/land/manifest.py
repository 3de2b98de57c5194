"""The landing manifest: which file contents were loaded, by sha256.

`landing/_manifest.jsonl` holds one JSON line per loaded file and table; `load_path` skips a file
whose bytes it lists. The digest is computed on a thread while the file loads (`BackgroundHash`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from smallboat.config import Settings

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


def read_manifest(settings: Settings) -> list[dict[str, Any]]:
    """Every manifest entry: one per loaded file and table, oldest first."""
    manifest = settings.landing_dir / MANIFEST_NAME
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def append_manifest(settings: Settings, entries: list[dict[str, Any]]) -> None:
    """Record a load's entries (one per file and table) at the end of the manifest."""
    if not entries:
        return
    text = "".join(json.dumps(e) + "\n" for e in entries)
    with (settings.landing_dir / MANIFEST_NAME).open("a", encoding="utf-8") as f:
        f.write(text)  # one write call: concurrent appenders do not interleave lines

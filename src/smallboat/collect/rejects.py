"""The rejects log: every event the collector refused, with why, so a user can see what their
tracker sent wrong (`smallboat collect rejects`).

Refused events are not acknowledged data, so the log is kept simply: JSON lines in
`<home>/collect/rejects/rejects.jsonl`, appended by the running collector (no fsync). It is
bounded by SMALLBOAT_COLLECT_REJECTS_MAX_BYTES: when the current file passes half of it, it
becomes `rejects.1.jsonl` (the older one is dropped), so at most that much is kept, newest first.
Each event's own JSON is cut to MAX_EVENT_CHARS, so one huge event cannot fill the log.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smallboat.config import Settings

log = logging.getLogger(__name__)

MAX_EVENT_CHARS = 4_096
"""Most characters of a refused event's JSON kept in the log."""
CURRENT = "rejects.jsonl"
PREVIOUS = "rejects.1.jsonl"


def rejects_dir(settings: Settings) -> Path:
    return settings.collect_dir / "rejects"


@dataclass(frozen=True)
class Reject:
    """One refused event: when, which protocol and route, where in the request, why."""

    at_ms: int
    protocol: str
    route: str
    reason: str
    index: int | None = None
    message_id: str | None = None
    event: str | None = None
    """The event as sent (JSON, cut to MAX_EVENT_CHARS)."""


def event_text(event: Any) -> str:
    """An event's JSON as the log keeps it: cut to MAX_EVENT_CHARS, marked when cut."""
    try:
        text = json.dumps(event, ensure_ascii=False, default=str)
    except ValueError:
        text = repr(event)
    if len(text) > MAX_EVENT_CHARS:
        return text[:MAX_EVENT_CHARS] + f"... ({len(text):,} characters)"
    return text


class RejectsLog:
    """The append side (the collector) and the read side (the CLI) of the rejects log."""

    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings) -> RejectsLog:
        return cls(rejects_dir(settings), max_bytes=settings.collect_rejects_max_bytes)

    def add(self, rejects: list[Reject]) -> None:
        """Append `rejects`. A failure to write is logged, never raised: the request's answer
        (a 4xx naming the problem) matters more than this record of it."""
        if not rejects or self.max_bytes <= 0:
            return
        lines = "".join(
            json.dumps(asdict(r), ensure_ascii=False, separators=(",", ":")) + "\n" for r in rejects
        ).encode("utf-8", errors="replace")
        try:
            with self._lock:
                self.folder.mkdir(parents=True, exist_ok=True)
                current = self.folder / CURRENT
                size = current.stat().st_size if current.exists() else 0
                if size and size + len(lines) > self.max_bytes // 2:
                    current.replace(self.folder / PREVIOUS)
                with current.open("ab") as out:
                    out.write(lines)
        except OSError as exc:
            log.error("cannot record %d refused events in %s: %s", len(rejects), self.folder, exc)

    def read(self, *, last: int | None = None, protocol: str | None = None) -> list[Reject]:
        """The logged rejects, oldest first (the `last` newest ones when given)."""
        kept: deque[Reject] = deque(maxlen=last)
        for reject in self._scan():
            if protocol is None or reject.protocol == protocol:
                kept.append(reject)
        return list(kept)

    def _scan(self) -> Iterator[Reject]:
        for name in (PREVIOUS, CURRENT):
            path = self.folder / name
            if not path.exists():
                continue
            with path.open("rb") as lines:
                for line in lines:
                    try:
                        yield Reject(**json.loads(line))
                    except (ValueError, TypeError):
                        continue  # a line the collector is writing right now, or damaged

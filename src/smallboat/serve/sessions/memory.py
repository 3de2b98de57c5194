"""`MemorySessionStore`: the default session store, an LRU dict in the process, bounded by
count and by bytes (`serve.sessions`)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smallboat.errors import SmallboatError
from smallboat.features.incremental import SessionPrefix, SessionState, current_session
from smallboat.serve.sessions.base import (
    SessionTooLarge,
    require_positive,
    row_bytes,
)

logger = logging.getLogger(__name__)


@dataclass
class _Session:
    rows: deque[dict[str, Any]] = field(default_factory=deque)
    sizes: deque[int] = field(default_factory=deque)  # row_bytes of each row, same order
    nbytes: int = 0
    touched: float = 0.0
    state: SessionState | None = None


class MemorySessionStore:
    """Sessions in this process: an LRU dict, for one replica (or tests).

    Only `append` touches a session: it moves it to the most-recently-used end and restarts its
    TTL. So the dict's order is also last-append order, and every expired session sits at the
    least-recently-used end, where each append sweeps them off: memory stays bounded without a
    timer, at O(1) amortised cost per call. Not thread-safe: the service uses it from one event
    loop, and no method awaits between reading and writing a session.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_sessions: int,
        max_events: int,
        max_session_bytes: int = 1 << 20,
        max_bytes: int = 256 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        require_positive("ttl_seconds", "SMALLBOAT_SESSION_TTL_SECONDS", ttl_seconds)
        require_positive("max_sessions", "SMALLBOAT_SESSION_MAX_SESSIONS", max_sessions)
        require_positive("max_events", "SMALLBOAT_SESSION_MAX_EVENTS", max_events)
        require_positive(
            "max_session_bytes", "SMALLBOAT_SESSION_MAX_SESSION_BYTES", max_session_bytes
        )
        require_positive("max_bytes", "SMALLBOAT_SESSION_MAX_BYTES", max_bytes)
        if max_session_bytes > max_bytes:
            raise SmallboatError(
                f"session store: max_session_bytes {max_session_bytes:,} is above max_bytes "
                f"{max_bytes:,}; lower SMALLBOAT_SESSION_MAX_SESSION_BYTES or raise "
                "SMALLBOAT_SESSION_MAX_BYTES"
            )
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self.max_events = max_events
        self.max_session_bytes = max_session_bytes
        self.max_bytes = max_bytes
        self.nbytes = 0
        """Estimated bytes of every stored row (`row_bytes`), at most `max_bytes`."""
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # least recently appended first
        self.rebuilds = 0
        """Appends whose state was rebuilt from the raw rows (see the module's docstring)."""
        self.conflicts = 0
        """Always 0: one process's appends to a session take turns (the Protocol's counter)."""

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: _Session, now: float) -> bool:
        return now - session.touched > self.ttl_seconds

    def _live(self, session_id: str, now: float) -> _Session | None:
        session = self._sessions.get(session_id)
        if session is not None and self._expired(session, now):
            self._drop(session_id)
            return None
        return session

    def _drop(self, session_id: str) -> None:
        self.nbytes -= self._sessions.pop(session_id).nbytes

    async def append(
        self, session_id: str, rows: Sequence[Mapping[str, Any]], *, window: int
    ) -> SessionPrefix:
        if not rows:
            return await self.prefix(session_id, window=window)
        sizes = [row_bytes(row) for row in rows[-self.max_events :]]
        if sum(sizes) > self.max_session_bytes:
            raise SessionTooLarge(
                f"session {session_id[:80]!r}: these {len(rows)} events take about "
                f"{sum(sizes):,} bytes, more than a session may hold "
                f"({self.max_session_bytes:,}, SMALLBOAT_SESSION_MAX_SESSION_BYTES); send fewer "
                "or shorter events"
            )
        now = self._clock()
        session = self._live(session_id, now)
        if session is None:
            session = _Session()
            self._sessions[session_id] = session
        else:
            self._sessions.move_to_end(session_id)
        # Copies, so a caller mutating its dicts later cannot change what is stored.
        copies = [dict(row) for row in rows]
        session.rows.extend(copies[-self.max_events :])
        session.sizes.extend(sizes)
        session.nbytes += sum(sizes)
        self.nbytes += sum(sizes)
        while len(session.rows) > self.max_events or session.nbytes > self.max_session_bytes:
            session.rows.popleft()
            dropped = session.sizes.popleft()
            session.nbytes -= dropped
            self.nbytes -= dropped
        session.touched = now
        self._sweep(now)
        state = session.state
        if state is None or not state.apply(copies, window=window):
            if state is not None:
                self.rebuilds += 1
            state = session.state = SessionState.build(session.rows, window=window)
        return state.prefix()

    async def prefix(self, session_id: str, *, window: int) -> SessionPrefix:
        session = self._live(session_id, self._clock())
        if session is None:
            return SessionPrefix(None, [], has_rows=False)
        if session.state is None or session.state.window != window:
            session.state = SessionState.build(session.rows, window=window)
        return session.state.prefix()

    def _sweep(self, now: float) -> None:
        """Drop expired sessions, then the least recently used beyond `max_sessions` or
        `max_bytes` (never the most recent: it fits, as `max_session_bytes <= max_bytes`)."""
        while self._sessions:
            oldest_id, oldest = next(iter(self._sessions.items()))
            if not self._expired(oldest, now):
                break
            self._drop(oldest_id)
        while len(self._sessions) > self.max_sessions or self.nbytes > self.max_bytes:
            self._drop(next(iter(self._sessions)))

    async def get(self, session_id: str) -> list[dict[str, Any]]:
        session = self._live(session_id, self._clock())
        return [] if session is None else current_session(session.rows)

    async def delete(self, session_id: str) -> bool:
        session = self._live(session_id, self._clock())
        if session is None:
            return False
        self._drop(session_id)
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._sessions.clear()
        self.nbytes = 0

    def describe(self) -> str:
        return f"in-process ({len(self._sessions)} sessions, ttl {self.ttl_seconds:g} s)"

"""The prediction service's session store: the raw browsing events of each live session.

`POST /v1/sessions/{session_id}/events` appends a shopper's events and predicts on the whole
session so far, so the service keeps each session's rows between requests. It keeps them RAW, in
the canonical `browsing_events` columns: the feature code collapses them again on every
prediction, because events arrive out of order (a pageview may come before its detail).

Two stores share one async interface, `SessionStore`:

- `MemorySessionStore`, the default: an LRU dict in the process. Bounded by count and by bytes:
  sessions idle longer than the TTL end; at most `max_sessions` sessions and `max_bytes` in all
  (the least recently appended go first); at most `max_events` rows and `max_session_bytes` per
  session (its oldest rows go first). One append larger than `max_session_bytes` by itself is a
  `SessionTooLarge` (the service answers 413). Bytes are estimated as `row_bytes`: the text of a
  row plus a fixed `ROW_OVERHEAD_BYTES` for the dict and its objects.
- `RedisSessionStore`, when `Settings.redis_url` is set: one Redis list per session, so several
  replicas of the service share sessions. One round trip per append.

Both return only the session's current visit (`current_session`): a session whose event times
jump more than 30 minutes starts over, as sessions do in the data. Rows of the older visit stay
stored until the TTL or `max_events` removes them; dropping them at append time would make the
answer depend on arrival order (a late event can bridge the gap) and on the store.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

import orjson
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.schema import SESSION_GAP_MS

logger = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "smallboat:session:"
REDIS_SOCKET_TIMEOUT_S = 2.0
"""Connect and read timeout: far above a healthy round trip (< 1 ms on a LAN), short enough that
a hung Redis turns into a 503 rather than a request stuck behind it."""
REDIS_HEALTH_CHECK_S = 15
"""A pooled connection idle this long is PINGed before use, so one that a Redis restart broke
is replaced instead of failing the request."""

TIME = "server_timestamp_epoch_ms"
ROW_OVERHEAD_BYTES = 400
"""What one stored row costs in the process besides its text: the dict, its keys' slots, the int
and the string objects' headers (sys.getsizeof of a 6-key browsing row's parts: ~380 bytes)."""


def row_bytes(row: Mapping[str, Any]) -> int:
    """The in-process store's estimate of one row's memory: its strings' lengths plus a fixed
    overhead (a 8 KiB `hashed_url` costs 8 KiB, however few events carry it)."""
    return ROW_OVERHEAD_BYTES + sum(len(v) for v in row.values() if isinstance(v, str))


def current_session(
    rows: Sequence[Mapping[str, Any]], *, gap_ms: int = SESSION_GAP_MS, copy: bool = True
) -> list[dict[str, Any]]:
    """The rows of the session's current visit, in event-time order.

    Rows are sorted (stably) by event time and cut after the last gap of more than `gap_ms`
    between consecutive events: a session idle for 30 minutes ends, as in the Coveo data.
    `copy`: return copies of the rows (False: the rows themselves, for rows nobody else holds).
    """
    ordered: list[dict[str, Any]] = sorted(
        (dict(row) for row in rows) if copy else rows,  # type: ignore[arg-type]
        key=itemgetter(TIME),
    )
    for i in range(len(ordered) - 1, 0, -1):
        if ordered[i][TIME] - ordered[i - 1][TIME] > gap_ms:
            return ordered[i:]
    return ordered


class SessionStoreError(SmallboatError):
    """The session store cannot be reached or failed; the service answers 503."""


class SessionTooLarge(SmallboatError):
    """One append's rows are more than a session may hold; the service answers 413."""


class SessionStore(Protocol):
    """Raw browsing rows per session id, shared by the prediction service's requests."""

    async def append(
        self, session_id: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Add `rows` to the session; return its current visit after the append."""
        ...

    async def get(self, session_id: str) -> list[dict[str, Any]]:
        """The session's current visit; [] for a session not stored (or expired)."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Forget the session; True if it was stored."""
        ...

    async def ping(self) -> None:
        """Raise `SessionStoreError` if the store cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...

    def describe(self) -> str:
        """One line for logs and health checks; never contains a password."""
        ...


def _require_positive(name: str, env: str, value: float) -> None:
    if not value > 0:
        raise SmallboatError(
            f"session store: {name} must be positive, got {value!r}; set {env} to a value above 0"
        )


@dataclass
class _Session:
    rows: deque[dict[str, Any]] = field(default_factory=deque)
    sizes: deque[int] = field(default_factory=deque)  # row_bytes of each row, same order
    nbytes: int = 0
    touched: float = 0.0


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
        _require_positive("ttl_seconds", "SMALLBOAT_SESSION_TTL_SECONDS", ttl_seconds)
        _require_positive("max_sessions", "SMALLBOAT_SESSION_MAX_SESSIONS", max_sessions)
        _require_positive("max_events", "SMALLBOAT_SESSION_MAX_EVENTS", max_events)
        _require_positive(
            "max_session_bytes", "SMALLBOAT_SESSION_MAX_SESSION_BYTES", max_session_bytes
        )
        _require_positive("max_bytes", "SMALLBOAT_SESSION_MAX_BYTES", max_bytes)
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
        self, session_id: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        if not rows:
            return await self.get(session_id)
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
        session.rows.extend(dict(row) for row in rows[-self.max_events :])
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
        return current_session(session.rows)

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


def redact_url(url: str) -> str:
    """`url` with its password shown as ***: in the user info (all between `://` and the last
    `@`, so a password holding `/`, `#`, `?` or `@`, which no URL parser splits right, is hidden
    whole) and in a `password=` query value. Not a URL but holding `@`: all of it is hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url or "password" in url.lower() else url
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{host}"
    return f"{scheme}://" + _PASSWORD_VALUE.sub(r"\1***", rest)


_PASSWORD_VALUE = re.compile(r"(?i)([?&;]password=)[^&;]*")  # a "#" may be in it


class RedisSessionStore:
    """Sessions in Redis, shared by every replica: one list of compact JSON rows per session.

    An append is one MULTI/EXEC round trip: RPUSH the rows, LTRIM to the newest `max_events`,
    PEXPIRE the TTL, LRANGE the whole list. Every Redis failure becomes a `SessionStoreError`
    naming the URL (password hidden). Connections open on first use and belong to that event
    loop: use one store from one loop.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        max_events: int,
        socket_timeout: float = REDIS_SOCKET_TIMEOUT_S,
    ) -> None:
        _require_positive("ttl_seconds", "SMALLBOAT_SESSION_TTL_SECONDS", ttl_seconds)
        _require_positive("max_events", "SMALLBOAT_SESSION_MAX_EVENTS", max_events)
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.max_events = max_events
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._where = redact_url(url)
        try:
            pool = ConnectionPool.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=REDIS_HEALTH_CHECK_S,
                # One immediate retry on a broken connection (Redis restarted, idle connection
                # closed), none on a timeout: a second 2 s wait would only delay the 503.
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        except ValueError:
            # Not the parser's message: it quotes pieces of a password it split wrong.
            raise SessionStoreError(
                f"session store {self._where}: not a Redis URL; expected "
                "redis://[[user]:password@]host:port/db, with /, #, ? and @ in the password "
                "percent-encoded (%2F, %23, %3F, %40) (SMALLBOAT_REDIS_URL)"
            ) from None
        self._client = Redis.from_pool(pool)  # the client owns the pool and closes it

    def _key(self, session_id: str) -> str:
        return REDIS_KEY_PREFIX + session_id

    def _error(self, what: str, exc: BaseException) -> SessionStoreError:
        return SessionStoreError(
            f"session store {self._where}: {what} failed ({type(exc).__name__}: {exc}); "
            "check that Redis is running there and that SMALLBOAT_REDIS_URL points at it"
        )

    def _decode(self, key: str, values: Sequence[bytes | str]) -> list[dict[str, Any]]:
        """The stored rows; every element must be a JSON object."""
        raw = [v.encode() if isinstance(v, str) else v for v in values]
        # One orjson.loads over the joined list: ~7x faster than json.loads per row, which
        # matters for long sessions (1,000 rows: 0.3 ms instead of 2.1 ms). Anything odd is
        # re-checked row by row below (json: it also reads integers orjson refuses), for an
        # error message that shows the bad element.
        try:
            rows = orjson.loads(b"[" + b",".join(raw) + b"]")
        except ValueError:
            rows = None
        if (
            isinstance(rows, list)
            and len(rows) == len(raw)
            and all(isinstance(row, dict) for row in rows)
        ):
            return rows
        checked: list[dict[str, Any]] = []
        for value in raw:
            try:
                row = json.loads(value)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                raise SessionStoreError(
                    f"session store {self._where}: key {key!r} holds {value[:80]!r}, not a JSON "
                    "object; another program writes under the smallboat:session: prefix"
                )
            checked.append(row)
        return checked

    async def append(
        self, session_id: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        if not rows:
            return await self.get(session_id)
        key = self._key(session_id)
        # Compact JSON (orjson: the bytes of json.dumps(row, separators=(",", ":")) for these
        # rows' str, int and None values, ~10x faster).
        payloads = [orjson.dumps(row if type(row) is dict else dict(row)) for row in rows]
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *payloads)
                pipe.ltrim(key, -self.max_events, -1)
                pipe.pexpire(key, self._ttl_ms)
                pipe.lrange(key, 0, -1)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._error(f"appending to {key!r}", exc) from exc
        return current_session(self._decode(key, results[-1]), copy=False)

    async def get(self, session_id: str) -> list[dict[str, Any]]:
        key = self._key(session_id)
        try:
            values = await self._client.lrange(key, 0, -1)
        except (RedisError, OSError) as exc:
            raise self._error(f"reading {key!r}", exc) from exc
        return current_session(self._decode(key, values), copy=False)

    async def delete(self, session_id: str) -> bool:
        key = self._key(session_id)
        try:
            removed = await self._client.delete(key)
        except (RedisError, OSError) as exc:
            raise self._error(f"deleting {key!r}", exc) from exc
        return bool(removed)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise self._error("PING", exc) from exc

    async def close(self) -> None:
        # Best effort: shutting the service down must not fail because Redis already went away.
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            logger.warning("closing session store %s: %s", self._where, exc)

    def describe(self) -> str:
        return self._where


def open_session_store(settings: Settings) -> SessionStore:
    """Redis when `settings.redis_url` is set (replicas share sessions), else in-process."""
    if settings.redis_url:
        return RedisSessionStore(
            settings.redis_url,
            ttl_seconds=settings.session_ttl_seconds,
            max_events=settings.session_max_events,
        )
    return MemorySessionStore(
        ttl_seconds=settings.session_ttl_seconds,
        max_sessions=settings.session_max_sessions,
        max_events=settings.session_max_events,
        max_session_bytes=settings.session_max_session_bytes,
        max_bytes=settings.session_max_bytes,
    )

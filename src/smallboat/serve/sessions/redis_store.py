"""The prediction service's Redis session store (`RedisSessionStore`, used when
`Settings.redis_url` is set): one Redis list of raw rows and one state key per session, so several
replicas of the service share sessions (the interface and the in-process store: `serve.sessions`).

An append is one round trip in the common case: a Lua script (`_APPEND`) pushes the rows, trims the
list, renews both keys' TTL and writes the new `SessionState` only if the stored state is still the
one this process last wrote (its 16-hex-digit write token); otherwise it writes nothing and answers
the stored state, the rows are applied to that and the script sent again. Each process keeps the
last state it wrote per session (an LRU bounded by `STATE_CACHE_BYTES`), so a click of a session
this replica served last costs one script call; another's, two.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from smallboat.features.incremental import SessionPrefix, SessionState, current_session
from smallboat.serve.sessions.base import (
    ROW_OVERHEAD_BYTES,
    SessionStoreError,
    require_positive,
)

logger = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "smallboat:session:"
REDIS_STATE_PREFIX = "smallboat:session-state:"
"""The model state of a session (`SessionState.to_json`), after a 16-hex-digit write token."""
CAS_ATTEMPTS = 20
"""Tries of one append's compare-and-set script before it fails (503): after the first, each
failed try means another replica's append to the same session committed in between, so this
many in a row only happen under a storm of concurrent appends to one session."""
CAS_BACKOFF_S = 0.0005
"""A try that fails after the store's freshest state waits up to this long (at random) before
the next, each further one up to twice as long (the first retry, after a stale or guessed
state, goes at once: it carries the state the script answered)."""
STATE_CACHE_BYTES = 64 << 20
"""What each process's cache of the session states it last wrote to Redis may hold (estimated
like `row_bytes`: the state's JSON plus `ROW_OVERHEAD_BYTES` per raw tail row; a state above
1/64 of it is not cached). A state takes about 6 KB at 10 events and 25 KB from about 40 events
on (its tail holds two model windows, whatever the session's length), so this keeps the last
~2,500 (long) to ~10,000 (short) sessions a replica wrote: an append to one of them is one
round trip, to any other (written by another replica, or forgotten) two."""
REDIS_SOCKET_TIMEOUT_S = 2.0
"""Connect and read timeout: far above a healthy round trip (< 1 ms on a LAN), short enough that
a hung Redis turns into a 503 rather than a request stuck behind it."""
REDIS_HEALTH_CHECK_S = 15
"""A pooled connection idle this long is PINGed before use, so one that a Redis restart broke
is replaced instead of failing the request."""


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


_APPEND = """
local stored = redis.call('GET', KEYS[2])
if (stored and string.sub(stored, 1, 16) == ARGV[1])
    or (not stored and ARGV[1] == '' and redis.call('EXISTS', KEYS[1]) == 0) then
  for i = 5, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
local length = redis.call('LLEN', KEYS[1])
if not stored and length > 0 then
  stored = string.sub(ARGV[2], 1, 16) .. ' {}'
  redis.call('SET', KEYS[2], stored, 'PX', ARGV[3])
end
return {length, stored}
"""
"""One append, atomically: if the state key (KEYS[2]) still holds the write token the caller
expects (ARGV[1]; '' for a new session: no state and no list), push the rows (ARGV[5:], in
chunks: Lua's unpack takes a few thousand values at most) onto the list (KEYS[1]), trim it to
the newest ARGV[4], set both TTLs (ARGV[3] ms) and write the new state (ARGV[2], its first 16
bytes a fresh token); return 1. Otherwise push nothing and return {list length, stored state}
(the state left out when there is none) for the caller to apply its rows to and try again. A
list without a state (Redis evicted the state key, say) gets a placeholder state under the
fresh token, one that is no state (`SessionState.from_json` gives None): the callers then
rebuild the state from the list and compare-and-set it on that token, so two replicas doing so
at once cannot both write."""


@dataclass
class _Written:
    """The state this process last wrote for a session, and the token it wrote it under."""

    token: bytes
    state: SessionState
    nbytes: int  # estimated memory, like `row_bytes`: its JSON plus a row overhead per tail row


class RedisSessionStore:
    """Sessions in Redis, shared by every replica: one list of compact JSON rows per session and
    one key of its model state, after a write token.

    An append is normally ONE round trip, a Lua script (`_APPEND`, by EVALSHA): each process
    remembers the state it last wrote per session (`_written`, an LRU of `state_cache_bytes`),
    applies the rows to it, and sends the rows, the new state and the token it expects; Redis
    pushes, trims, sets both TTLs and writes the state only if the stored token is still that one.
    When another replica wrote in between (or this process has no state cached: a new session is
    guessed), the script changes nothing and answers the stored state instead: the rows are
    applied to it and the script sent again (`conflicts` counts these retries; applying a row twice
    is harmless: the state dedupes exact duplicates, or rebuilds from the list, which holds each
    row once). So the list and the state only ever change together, and an append's cost does not
    depend on the session's length; a rebuild (rare) reads the whole list. Every Redis failure
    becomes a `SessionStoreError` naming the URL (password hidden). Connections open on first
    use and belong to that event loop: use one store from one loop.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        max_events: int,
        socket_timeout: float = REDIS_SOCKET_TIMEOUT_S,
        state_cache_bytes: int = STATE_CACHE_BYTES,
    ) -> None:
        require_positive("ttl_seconds", "SMALLBOAT_SESSION_TTL_SECONDS", ttl_seconds)
        require_positive("max_events", "SMALLBOAT_SESSION_MAX_EVENTS", max_events)
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
        # EVALSHA; redis-py loads the script on the first NOSCRIPT (also after a Redis restart).
        self._append_script = self._client.register_script(_APPEND)
        self.rebuilds = 0
        """Appends whose state was rebuilt from the raw list (see the module's docstring)."""
        self.conflicts = 0
        """Appends sent again because another replica's append to the session came in between
        (its state is the one this process wrote last no more)."""
        self.state_cache_bytes = state_cache_bytes
        self._written: OrderedDict[str, _Written] = OrderedDict()  # least recently written first
        self._written_bytes = 0
        self._appending: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        """Per session with appends in flight here: a lock and how many hold or wait for it."""

    def _key(self, session_id: str) -> str:
        return REDIS_KEY_PREFIX + session_id

    def _state_key(self, session_id: str) -> str:
        return REDIS_STATE_PREFIX + session_id

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
        self, session_id: str, rows: Sequence[Mapping[str, Any]], *, window: int
    ) -> SessionPrefix:
        if not rows:
            return await self.prefix(session_id, window=window)
        # Appends to one session from this process go one at a time: concurrent ones would
        # only collide in the script (and retry, under load in a spiral), and the state cached
        # here is one per session; the token is for other replicas' appends.
        turn = self._appending.get(session_id)
        if turn is None:
            turn = self._appending[session_id] = (asyncio.Lock(), [0])
        lock, users = turn
        users[0] += 1
        try:
            async with lock:
                return await self._append(session_id, rows, window)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._appending[session_id]

    async def _append(
        self, session_id: str, rows: Sequence[Mapping[str, Any]], window: int
    ) -> SessionPrefix:
        key, state_key = self._key(session_id), self._state_key(session_id)
        copies = [row if type(row) is dict else dict(row) for row in rows]
        # Compact JSON (orjson: the bytes of json.dumps(row, separators=(",", ":")) for these
        # rows' str, int and None values, ~10x faster).
        payloads = [orjson.dumps(row) for row in copies]
        # Taken out while in use: `apply` changes it in place, and whatever fails (a conflict,
        # Redis) must leave no state here that Redis does not hold.
        written = self._forget(session_id)
        if written is not None and written.state.window == window:
            token, base, new, guessed = written.token, written.state, False, False
        else:  # not known here: guess a new session (one round trip when it is one)
            token, base, new, guessed = b"", None, True, True
        try:
            for attempt in range(CAS_ATTEMPTS):
                state = await self._applied(key, base, new, copies, window)
                blob = secrets.token_hex(8).encode() + b" " + state.to_json()
                reply = await self._append_script(
                    keys=[key, state_key],
                    args=[token, blob, self._ttl_ms, self.max_events, *payloads],
                )
                if reply == 1:
                    self._remember(session_id, _Written(blob[:16], state, len(blob)))
                    return state.prefix()
                if not guessed:
                    self.conflicts += 1
                if attempt:
                    # A random pause, growing with each conflict in a row: two replicas
                    # retrying in lockstep would otherwise keep colliding.
                    pause = CAS_BACKOFF_S * 2 ** min(attempt - 1, 5)
                    await asyncio.sleep(random.uniform(0, pause))
                guessed = False
                length, stored = reply[0], (reply[1] if len(reply) > 1 else None)
                token = b"" if stored is None else stored[:16]
                base = None if stored is None else SessionState.from_json(stored[17:])
                new = stored is None and length == 0
        except (RedisError, OSError) as exc:
            raise self._error(f"appending to {key!r}", exc) from exc
        raise SessionStoreError(
            f"session store {self._where}: {CAS_ATTEMPTS} appends to {key!r} by other replicas "
            "came in between this one's read and write; retry the request"
        )

    async def _applied(
        self,
        key: str,
        base: SessionState | None,
        new: bool,
        rows: list[dict[str, Any]],
        window: int,
    ) -> SessionState:
        """The state after `rows`: `base` (the stored state; None: none, or unreadable) with
        them applied, or rebuilt from the stored list and them (as the script will trim it)."""
        if base is None and new:
            base = SessionState(window)  # a new session: the list will hold these rows only
        if base is not None and base.apply(rows, window=window):
            return base
        self.rebuilds += 1
        stored = await self._rows(key)
        return SessionState.build((stored + rows)[-self.max_events :], window=window)

    def _remember(self, session_id: str, written: _Written) -> None:
        written.nbytes += ROW_OVERHEAD_BYTES * len(written.state.tail)
        if written.nbytes > self.state_cache_bytes // 64:
            return  # one huge state must not push out many ordinary ones
        self._written[session_id] = written
        self._written_bytes += written.nbytes
        while self._written_bytes > self.state_cache_bytes:
            _, oldest = self._written.popitem(last=False)
            self._written_bytes -= oldest.nbytes

    def _forget(self, session_id: str) -> _Written | None:
        written = self._written.pop(session_id, None)
        if written is not None:
            self._written_bytes -= written.nbytes
        return written

    async def _rows(self, key: str) -> list[dict[str, Any]]:
        return self._decode(key, await self._client.lrange(key, 0, -1))

    async def prefix(self, session_id: str, *, window: int) -> SessionPrefix:
        state_key = self._state_key(session_id)
        try:
            stored = cast("bytes | None", await self._client.get(state_key))  # no decoding
            state = None if stored is None else SessionState.from_json(stored[17:])
            if state is None or state.window != window:
                state = SessionState.build(await self._rows(self._key(session_id)), window=window)
        except (RedisError, OSError) as exc:
            raise self._error(f"reading {state_key!r}", exc) from exc
        return state.prefix()

    async def get(self, session_id: str) -> list[dict[str, Any]]:
        key = self._key(session_id)
        try:
            values = await self._client.lrange(key, 0, -1)
        except (RedisError, OSError) as exc:
            raise self._error(f"reading {key!r}", exc) from exc
        return current_session(self._decode(key, values), copy=False)

    async def delete(self, session_id: str) -> bool:
        key = self._key(session_id)
        self._forget(session_id)
        try:
            removed = await self._client.delete(key, self._state_key(session_id))
        except (RedisError, OSError) as exc:
            raise self._error(f"deleting {key!r}", exc) from exc
        return bool(removed)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise self._error("PING", exc) from exc

    async def close(self) -> None:
        self._written.clear()
        self._written_bytes = 0
        # Best effort: shutting the service down must not fail because Redis already went away.
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            logger.warning("closing session store %s: %s", self._where, exc)

    def describe(self) -> str:
        return self._where

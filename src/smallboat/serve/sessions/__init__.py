"""The prediction service's session store: each live session's raw events and model state.

`POST /v1/sessions/{session_id}/events` appends a shopper's events and predicts on the whole
session so far, so the service keeps each session between requests, twice:

- its raw rows, in the canonical `browsing_events` columns: a bounded record (the newest
  `max_events`), what `GET /v1/sessions/{id}` returns;
- its model state (`features.incremental.SessionState`): what the model needs of the current
  visit, updated by each append at a cost that does not grow with the session (a frozen carry of
  the older events and a raw tail of the recent ones). The state counts EVERY event of the visit,
  also those the raw record has dropped. The rare append it cannot absorb exactly (an event older
  than its frozen head, or one that may bridge a 30-minute gap to an older visit) rebuilds it from
  the raw record (`rebuilds` counts them): exact while the record still holds the whole visit; for
  a visit longer than `max_events` rows the rebuilt state covers the rows still recorded.

Two stores share one async interface, `SessionStore`:

- `MemorySessionStore`, the default: an LRU dict in the process. Bounded by count and by bytes:
  sessions idle longer than the TTL end; at most `max_sessions` sessions and `max_bytes` in all
  (the least recently appended go first); at most `max_events` rows and `max_session_bytes` per
  session (its oldest rows go first). One append larger than `max_session_bytes` by itself is a
  `SessionTooLarge` (the service answers 413). Bytes are estimated as `row_bytes`: the text of a
  row plus a fixed `ROW_OVERHEAD_BYTES` for the dict and its objects.
- `RedisSessionStore` (`redis_store`), when `Settings.redis_url` is set: one Redis list of raw
  rows and one state key per session, so several replicas of the service share sessions; an
  append is one round trip in the common case.

Both return only the session's current visit (`current_session`): a session whose event times
jump more than 30 minutes starts over, as sessions do in the data. Rows of the older visit stay
stored until the TTL or `max_events` removes them; dropping them at append time would make the
answer depend on arrival order (a late event can bridge the gap) and on the store.
"""

from __future__ import annotations

from smallboat.config import Settings
from smallboat.features.incremental import SessionPrefix, current_session
from smallboat.serve.sessions.base import (
    ROW_OVERHEAD_BYTES,
    SessionStore,
    SessionStoreError,
    SessionTooLarge,
    row_bytes,
)
from smallboat.serve.sessions.memory import MemorySessionStore
from smallboat.serve.sessions.redis_store import (
    REDIS_KEY_PREFIX,
    REDIS_STATE_PREFIX,
    STATE_CACHE_BYTES,
    RedisSessionStore,
    redact_url,
)

__all__ = [
    "REDIS_KEY_PREFIX",
    "REDIS_STATE_PREFIX",
    "ROW_OVERHEAD_BYTES",
    "STATE_CACHE_BYTES",
    "MemorySessionStore",
    "RedisSessionStore",
    "SessionPrefix",
    "SessionStore",
    "SessionStoreError",
    "SessionTooLarge",
    "current_session",
    "open_session_store",
    "redact_url",
    "row_bytes",
]


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

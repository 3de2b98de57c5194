"""The session store's pure parts: the current visit of a session's rows, URL redaction, wiring."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.schema import SESSION_GAP_MS
from smallboat.serve.sessions import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStoreError,
    current_session,
    open_session_store,
    redact_url,
)
from tests.landing_data import browsing_row

MIN = 60_000


def row(t: int, tag: str = "") -> dict[str, Any]:
    return browsing_row("s", t, url=tag or None)


def times(rows: list[dict[str, Any]]) -> list[int]:
    return [r["server_timestamp_epoch_ms"] for r in rows]


def test_empty_in_empty_out() -> None:
    assert current_session([]) == []


def test_sorts_by_event_time_stably() -> None:
    rows = [row(3000, "c"), row(1000, "a1"), row(2000, "b"), row(1000, "a2")]
    out = current_session(rows)
    assert [r["hashed_url"] for r in out] == ["a1", "a2", "b", "c"]


@pytest.mark.parametrize(
    ("gap", "starts_over"),
    [(SESSION_GAP_MS - 1, False), (SESSION_GAP_MS, False), (SESSION_GAP_MS + 1, True)],
)
def test_a_gap_of_more_than_30_minutes_starts_a_new_visit(gap: int, starts_over: bool) -> None:
    rows = [row(0), row(MIN), row(MIN + gap), row(2 * MIN + gap)]
    expected = [MIN + gap, 2 * MIN + gap] if starts_over else times(rows)
    assert times(current_session(rows)) == expected


def test_returns_the_rows_after_the_last_gap() -> None:
    hour = 60 * MIN
    rows = [row(5 * hour), row(0), row(2 * hour), row(2 * hour + MIN), row(5 * hour + 1)]
    assert times(current_session(rows)) == [5 * hour, 5 * hour + 1]


def test_a_late_event_can_bridge_a_gap() -> None:
    rows = [row(0), row(40 * MIN)]
    assert times(current_session(rows)) == [40 * MIN]
    assert times(current_session([*rows, row(20 * MIN)])) == [0, 20 * MIN, 40 * MIN]


def test_gap_is_a_parameter() -> None:
    rows = [row(0), row(1000), row(3000)]
    assert times(current_session(rows, gap_ms=1500)) == [3000]
    assert times(current_session(rows, gap_ms=2000)) == [0, 1000, 3000]


def test_returns_fresh_dicts_from_any_mapping() -> None:
    source = row(1000, "x")
    out = current_session([MappingProxyType(source)])
    assert out == [source]
    assert type(out[0]) is dict
    out[0]["hashed_url"] = "changed"
    assert source["hashed_url"] == "x"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@10.0.0.5:6380/2", "redis://:***@10.0.0.5:6380/2"),
        ("rediss://app:s3cret@cache.internal:6379/0", "rediss://app:***@cache.internal:6379/0"),
        ("redis://app@cache:6379/1", "redis://app@cache:6379/1"),
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=***"),
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redis_store_describes_itself_without_the_password() -> None:
    store = RedisSessionStore("redis://:s3cret@127.0.0.1:6379/0", ttl_seconds=60, max_events=10)
    assert store.describe() == "redis://:***@127.0.0.1:6379/0"


def test_a_url_that_is_not_redis_is_a_store_error() -> None:
    with pytest.raises(SessionStoreError, match=r"http://example\.com.*not a Redis URL"):
        RedisSessionStore("http://example.com", ttl_seconds=60, max_events=10)


@pytest.mark.parametrize(
    ("kwargs", "env"),
    [
        ({"ttl_seconds": 0, "max_sessions": 1, "max_events": 1}, "SESSION_TTL_SECONDS"),
        ({"ttl_seconds": 1, "max_sessions": 0, "max_events": 1}, "SESSION_MAX_SESSIONS"),
        ({"ttl_seconds": 1, "max_sessions": 1, "max_events": 0}, "SESSION_MAX_EVENTS"),
    ],
)
def test_memory_store_rejects_non_positive_limits(kwargs: dict[str, Any], env: str) -> None:
    with pytest.raises(SmallboatError, match=f"SMALLBOAT_{env}"):
        MemorySessionStore(**kwargs)


def test_open_session_store_picks_memory_without_a_redis_url() -> None:
    settings = Settings(
        redis_url=None, session_ttl_seconds=42, session_max_sessions=7, session_max_events=9
    )
    store = open_session_store(settings)
    assert isinstance(store, MemorySessionStore)
    assert (store.ttl_seconds, store.max_sessions, store.max_events) == (42, 7, 9)
    assert store.describe() == "in-process (0 sessions, ttl 42 s)"


def test_open_session_store_picks_redis_with_a_redis_url() -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:6399/3", session_ttl_seconds=42, session_max_events=9
    )
    store = open_session_store(settings)
    assert isinstance(store, RedisSessionStore)
    assert (store.ttl_seconds, store.max_events) == (42, 9)
    assert store.describe() == "redis://127.0.0.1:6399/3"

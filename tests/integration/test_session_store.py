"""The prediction service's session stores: in-process, and Redis on a real redis-server.

Shared behaviour runs against both stores; TTL and LRU are checked on the memory store with a
fake clock, sharing and failures on Redis.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import redis

from smallboat.schema import SESSION_GAP_MS
from smallboat.serve.sessions import (
    REDIS_KEY_PREFIX,
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    SessionStoreError,
    SessionTooLarge,
    row_bytes,
)
from tests.landing_data import browsing_row
from tests.redis_server import RedisServer

T0 = 1_622_505_600_000  # 2021-06-01, epoch ms: the Coveo data's timestamps are this large
MIN = 60_000

StoreFactory = Callable[..., SessionStore]


def row(t: int, *, sid: str = "s1", sku: str | None = None, url: str | None = "u") -> dict:
    """A canonical browsing row: a detail when `sku` is given, else a plain pageview."""
    return browsing_row(sid, t, "detail" if sku else None, sku, url)


def times(rows: list[dict[str, Any]]) -> list[int]:
    return [r["server_timestamp_epoch_ms"] - T0 for r in rows]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


WINDOW = 20  # the default model window (FeatureSpec.max_events)


async def append(
    store: SessionStore, session_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Append, then read the stored visit back (the raw rows `GET /v1/sessions/{id}` shows)."""
    await store.append(session_id, rows, window=WINDOW)
    return await store.get(session_id)


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Builds a store of the parametrized kind (call it inside the test's event loop)."""
    if request.param == "memory":

        def memory(*, ttl_seconds: float = 1800, max_events: int = 1000) -> SessionStore:
            return MemorySessionStore(
                ttl_seconds=ttl_seconds, max_sessions=1000, max_events=max_events
            )

        return memory
    url = request.getfixturevalue("redis_url")

    def redis_store(*, ttl_seconds: float = 1800, max_events: int = 1000) -> SessionStore:
        return RedisSessionStore(url, ttl_seconds=ttl_seconds, max_events=max_events)

    return redis_store


# Shared behaviour ------------------------------------------------------------------------------


def test_the_stored_visit_is_every_row_so_far_in_event_time_order(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        try:
            assert times(await append(store, "s1", [row(T0 + 1000)])) == [1000]
            # A pageview arriving after its detail, though it happened before.
            got = await append(store, "s1", [row(T0 + 3000, sku="p1"), row(T0 + 500)])
            assert times(got) == [500, 1000, 3000]
            assert got[2] == row(T0 + 3000, sku="p1")
            assert await store.get("s1") == got
            assert await append(store, "s1", []) == got
        finally:
            await store.close()

    run(scenario)


def test_get_and_delete(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        try:
            assert await store.get("s1") == []
            assert await store.delete("s1") is False
            await append(store, "s1", [row(T0), row(T0 + 1)])
            assert times(await store.get("s1")) == [0, 1]
            assert await store.delete("s1") is True
            assert await store.get("s1") == []
            assert await store.delete("s1") is False
            assert times(await append(store, "s1", [row(T0 + 5)])) == [5]
        finally:
            await store.close()

    run(scenario)


def test_a_gap_of_more_than_30_minutes_starts_a_new_visit(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        try:
            await append(store, "s1", [row(T0), row(T0 + MIN)])
            # Exactly 30 minutes idle: still the same visit.
            edge = MIN + SESSION_GAP_MS
            assert times(await append(store, "s1", [row(T0 + edge)])) == [0, MIN, edge]
            later = edge + SESSION_GAP_MS + 1
            assert times(await append(store, "s1", [row(T0 + later)])) == [later]
            assert times(await store.get("s1")) == [later]
            assert times(await append(store, "s1", [row(T0 + later + 7)])) == [later, later + 7]
        finally:
            await store.close()

    run(scenario)


def test_max_events_keeps_the_newest_appended(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store(max_events=3)
        try:
            # Appended newest event first, so "oldest appended" and "oldest event" differ.
            for t in (50, 40, 30, 20):
                await append(store, "s1", [row(T0 + t)])
            assert times(await append(store, "s1", [row(T0 + 10)])) == [10, 20, 30]
            # One batch larger than the limit keeps its own last rows.
            got = await append(store, "s1", [row(T0 + t) for t in (1, 2, 3, 4, 5)])
            assert times(got) == [3, 4, 5]
            assert times(await store.get("s1")) == [3, 4, 5]
        finally:
            await store.close()

    run(scenario)


def test_round_trip_preserves_none_ints_and_text_exactly(make_store: StoreFactory) -> None:
    big = 2**53 + 1  # not a float: a JSON number read back as float would come back changed
    rows = [
        row(big, url=None),
        row(big + 2, sku="sku-é/ü", url="h\"ash'ed\n"),
    ]

    async def scenario() -> None:
        store = make_store()
        try:
            assert await append(store, "s1", rows) == rows
            got = await store.get("s1")
            assert got == rows
            assert [type(r["server_timestamp_epoch_ms"]) for r in got] == [int, int]
            assert got[0]["server_timestamp_epoch_ms"] == big
            assert got[0]["product_action"] is None
            assert got[0]["product_sku_hash"] is None
            assert got[0]["hashed_url"] is None
        finally:
            await store.close()

    run(scenario)


def test_sessions_are_isolated(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        try:
            await append(store, "a", [row(T0, sid="a")])
            await append(store, "b", [row(T0 + 1, sid="b"), row(T0 + 2, sid="b")])
            assert [r["session_id_hash"] for r in await store.get("a")] == ["a"]
            assert [r["session_id_hash"] for r in await store.get("b")] == ["b", "b"]
            assert await store.delete("a") is True
            assert times(await store.get("b")) == [1, 2]
        finally:
            await store.close()

    run(scenario)


# Memory only: TTL and LRU ----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_sessions_expire_after_ttl_idle() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_seconds=10, max_sessions=100, max_events=100, clock=clock)

    async def scenario() -> None:
        await append(store, "a", [row(T0)])
        clock.now += 8
        await append(store, "a", [row(T0 + 1)])  # an append restarts the TTL...
        clock.now += 8
        assert times(await store.get("a")) == [0, 1]  # ...a get does not
        clock.now += 2.5
        assert await store.get("a") == []
        assert len(store) == 0
        assert await store.delete("a") is False
        # Appending to an expired session starts it over.
        await append(store, "b", [row(T0)])
        clock.now += 11
        assert times(await append(store, "b", [row(T0 + 5)])) == [5]

    run(scenario)


def test_memory_append_sweeps_expired_sessions_it_does_not_touch() -> None:
    clock = FakeClock()
    store = MemorySessionStore(ttl_seconds=10, max_sessions=100, max_events=100, clock=clock)

    async def scenario() -> None:
        for sid in ("a", "b", "c"):
            await append(store, sid, [row(T0, sid=sid)])
            clock.now += 4
        assert len(store) == 3  # a is 12 s idle now, b 8 s, c 4 s
        await append(store, "d", [row(T0, sid="d")])
        assert len(store) == 3  # a swept without being looked up
        assert store.describe() == "in-process (3 sessions, ttl 10 s)"
        clock.now += 100
        await append(store, "e", [row(T0, sid="e")])
        assert len(store) == 1

    run(scenario)


def test_memory_evicts_the_least_recently_used_session() -> None:
    store = MemorySessionStore(ttl_seconds=1800, max_sessions=2, max_events=100)

    async def scenario() -> None:
        await append(store, "a", [row(T0, sid="a")])
        await append(store, "b", [row(T0, sid="b")])
        await append(store, "a", [row(T0 + 1, sid="a")])  # a is now the most recently used
        await append(store, "c", [row(T0, sid="c")])
        assert len(store) == 2
        assert await store.get("b") == []
        assert times(await store.get("a")) == [0, 1]
        assert times(await store.get("c")) == [0]

    run(scenario)


def test_memory_store_keeps_copies_of_the_rows() -> None:
    store = MemorySessionStore(ttl_seconds=1800, max_sessions=2, max_events=100)
    mine = row(T0)

    async def scenario() -> None:
        got = await append(store, "a", [mine])
        mine["hashed_url"] = "changed by the caller"
        got[0]["hashed_url"] = "changed by the reader"
        assert (await store.get("a"))[0]["hashed_url"] == "u"

    run(scenario)


# Redis only: sharing, TTL on the key, failures --------------------------------------------------


def test_redis_replicas_share_sessions(redis_url: str) -> None:
    async def scenario() -> None:
        one = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=100)
        two = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=100)
        try:
            await append(one, "s1", [row(T0)])
            assert times(await append(two, "s1", [row(T0 + 2)])) == [0, 2]
            assert times(await append(one, "s1", [row(T0 + 1)])) == [0, 1, 2]
            assert times(await two.get("s1")) == [0, 1, 2]
            assert await two.delete("s1") is True
            assert await one.get("s1") == []
        finally:
            await one.close()
            await two.close()

    run(scenario)


def test_redis_key_is_a_compact_json_list_with_the_ttl(redis_url: str) -> None:
    async def scenario() -> None:
        store = RedisSessionStore(redis_url, ttl_seconds=90, max_events=100)
        try:
            await append(store, "s1", [row(T0), row(T0 + 1, sku="p")])
        finally:
            await store.close()

    run(scenario)
    client = redis.Redis.from_url(redis_url)
    try:
        key = REDIS_KEY_PREFIX + "s1"
        assert key == "smallboat:session:s1"
        assert 0 < client.pttl(key) <= 90_000
        values = client.lrange(key, 0, -1)
        assert values[0] == json.dumps(row(T0), separators=(",", ":")).encode()
        assert b" " not in values[1]
    finally:
        client.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("operation", ["append", "get", "delete", "ping"])
def test_unreachable_redis_is_a_session_store_error(operation: str) -> None:
    url = f"redis://:s3cret@127.0.0.1:{closed_port()}/0"
    shown = url.replace("s3cret", "***")

    async def scenario() -> None:
        store = RedisSessionStore(url, ttl_seconds=60, max_events=10)
        calls = {
            "append": lambda: append(store, "s1", [row(T0)]),
            "get": lambda: store.get("s1"),
            "delete": lambda: store.delete("s1"),
            "ping": lambda: store.ping(),
        }
        try:
            with pytest.raises(SessionStoreError) as caught:
                await calls[operation]()
        finally:
            await store.close()
        message = str(caught.value)
        assert shown in message
        assert "s3cret" not in message
        assert not isinstance(caught.value, redis.RedisError)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)

    run(scenario)


def test_redis_killed_mid_use_is_a_session_store_error() -> None:
    with RedisServer() as server:

        async def scenario() -> None:
            store = RedisSessionStore(server.url, ttl_seconds=60, max_events=10)
            try:
                assert times(await append(store, "s1", [row(T0)])) == [0]
                await store.ping()
                server.kill()
                for call in (
                    lambda: append(store, "s1", [row(T0 + 1)]),
                    lambda: store.get("s1"),
                    store.ping,
                ):
                    with pytest.raises(SessionStoreError, match=server.url):
                        await call()
            finally:
                await store.close()

        run(scenario)


def test_redis_password_urls_work_and_a_wrong_password_is_a_store_error() -> None:
    with RedisServer(password="s3cret") as server:
        wrong = server.url.replace("s3cret", "wrong-pw")

        async def scenario() -> None:
            good = RedisSessionStore(server.url, ttl_seconds=60, max_events=10)
            bad = RedisSessionStore(wrong, ttl_seconds=60, max_events=10)
            try:
                assert good.describe() == f"redis://:***@127.0.0.1:{server.port}/0"
                assert times(await append(good, "s1", [row(T0)])) == [0]
                with pytest.raises(SessionStoreError) as caught:
                    await bad.get("s1")
                assert "wrong-pw" not in str(caught.value)
                assert f"redis://:***@127.0.0.1:{server.port}/0" in str(caught.value)
            finally:
                await good.close()
                await bad.close()

        run(scenario)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ([b'{"a":1}', b"not json"], "not json"),
        ([b'{"a":1}', b'{"b":2},{"c":3}'], '{"b":2},{"c":3}'),  # valid JSON only once joined
        ([b"[1,2]"], "[1,2]"),
    ],
)
def test_redis_values_that_are_not_json_rows_are_a_store_error(
    redis_url: str, stored: list[bytes], shown: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.rpush(REDIS_KEY_PREFIX + "s1", *stored)
        client.set(REDIS_KEY_PREFIX + "s2", b"a string, not a list")
    finally:
        client.close()

    async def scenario() -> None:
        store = RedisSessionStore(redis_url, ttl_seconds=60, max_events=10)
        try:
            with pytest.raises(SessionStoreError, match="not a JSON object") as caught:
                await store.get("s1")
            assert shown in str(caught.value)
            with pytest.raises(SessionStoreError, match="WRONGTYPE"):
                await append(store, "s2", [row(T0)])
        finally:
            await store.close()

    run(scenario)


# Memory only: bytes budgets (issue 17 item 5) ---------------------------------------------------

BIG_URL = "u" * 8192  # the longest hashed_url the API takes


def test_memory_store_total_bytes_stay_within_budget_under_long_urls() -> None:
    """Thousands of sessions of 8 KiB URLs: the store's real memory (tracemalloc) stays near its
    byte budget, the least recently used sessions going first, not at count x row size."""
    budget = 2 << 20
    store = MemorySessionStore(
        ttl_seconds=1800,
        max_sessions=100_000,
        max_events=1000,
        max_session_bytes=256 << 10,
        max_bytes=budget,
    )

    async def scenario() -> int:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):  # 2,000 x 2 x 8 KiB = 32 MiB of text without the budget
            await append(store, f"s{i}", [row(T0, sid=f"s{i}", url=BIG_URL)] * 2)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return grown

    grown = asyncio.run(scenario())
    assert store.nbytes <= budget
    assert grown < 2 * budget, f"the store grew {grown:,} bytes for a {budget:,} budget"
    per_session = 2 * row_bytes(row(T0, sid="s1999", url=BIG_URL))  # every survivor's id: 5 chars
    assert len(store) == budget // per_session
    assert asyncio.run(store.get("s0")) == []  # the oldest went first
    assert len(asyncio.run(store.get("s1999"))) == 2


def test_memory_session_keeps_its_newest_rows_within_its_byte_budget() -> None:
    store = MemorySessionStore(
        ttl_seconds=1800, max_sessions=10, max_events=1000, max_session_bytes=64 << 10
    )

    async def scenario() -> None:
        for i in range(100):
            await append(store, "a", [row(T0 + i, url=BIG_URL)])
        kept = await store.get("a")
        assert times(kept) == list(range(100 - len(kept), 100))  # the newest, in order
        assert len(kept) == (64 << 10) // row_bytes(row(T0, url=BIG_URL))
        assert store.nbytes == sum(row_bytes(r) for r in kept)
        await store.delete("a")
        assert store.nbytes == 0

    run(scenario)


def test_memory_append_larger_than_a_session_may_hold_is_refused_whole() -> None:
    store = MemorySessionStore(
        ttl_seconds=1800, max_sessions=10, max_events=1000, max_session_bytes=64 << 10
    )

    async def scenario() -> None:
        await append(store, "a", [row(T0)])
        with pytest.raises(SessionTooLarge, match="SMALLBOAT_SESSION_MAX_SESSION_BYTES"):
            await append(store, "a", [row(T0 + i, url=BIG_URL) for i in range(1, 10)])
        assert times(await store.get("a")) == [0]  # nothing of the refused append kept

    run(scenario)

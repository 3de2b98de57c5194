"""The session stores' incremental model state on real inputs: the in-process store and Redis (a
real redis-server), against encoding each session's whole current visit; two replicas appending
at once; an append's cost against the session's length; the served prediction."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from typing import Any, cast

import httpx
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallboat.features.incremental import TAIL_WINDOWS, SessionPrefix, SessionState
from smallboat.serve.metrics import ServeMetrics
from smallboat.serve.scoring import load_model, score_batch
from smallboat.serve.server import ServeProcess
from smallboat.serve.sessions import (
    REDIS_KEY_PREFIX,
    REDIS_STATE_PREFIX,
    STATE_CACHE_BYTES,
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    current_session,
)
from tests.landing_data import browsing_row
from tests.trained_service import Trained
from tests.unit.test_incremental import (
    SPEC,
    assert_prefix_is_the_whole_visit,
    chunks,
    random_stream,
)

T0 = 1_622_505_600_000
WINDOW = SPEC.max_events


def make(kind: str, redis_url: str | None, *, max_events: int = 1000) -> SessionStore:
    if kind == "memory":
        return MemorySessionStore(ttl_seconds=1800, max_sessions=1000, max_events=max_events)
    assert redis_url is not None
    # "redis-uncached": no state remembered between appends, so every append takes the path of
    # a session another replica wrote last (the script answers the stored state; sent again).
    cache = 0 if kind == "redis-uncached" else STATE_CACHE_BYTES
    return RedisSessionStore(
        redis_url, ttl_seconds=1800, max_events=max_events, state_cache_bytes=cache
    )


@pytest.fixture(params=["memory", "redis", "redis-uncached"])
def kind_and_url(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    url = request.getfixturevalue("redis_url") if request.param != "memory" else None
    return request.param, url


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_every_append_leaves_the_state_of_the_whole_visit(
    kind_and_url: tuple[str, str | None], seed: int
) -> None:
    """Random raw streams appended in random chunks: after each append the store's prefix
    encodes exactly as the session's current visit of every row appended so far."""
    kind, url = kind_and_url
    rng = random.Random(seed)
    session_id = f"prop-{uuid.uuid4().hex}"

    async def scenario() -> None:
        store = make(kind, url)
        appended: list[dict[str, Any]] = []
        try:
            for chunk in chunks(rng, random_stream(rng)):
                prefix = await store.append(session_id, chunk, window=WINDOW)
                appended += chunk
                assert_prefix_is_the_whole_visit(prefix, appended)
                assert await store.get(session_id) == current_session(appended)
            assert await store.prefix(session_id, window=WINDOW) == prefix
        finally:
            await store.close()

    asyncio.run(scenario())


def in_order(n: int, *, start: int = 0) -> list[dict[str, Any]]:
    """`n` events a second apart: details, adds and removes of a few SKUs, pageviews between."""
    kinds = [("detail", "A"), (None, None), ("add", "B"), ("detail", "C"), ("remove", "B")]
    rows = []
    for i in range(start, start + n):
        action, sku = kinds[i % len(kinds)]
        rows.append(browsing_row("s", T0 + i * 1000, action, sku, f"u{i % 7}"))
    return rows


def test_the_state_counts_every_event_of_the_visit_the_raw_record_the_newest(
    kind_and_url: tuple[str, str | None],
) -> None:
    """With more events than `max_events`, the raw record keeps the newest; the prediction's
    state still counts every event of the visit (the documented definition)."""
    kind, url = kind_and_url
    rows = in_order(300)

    async def scenario() -> None:
        store = make(kind, url, max_events=50)
        try:
            for i in range(0, len(rows), 7):
                prefix = await store.append("long", rows[i : i + 7], window=WINDOW)
            assert_prefix_is_the_whole_visit(prefix, rows)
            assert prefix.n_events == 300
            assert await store.get("long") == rows[-50:]
            assert store.rebuilds == 0
        finally:
            await store.close()

    asyncio.run(scenario())


def test_two_replicas_appending_to_one_session_at_once_both_count(redis_url: str) -> None:
    """Two stores (two replicas' connection pools) append to one session concurrently: the
    compare-and-set retries the loser, so the state holds every row of both."""
    rows = in_order(160)

    async def scenario() -> None:
        one = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)
        two = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)

        async def feed(store: RedisSessionStore, mine: list[dict[str, Any]]) -> None:
            for row in mine:
                await store.append("shared", [row], window=WINDOW)

        try:
            await asyncio.gather(feed(one, rows[0::2]), feed(two, rows[1::2]))
            prefix = await one.prefix("shared", window=WINDOW)
            assert_prefix_is_the_whole_visit(prefix, rows)
            assert prefix.n_events == 160
            assert one.conflicts + two.conflicts > 0, "the appends never overlapped"
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def stored_state(client: redis.Redis, session_id: str) -> tuple[list[dict[str, Any]], SessionState]:
    """What Redis holds for the session: its raw rows and its state (read back, not cached)."""
    rows = [json.loads(v) for v in client.lrange(REDIS_KEY_PREFIX + session_id, 0, -1)]
    blob = cast("bytes | None", client.get(REDIS_STATE_PREFIX + session_id))
    assert blob is not None
    assert re.fullmatch(rb"[0-9a-f]{16} ", blob[:17]), blob[:17]  # the write token
    state = SessionState.from_json(blob[17:])
    assert state is not None
    return rows, state


@pytest.mark.parametrize("seed", range(12))
def test_two_replicas_interleaving_appends_leave_the_state_of_the_stored_list(
    redis_url: str, seed: int
) -> None:
    """Two stores (two replicas, each remembering the states it wrote) append a random stream
    to one session in turns of random length, and at times both at once: after every turn the
    state in Redis, and each store's prefix, encode exactly as a rebuild from the list Redis
    holds, which holds every row appended (once each)."""
    rng = random.Random(seed)
    window = SPEC.max_events  # a small window: heads freeze often
    client = redis.Redis.from_url(redis_url)

    async def scenario() -> None:
        stores = [RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000) for _ in "ab"]
        appended: list[dict[str, Any]] = []
        try:
            parts = chunks(rng, random_stream(rng))
            while parts:
                if len(parts) > 1 and rng.random() < 0.3:  # one chunk on each store, at once
                    first, second = parts.pop(0), parts.pop(0)
                    await asyncio.gather(
                        stores[0].append("shared", first, window=window),
                        stores[1].append("shared", second, window=window),
                    )
                    appended += first + second
                else:
                    store = rng.choice(stores)
                    for _ in range(rng.randint(1, 4)):
                        if parts:
                            part = parts.pop(0)
                            await store.append("shared", part, window=window)
                            appended += part
                rows, state = stored_state(client, "shared")
                assert sorted(map(repr, rows)) == sorted(map(repr, appended))
                assert_prefix_is_the_whole_visit(state.prefix(), rows)
                for store in stores:
                    assert_prefix_is_the_whole_visit(
                        await store.prefix("shared", window=window), rows
                    )
        finally:
            for store in stores:
                await store.close()

    try:
        asyncio.run(scenario())
    finally:
        client.close()


def commands_since(client: redis.Redis, reset: bool = False) -> dict[str, int]:
    """Calls per Redis command since the last reset (INFO commandstats), this client's own
    CONFIG and INFO left out; `reset`: start counting again."""
    calls = {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in client.info("commandstats").items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }
    if reset:
        client.config_resetstat()
    return calls


def test_an_append_to_a_session_this_replica_wrote_last_is_one_script_call(
    redis_url: str,
) -> None:
    """The common case is one round trip: one EVALSHA (the commands Redis counts beside it run
    inside the script). A session another replica wrote last, or one not remembered here, takes
    a second (the script answers the stored state); a Redis that lost its scripts (SCRIPT FLUSH,
    a restart) gets the script loaded again."""
    client = redis.Redis.from_url(redis_url)
    written = {"get": 1, "rpush": 1, "ltrim": 1, "pexpire": 1, "set": 1}  # one script's writes

    def times(n: int, commands: dict[str, int]) -> dict[str, int]:
        return {name: n * calls for name, calls in commands.items()}

    async def scenario() -> None:
        one = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)
        two = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)
        try:
            await one.append("s", in_order(1), window=WINDOW)  # loads the script
            await two.append("w", in_order(1), window=WINDOW)  # two's connection opened
            commands_since(client, reset=True)
            await one.append("n", in_order(5), window=WINDOW)  # a new session: guessed right
            for i in range(1, 60):
                await one.append("s", in_order(1, start=i), window=WINDOW)
            assert commands_since(client, reset=True) == {
                "evalsha": 60,
                **times(60, written),
                "exists": 1,
            }
            stale = {"evalsha": 2, **written, "get": 2, "llen": 1}
            await two.append("s", in_order(1, start=60), window=WINDOW)  # not known to two
            assert commands_since(client, reset=True) == stale
            await one.append("s", in_order(1, start=61), window=WINDOW)  # two wrote it last
            assert commands_since(client, reset=True) == stale
            assert (one.conflicts, two.conflicts) == (1, 0)  # a guess that failed is none
            client.script_flush()
            commands_since(client, reset=True)
            await one.append("s", in_order(1, start=62), window=WINDOW)
            assert commands_since(client) == {"evalsha": 2, "script|load": 1, **written}
            rows, state = stored_state(client, "s")
            assert rows == in_order(63)
            assert state.prefix() == await two.prefix("s", window=WINDOW)
            assert one.rebuilds == two.rebuilds == 0
        finally:
            await one.close()
            await two.close()

    try:
        asyncio.run(scenario())
    finally:
        client.close()


@pytest.mark.parametrize("cached", [True, False])
def test_a_list_whose_state_is_gone_gets_its_state_rebuilt(redis_url: str, cached: bool) -> None:
    """The state key evicted (or deleted) while the list stays: the next append, from the store
    that wrote the state or from another, rebuilds the state from the list and its new rows."""
    client = redis.Redis.from_url(redis_url)

    async def scenario() -> None:
        one = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)
        two = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)
        try:
            for i in range(0, 30, 3):
                await one.append("s", in_order(3, start=i), window=WINDOW)
            assert client.delete(REDIS_STATE_PREFIX + "s") == 1
            store = one if cached else two
            prefix = await store.append("s", in_order(2, start=30), window=WINDOW)
            assert store.rebuilds == 1
            rows, state = stored_state(client, "s")
            assert rows == in_order(32)
            assert_prefix_is_the_whole_visit(prefix, rows)
            assert state.prefix() == prefix
            await one.append("s", in_order(1, start=32), window=WINDOW)
            assert_prefix_is_the_whole_visit(await two.prefix("s", window=WINDOW), in_order(33))
        finally:
            await one.close()
            await two.close()

    try:
        asyncio.run(scenario())
    finally:
        client.close()


def test_an_append_reads_and_encodes_as_much_at_1000_events_as_at_100(redis_url: str) -> None:
    """An append's work does not grow with the session: the bytes Redis sends back (its INFO
    `total_net_output_bytes`) and the events encoded are the same at 100 and 1,000 events."""
    window = 20  # the default model window
    client = redis.Redis.from_url(redis_url)

    async def scenario() -> dict[int, tuple[float, int]]:
        store = RedisSessionStore(redis_url, ttl_seconds=1800, max_events=1000)
        out = {}
        try:
            for length in (100, 1000):
                sid = f"len-{length}"
                for i in range(0, length, 100):
                    await store.append(sid, in_order(min(100, length - i), start=i), window=window)
                sent = client.info("stats")["total_net_output_bytes"]
                encoded = 0
                for k in range(20):
                    prefix = await store.append(sid, in_order(1, start=length + k), window=window)
                    encoded = max(encoded, len(prefix.events))
                per_append = (client.info("stats")["total_net_output_bytes"] - sent) / 20
                out[length] = (per_append, encoded)
            assert store.rebuilds == 0
        finally:
            await store.close()
        return out

    try:
        measured = asyncio.run(scenario())
        stored = sum(len(v) for v in client.lrange(REDIS_KEY_PREFIX + "len-1000", 0, -1))
        state = len(client.get(REDIS_STATE_PREFIX + "len-1000") or b"")
    finally:
        client.close()
    (bytes_100, encoded_100), (bytes_1000, encoded_1000) = measured[100], measured[1000]
    assert bytes_1000 <= 1.1 * bytes_100, measured
    assert bytes_1000 < stored / 10, (bytes_1000, stored)  # nowhere near the whole list
    assert bytes_1000 < 2 * state, (bytes_1000, state)  # the state blob, once
    assert encoded_100 == encoded_1000 <= TAIL_WINDOWS * window + 1, measured


def test_the_memory_store_encodes_as_much_at_1000_events_as_at_10() -> None:
    async def scenario() -> dict[int, int]:
        store = MemorySessionStore(ttl_seconds=1800, max_sessions=10, max_events=1000)
        out = {}
        for length in (10, 1000):
            await store.append(f"len-{length}", in_order(length), window=20)
            prefix = await store.append(f"len-{length}", in_order(1, start=length), window=20)
            out[length] = len(prefix.events)
        return out

    encoded = asyncio.run(scenario())
    assert encoded[10] == 11  # a short session is encoded whole
    assert encoded[1000] <= TAIL_WINDOWS * 20 + 1, encoded


def long_visits(trained: Trained, n: int, seed: int) -> list[list[dict[str, Any]]]:
    """Real test sessions strung together into long visits (each continued after a few seconds:
    one visit of 100-200 raw rows), their purchases left out (a purchase ends the prefix; the
    unit property test covers it), rows slightly out of arrival order."""
    rng = random.Random(seed)
    sessions = [
        [r for r in rows if r["product_action"] != "purchase"]
        for rows in trained.session_rows.values()
    ]
    sessions = [rows for rows in sessions if rows]
    visits = []
    for _ in range(n):
        rows: list[dict[str, Any]] = []
        clock = T0
        length = rng.randint(100, 200)
        while len(rows) < length:
            source = rng.choice(sessions)
            start = source[0]["server_timestamp_epoch_ms"]
            for row in source:
                gap = min(row["server_timestamp_epoch_ms"] - start, 20 * 60_000)
                rows.append(row | {"server_timestamp_epoch_ms": clock + gap})
            clock = rows[-1]["server_timestamp_epoch_ms"] + rng.choice([1_000, 5_000, 60_000])
        for _ in range(len(rows) // 10):
            i = rng.randrange(len(rows) - 3)
            rows.insert(i + rng.randint(1, 3), rows.pop(i))
        visits.append(rows)
    return visits


def test_served_predictions_of_long_sessions_equal_encoding_them_whole(trained: Trained) -> None:
    """The trained champion scores a stored session's prefix (carry + recent events) exactly as
    the session's whole current visit: probability, next items, counts and the log's summary."""
    model = load_model(trained.settings)
    window = model.predictor.spec.max_events
    checked = carried = 0

    async def scenario() -> None:
        nonlocal checked, carried
        store = MemorySessionStore(ttl_seconds=1800, max_sessions=100, max_events=1000)
        rng = random.Random(7)
        for v, rows in enumerate(long_visits(trained, 6, seed=3)):
            appended: list[dict[str, Any]] = []
            for chunk in chunks(rng, rows):
                prefix = await store.append(f"v{v}", chunk, window=window)
                appended += chunk
                [[incremental], [whole]] = score_batch(
                    model, [[prefix], [current_session(appended)]]
                ).outcomes
                assert incremental == whole
                checked += incremental.prediction.purchase_probability is not None
                carried += prefix.carry is not None

    asyncio.run(scenario())
    assert checked > 200 and carried > 100, (checked, carried)


def test_scoring_a_prefix_without_rows_says_so(trained: Trained) -> None:
    model = load_model(trained.settings)
    [[empty]] = score_batch(model, [[SessionPrefix(None, [], has_rows=False)]]).outcomes
    assert empty.prediction.purchase_probability is None
    assert empty.prediction.note == "the session has no events: nothing to predict from"
    assert np.isclose(empty.prediction.events_in_session, 0)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_long_session_fed_click_by_click_over_http_matches_predicting_it_whole(
    trained: Trained, store: str, request: pytest.FixtureRequest
) -> None:
    """The session route on a 100+ event visit (its state frozen into a carry many times) answers
    what `POST /v1/predict` answers for the whole visit so far, after every append."""
    env = {"SMALLBOAT_REDIS_URL": request.getfixturevalue("redis_url")} if store == "redis" else {}
    [rows] = long_visits(trained, 1, seed=11)
    rows = [r | {"session_id_hash": None} for r in rows]
    rng = random.Random(5)
    with (
        ServeProcess(trained.settings.home_dir, env=env) as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
    ):
        appended: list[dict[str, Any]] = []
        for chunk in chunks(rng, rows):
            r = client.post("/v1/sessions/long/events", json={"events": chunk})
            assert r.status_code == 200, r.text
            appended += chunk
            whole = client.post("/v1/predict", json={"events": current_session(appended)})
            assert r.json() == whole.json() | {"session_id": "long"}
        assert r.json()["events_in_session"] > TAIL_WINDOWS * 20


def test_rebuilds_are_counted_on_the_metrics_page() -> None:
    """A row older than the frozen head rebuilds the state; `/metrics` (the service's registry)
    shows it, and a store without replicas reports no conflicts."""

    async def scenario() -> MemorySessionStore:
        store = MemorySessionStore(ttl_seconds=1800, max_sessions=10, max_events=1000)
        await store.append("s", in_order(100), window=20)
        assert store.rebuilds == 0
        await store.append("s", in_order(1, start=3), window=20)  # far older than the tail
        return store

    store = asyncio.run(scenario())
    metrics = ServeMetrics()
    metrics.watch_sessions(lambda: store.rebuilds, lambda: store.conflicts)
    text = metrics.render().decode()
    assert "smallboat_session_state_rebuilds 1.0" in text
    assert "smallboat_session_state_conflicts 0.0" in text

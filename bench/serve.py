"""Benchmark the prediction service over loopback: latency at fixed rates, saturated throughput,
and the share of a request spent in the model's forward pass.

This process is the load generator (asyncio and the lean `smallboat.web.wire` client, bodies
JSON-encoded before the clock starts); `smallboat serve` runs in a child process (`ServeProcess`)
on a trained home: the registry's champion, the default model config (5 members, GRU 32: what
production serves). Request bodies are real sessions of the home's warehouse without a purchase,
padded or cut to exactly 20 events with their real SKUs and time gaps.

f. the floor: a bare FastAPI app on the same uvicorn options (uvloop, httptools) that parses the
   same bodies and answers a fixed JSON, at the same points as part a; the results print each of
   part a's figures as a ratio to it (the machine is shared: ratios in one run are what compare).
m. the floor with the model: the same bare FastAPI app that also runs the champion's serving
   graph (ONNX Runtime, as the service runs it) on one real session encoded beforehand, once per
   request, at the same points: HTTP plus the model's own arithmetic, with none of the service's
   work around it (parsing the events, encoding, batching, the prediction log, the answer).
   What the service spends above it is what its Python costs; what the targets ask below it
   no change to that work can reach.
a. `POST /v1/predict`, one 20-event session per request, in-process session store:
   - open-loop at fixed rates (default 100, 300, 600/s): request i is sent at t0 + i/rate whatever
     the earlier answers do (a connection pool that grows on demand), and its latency counts from
     that SCHEDULED time, so a stalled server cannot hide its queue (no coordinated omission).
     Targets (issue 16): p99 <= 2 ms at 300/s, <= 5 ms at 1,000/s.
   - closed-loop at fixed concurrency (default 1, 8, 32): C workers, each sending its next
     request when the previous one answers. Target at C=1: p50 <= 0.6 ms, p99 <= 1.5 ms, and
     <= 3x the floor. Also: cold start (spawn to /readyz 200).
w. the same on `smallboat serve --workers 2` with sessions in Redis: saturated predictions/s
   (target >= 5,000/s), the best of closed loops at 32, 64 and 128 clients (more requests in
   flight make larger batches; the floor on as many workers at the same points), and the
   open-loop rates of part a on the workers (one process is near its saturation at 1,000/s).
b. `POST /v1/sessions/{id}/events`, one event per request, on long sessions: 50 live sessions
   first grown to 1,000 events (appends of 100), then appended to in turn. With the Redis store (a
   real `redis-server` on 127.0.0.1, a second service with SMALLBOAT_REDIS_URL): open-loop at
   `--session-rates` (default 300 and 1,000/s). Target: p99 <= 3 ms at 300/s. And the service's CPU
   per append (closed loop, one client) on sessions of about 10 events (2,000 sessions grown to 10)
   against sessions of 1,000, with the in-process store and with Redis: an append's cost should
   not depend on the session's length.
c. The forward pass's share of latency: the same bundle called in this process as the service
   calls it (its serving graph on ONNX Runtime, one thread; encode and forward timed apart,
   median and p99) next to the service's own Prometheus counters scraped around each point
   (mean forward pass per batch, mean sessions per batch, and the forward pass as a share of
   the mean request latency).

Every point also reports errors (non-2xx answers and transport failures, by kind) and the CPU of
the generator and of the service (cores = CPU seconds / wall seconds): the machine has 2 cores and
both share them. The first run trains a model (~30k synthetic sessions, about a minute); pass the
printed home to --home to reuse it. It exits 0 whatever the results: it is a benchmark.

    flock /tmp/smallboat-bench.lock .venv/bin/python bench/serve.py            # 30 s per point
    flock /tmp/smallboat-bench.lock .venv/bin/python bench/serve.py --quick    # 5 s per point
    flock /tmp/smallboat-bench.lock .venv/bin/python bench/serve.py --home /tmp/sb-home --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from smallboat.config import Settings
from smallboat.web.wire import Connection, Endpoint

# Issue 16's targets (2 cores, loopback, both heads, prediction log on).
PREDICT_RATE, PREDICT_P99_MS = 300.0, 2.0
FAST_RATE, FAST_P99_MS = 1_000.0, 5.0
ONE_CLIENT_P50_MS, ONE_CLIENT_P99_MS, FLOOR_RATIO = 0.6, 1.5, 3.0
SATURATED_TARGET = 5_000.0  # with --workers 2 (part w)
SESSIONS_RATE, SESSIONS_P99_MS = 300.0, 3.0
EVENTS = 20  # the "sessions of 20 events" (and the model's window L)
MIN_REAL_EVENTS = 5  # shorter real sessions would be mostly padding
REQUEST_SESSIONS = 2_000  # distinct request bodies, cycled
LIVE_SESSIONS = 50  # part b: sessions growing at once (each gets an event every 50/rate s)
GROWN_EVENTS = 1_000  # part b: the long sessions' length before the point
SHORT_EVENTS, SHORT_SESSIONS = 10, 2_000  # part b's CPU point on short sessions
GROW_CHUNK = 100  # events per append while growing the sessions
# The default architecture with fewer epochs: serving cost depends on the shapes, not on how well
# the weights learned, and 3 epochs keep the first run to about a minute.
BENCH_GRID = '[{"name": "bench", "max_epochs": 3}]'
PREDICT_ROUTE = "/v1/predict"
APPEND_ROUTE = "/v1/sessions/{session_id}/events"
JSON_HEADERS = {"Content-Type": "application/json"}
DRAIN_S = 10.0  # answers still missing this long after the last send count as errors
PROGRESS_S = 5.0
WARMUP_S = 2.0

Requests = Callable[[int], tuple[str, bytes]]
"""Request i -> (path, body)."""


# -- the trained home and real sessions ----------------------------------------------------------


def trained_home(home: Path, *, sessions: int, seed: int, console: Console) -> Settings:
    """`home` with a champion: reused when its registry has one, else synthesize, load, train."""
    from smallboat import registry
    from smallboat.bundle import MODEL_NAME
    from smallboat.data.land.load import load_path
    from smallboat.data.synth.generate import SynthConfig, synthesize
    from smallboat.pipeline.runner import run_train, use_metaflow_env

    os.environ["SMALLBOAT_HOME"] = str(home)
    settings = Settings(home=home)
    settings.ensure_home()
    use_metaflow_env(settings)
    champion = registry.champion(settings, model_name=MODEL_NAME)
    if champion is not None:
        console.print(f"home {home}: reusing champion v{champion.version}")
        return settings
    started = time.perf_counter()
    if not settings.warehouse_path.exists():
        data = home / "bench-data"
        console.print(f"home {home}: synthesizing {sessions:,} sessions, loading them ...")
        synthesize(SynthConfig(sessions=sessions, seed=seed), data)
        load_path(data, source="coveo", on_bad_rows="fail", settings=settings, progress=False)
    console.print(f"training {BENCH_GRID} (TrainFlow: dbt, prod2vec, 5 members) ...")
    run_train(settings, show_output=False, grid=BENCH_GRID, bootstrap=0, threads=2)
    console.print(f"trained in {time.perf_counter() - started:.0f} s")
    return settings


def real_sessions(settings: Settings, n: int) -> list[list[dict[str, Any]]]:
    """Up to `n` real sessions without a purchase (every event counts), as raw rows of exactly
    EVENTS events: longer ones cut, shorter ones continued by their own rows again, each after its
    real gap, so SKUs and pacing stay real (detail+pageview pairs stay pairs)."""
    from smallboat.warehouse.db import connect

    query = f"""
        with candidates as (
            select session_id_hash
            from stg_landing__browsing_events
            group by session_id_hash
            having count(*) >= {MIN_REAL_EVENTS}
                and count(*) filter (where product_action = 'purchase') = 0
            order by hash(session_id_hash)
            limit {n}
        )
        select e.session_id_hash, e.event_type, e.product_action, e.product_sku_hash,
            e.server_timestamp_epoch_ms, e.hashed_url
        from stg_landing__browsing_events as e
        inner join candidates as c on e.session_id_hash = c.session_id_hash
        order by e.session_id_hash, e.server_timestamp_epoch_ms, e.event_type
    """
    with connect(settings, read_only=True) as con:
        fetched = con.sql(query).fetchall()
    by_session: dict[str, list[dict[str, Any]]] = {}
    for sid, event_type, action, sku, ts, url in fetched:
        row = {
            "event_type": event_type,
            "product_action": action,
            "product_sku_hash": sku,
            "server_timestamp_epoch_ms": int(ts),
            "hashed_url": url,
        }
        by_session.setdefault(sid, []).append(row)
    if not by_session:
        raise SystemExit(f"{settings.warehouse_path}: no session of {MIN_REAL_EVENTS}+ events")
    return [exactly(rows, EVENTS) for rows in by_session.values()]


def exactly(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """`rows` cut or continued to `n` rows (continued: the rows again, each after its own gap)."""
    ts = [r["server_timestamp_epoch_ms"] for r in rows]
    gaps = [0, *np.diff(ts).tolist()]
    nonzero = [g for g in gaps if g > 0]
    gaps[0] = int(np.median(nonzero)) if nonzero else 10_000  # between one pass and the next
    out = [dict(r) for r in rows[:n]]
    k = len(out)
    while len(out) < n:
        row = dict(rows[k % len(rows)])
        row["server_timestamp_epoch_ms"] = (
            out[-1]["server_timestamp_epoch_ms"] + gaps[k % len(rows)]
        )
        out.append(row)
        k += 1
    return out


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def predict_requests(sessions: list[list[dict[str, Any]]]) -> Requests:
    bodies = [encode({"events": rows}) for rows in sessions]
    return lambda i: (PREDICT_ROUTE, bodies[i % len(bodies)])


def append_requests(sessions: list[list[dict[str, Any]]], tag: str) -> Requests:
    """Request i appends event j of live session `slot`: LIVE_SESSIONS sessions grow together,
    one event per request in turn; after EVENTS events a slot starts a new session id."""
    bodies = [[encode({"events": [row]}) for row in rows] for rows in sessions]

    def request(i: int) -> tuple[str, bytes]:
        slot, turn = i % LIVE_SESSIONS, i // LIVE_SESSIONS
        generation, event = divmod(turn, EVENTS)
        session = (generation * LIVE_SESSIONS + slot) % len(bodies)
        return f"/v1/sessions/{tag}-{generation}-{slot}/events", bodies[session][event]

    return request


def grown_event(rows: list[dict[str, Any]], j: int) -> dict[str, Any]:
    """Event j of a session continued without end from its (EVENTS) real rows: the rows again
    and again, each after its own real gap (as `exactly`), computed instead of stored."""
    ts = [r["server_timestamp_epoch_ms"] for r in rows]
    gaps = [int(g) for g in np.diff(ts) if g > 0]
    period = ts[-1] - ts[0] + (int(np.median(gaps)) if gaps else 10_000)
    lap, k = divmod(j, len(rows))
    return {**rows[k], "server_timestamp_epoch_ms": ts[k] + lap * period}


def grow_sessions(
    url: str, sessions: list[list[dict[str, Any]]], tag: str, slots: int, events: int
) -> None:
    """Sessions `{tag}-{slot}` for slot < `slots`, each given its first `events` events in
    appends of GROW_CHUNK (unmeasured)."""
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for slot in range(slots):
            rows = sessions[slot % len(sessions)]
            for start in range(0, events, GROW_CHUNK):
                chunk = [
                    grown_event(rows, j) for j in range(start, min(events, start + GROW_CHUNK))
                ]
                answer = client.post(f"/v1/sessions/{tag}-{slot}/events", json={"events": chunk})
                answer.raise_for_status()


def grown_appends(
    sessions: list[list[dict[str, Any]]], tag: str, slots: int, events: int
) -> Requests:
    """Request i appends the next event of session `{tag}-{i % slots}`, grown to `events`."""

    def request(i: int) -> tuple[str, bytes]:
        slot, turn = i % slots, i // slots
        row = grown_event(sessions[slot % len(sessions)], events + turn)
        return f"/v1/sessions/{tag}-{slot}/events", encode({"events": [row]})

    return request


# -- load generation -----------------------------------------------------------------------------


@dataclass
class Load:
    """What one point sent and got back (latencies in seconds, successful answers only)."""

    seconds: float = 0.0
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    from_send: list[float] = field(default_factory=list)  # the same answers, from the send
    lags: list[float] = field(default_factory=list)  # open loop: actual send - scheduled send
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    unscored: int = 0  # 2xx answers without a probability
    events_used: Counter[int] = field(default_factory=Counter)  # sampled answers

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def answered(self, body: bytes, i: int) -> None:
        if b'"purchase_probability":null' in body:
            self.unscored += 1
        if i % 25 == 0:
            self.events_used[int(json.loads(body).get("events_used", -1))] += 1

    def failed(self, what: str) -> None:
        self.errors[what[:120]] += 1


def _describe(exc: BaseException) -> str:
    return f"transport: {type(exc).__name__}: {exc}"


async def _opened(endpoint: Endpoint, n: int) -> list[Connection]:
    """`n` connections, each already connected (one GET /healthz), so no point pays a connect."""
    pool = [Connection(endpoint, timeout=DRAIN_S) for _ in range(n)]
    await asyncio.gather(*(c.request("GET", "/healthz") for c in pool))
    return pool


async def _ticker(load: Load, started: float, seconds: float, console: Console) -> None:
    while True:
        await asyncio.sleep(PROGRESS_S)
        console.print(
            f"    {time.perf_counter() - started:4.0f} s / {seconds:.0f} s: {load.sent:,} sent, "
            f"{load.ok:,} ok, {sum(load.errors.values()):,} errors"
        )


def paced_loop() -> asyncio.AbstractEventLoop:
    """The open loop's event loop: asyncio's default selector (epoll) sleeps in whole
    milliseconds, rounded up, so a request due in 0.2 ms went out up to 1 ms late, and that lag
    counted in its latency (from the scheduled time). select(2) takes microseconds: the sends
    keep to their schedule within the kernel's timer slack (the connections stay far below
    select's 1,024 descriptors)."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


async def open_loop(
    url: str, requests: Requests, *, rate: float, seconds: float, console: Console
) -> Load:
    """Request i at t0 + i/rate, on an idle connection or a new one; latency from t0 + i/rate."""
    endpoint = Endpoint.parse(url)
    idle = await _opened(endpoint, max(4, int(rate * 0.01)))
    load = Load(connections=len(idle))
    clock = time.perf_counter

    async def fire(i: int, due: float) -> None:
        if idle:
            conn = idle.pop()
        else:
            conn = Connection(endpoint, timeout=DRAIN_S)
            load.connections += 1
        path, body = requests(i)
        sent = clock()
        load.lags.append(sent - due)
        try:
            answer = await conn.request("POST", path, body=body, headers=JSON_HEADERS)
        except Exception as exc:  # every failure is counted, none dropped
            load.failed(_describe(exc))
        else:
            if 200 <= answer.status < 300:
                done = clock()
                load.latencies.append(done - due)
                load.from_send.append(done - sent)
                load.answered(answer.body, i)
            else:
                load.failed(f"HTTP {answer.status}: {answer.body[:80]!r}")
        finally:
            idle.append(conn)  # a failed connection reconnects on its next request

    n = int(rate * seconds)
    pending: set[asyncio.Task[None]] = set()
    t0 = clock() + 0.01
    ticker = asyncio.create_task(_ticker(load, t0, seconds, console))
    i = 0
    while i < n:
        delay = t0 + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        now = clock()
        while i < n and t0 + i / rate <= now:  # everything due, even if the loop woke late
            task = asyncio.create_task(fire(i, t0 + i / rate))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        load.sent = i
    load.seconds = clock() - t0
    ticker.cancel()
    if pending:
        _, late = await asyncio.wait(pending, timeout=DRAIN_S)
        for task in late:
            task.cancel()
            load.failed(f"no answer within {DRAIN_S:.0f} s of the last send")
        await asyncio.gather(*late, return_exceptions=True)  # their connections come back
    for conn in idle:
        conn.close()
    return load


async def closed_loop(
    url: str, requests: Requests, *, concurrency: int, seconds: float, console: Console
) -> Load:
    """`concurrency` workers, each sending its next request when the previous one answers."""
    endpoint = Endpoint.parse(url)
    pool = await _opened(endpoint, concurrency)
    load = Load(connections=concurrency)
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + seconds

    async def worker(conn: Connection) -> None:
        while clock() < deadline:
            i = load.sent
            load.sent += 1
            path, body = requests(i)
            started = clock()
            try:
                answer = await conn.request("POST", path, body=body, headers=JSON_HEADERS)
            except Exception as exc:  # every failure is counted, none dropped
                load.failed(_describe(exc))
                continue
            if 200 <= answer.status < 300:
                load.latencies.append(clock() - started)
                load.from_send.append(load.latencies[-1])
                load.answered(answer.body, i)
            else:
                load.failed(f"HTTP {answer.status}: {answer.body[:80]!r}")

    ticker = asyncio.create_task(_ticker(load, t0, seconds, console))
    await asyncio.gather(*(worker(c) for c in pool))
    ticker.cancel()
    load.seconds = clock() - t0
    for conn in pool:
        conn.close()
    return load


# -- the floor: a bare FastAPI app on the same uvicorn ---------------------------------------------


def floor_app() -> Any:
    """What the stack costs by itself: FastAPI on the service's uvicorn options (uvloop,
    httptools), parsing the same JSON body and answering a fixed JSON; /healthz and an empty
    /metrics so the load generator treats it like the service."""
    from fastapi import FastAPI, Response

    app = FastAPI()
    fixed = {"purchase_probability": 0.5, "model_version": "floor", "events_used": 20}
    model = _floor_model()

    @app.post(PREDICT_ROUTE)
    async def predict(body: dict[str, Any]) -> dict[str, Any]:
        if model is not None:
            model()
        return fixed

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response("", media_type="text/plain")

    return app


FLOOR_MODEL_ENV = "SMALLBOAT_BENCH_FLOOR_MODEL"
"""Part m: an .npz (`floor_model_file`) of the champion's serving graph's path and one real
session's encoded inputs; with it set, the floor app also runs that graph on them per request."""


def floor_model_file(settings: Settings, session: list[dict[str, Any]], folder: Path) -> Path:
    """What part m's floor app runs per request: the champion's serving graph (its file, or
    derived as the service derives it for a bundle without one) and `session` encoded by the
    service's own encoder, once, here. For a LightGBM or blend champion the graph is its neural
    part only (the trees are not in it)."""
    from smallboat.bundle import MODEL_NAME, ONNX_FILE
    from smallboat.features.incremental import SessionPrefix
    from smallboat.features.small_batch import encode_small_batch
    from smallboat.model.onnx_intent import INPUT_NAMES
    from smallboat.registry import champion_bundle
    from smallboat.serve.scoring import LoadedModel

    bundle, _ = champion_bundle(settings, model_name=MODEL_NAME, hint="train one first")
    model = LoadedModel.from_bundle(bundle)
    graph = bundle / ONNX_FILE
    if not graph.is_file():  # a bundle written before it had one
        graph = folder / "floor-model.onnx"
        graph.write_bytes(model.predictor.serving_graph(model.fused))
    predictor = model.predictor
    inputs = encode_small_batch(
        [SessionPrefix.of_rows(session).events], predictor.vocab, predictor.spec, None
    )
    path = folder / "floor-model.npz"
    np.savez(path, graph=str(graph), **{name: getattr(inputs, name) for name in INPUT_NAMES})
    return path


def _floor_model() -> Callable[[], object] | None:
    """Part m's model call (FLOOR_MODEL_ENV), else None."""
    saved = os.environ.get(FLOOR_MODEL_ENV)
    if not saved:
        return None
    from types import SimpleNamespace

    from smallboat.model.onnx_intent import OnnxIntent
    from smallboat.serve.models import DEFAULT_K

    arrays = np.load(saved)
    graph = OnnxIntent(Path(str(arrays["graph"])))
    inputs: Any = SimpleNamespace(**{k: arrays[k] for k in arrays.files if k != "graph"})
    if graph.has_top_k:
        return lambda: graph.run_top_k(inputs, DEFAULT_K)
    return lambda: graph.run(inputs)


def run_floor(port: int, workers: int = 1) -> None:
    """The floor app on `port`; with `workers` > 1, that many processes each on its own socket
    of a SO_REUSEPORT group, as `smallboat serve --workers` runs them."""
    import uvicorn

    from smallboat.web.workers import ReusePortMultiprocess, reuse_port_sockets

    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": "info",  # each worker's start, for `wait_for_workers`
        "access_log": False,
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(floor_app(), **options)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # workers import bench.serve
    config = uvicorn.Config("bench.serve:floor_app", factory=True, workers=workers, **options)
    ReusePortMultiprocess(config, reuse_port_sockets("127.0.0.1", port, workers)).run()


class FloorProcess:
    """The floor app in a child process (this file, --floor-server PORT), on `workers`
    processes."""

    def __init__(
        self, log_path: Path, *, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        from smallboat.web.process import free_port

        self.env = {**os.environ, **(env or {})}
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: Any = None

    def __enter__(self) -> FloorProcess:
        import subprocess

        with self.log_path.open("ab") as out:
            command = [sys.executable, __file__, "--floor-server", str(self.port)]
            command += ["--floor-workers", str(self.workers)]
            self.process = subprocess.Popen(command, stdout=out, stderr=out, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the floor app did not start; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


STARTED_LINE = "Application startup complete."
"""What uvicorn logs when a worker's app has started (its lifespan ran: the model is loaded)."""


def wait_for_workers(log_path: Path, workers: int, *, timeout: float = 180.0) -> None:
    """Until `workers` processes have logged STARTED_LINE. With a socket per worker, a worker
    still loading takes no connection: a point opened before every worker is up would put all
    its connections on the first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            log_path.exists()
            and log_path.read_text(errors="replace").count(STARTED_LINE) >= workers
        ):
            return
        time.sleep(0.2)
    raise SystemExit(f"{workers} workers did not all start within {timeout:.0f} s; see {log_path}")


@contextmanager
def started_process(process: Any, *, timeout: float) -> Iterator[Any]:
    """A `ServerProcess` started with `timeout` (its `with` uses the default), stopped after."""
    process.start(timeout=timeout)
    try:
        yield process
    finally:
        process.__exit__(None, None, None)


def tree_pids(pid: int) -> list[int]:
    """`pid` and its children (uvicorn's workers under `serve --workers N`), from /proc."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            pids += tree_pids(int(child))
    return pids


# -- measuring a point ----------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children, from /proc (Linux)."""
    total = 0.0
    for each in tree_pids(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def scrape(url: str) -> dict[str, float]:
    """The service's Prometheus samples, by name with labels (`x_sum{route="/v1/predict"}`)."""
    # An overloaded point leaves a backlog the service drains before it answers this.
    text = httpx.get(f"{url}/metrics", timeout=60.0).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@dataclass
class Point:
    part: str
    mode: str  # "open" or "closed"
    level: float  # requests/s (open) or workers (closed)
    route: str
    load: Load
    loadgen_cores: float
    server_cores: float
    redis_cores: float | None
    server: dict[str, float]  # deltas of the service's counters over the point

    @property
    def label(self) -> str:
        return f"{self.level:,.0f}/s" if self.mode == "open" else f"C={self.level:.0f}"

    @property
    def throughput(self) -> float:
        return self.load.ok / self.load.seconds if self.load.seconds else 0.0

    def ms(self, q: float) -> float:
        values = self.load.latencies
        return float(np.quantile(values, q)) * 1000 if values else float("nan")

    def lag_ms(self, q: float) -> float:
        values = self.load.lags
        return float(np.quantile(values, q)) * 1000 if values else float("nan")

    def from_send_ms(self, q: float) -> float:
        values = self.load.from_send
        return float(np.quantile(values, q)) * 1000 if values else float("nan")

    def mean_ms(self) -> float:
        values = self.load.latencies
        return float(np.mean(values)) * 1000 if values else float("nan")

    def counter(self, name: str) -> float:
        return self.server.get(name, 0.0)


def measure(
    part: str,
    mode: str,
    level: float,
    *,
    route: str,
    url: str,
    requests: Requests,
    seconds: float,
    server_pid: int,
    redis_pid: int | None,
    console: Console,
) -> Point:
    console.print(f"  {part}: {route} {mode}-loop {level:g}{'/s' if mode == 'open' else ''} ...")
    before = scrape(url)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    server0 = process_cpu_seconds(server_pid)
    redis0 = process_cpu_seconds(redis_pid) if redis_pid is not None else 0.0
    if mode == "open":
        run = open_loop(url, requests, rate=level, seconds=seconds, console=console)
    else:
        run = closed_loop(url, requests, concurrency=int(level), seconds=seconds, console=console)
    with asyncio.Runner(loop_factory=paced_loop if mode == "open" else None) as runner:
        load = runner.run(run)
    wall = time.perf_counter() - wall0
    server_cores = (process_cpu_seconds(server_pid) - server0) / wall
    redis_cores = None
    if redis_pid is not None:
        redis_cores = (process_cpu_seconds(redis_pid) - redis0) / wall
    loadgen_cores = (time.process_time() - cpu0) / wall
    after = scrape(url)
    deltas = {name: after[name] - before.get(name, 0.0) for name in after}
    point = Point(part, mode, level, route, load, loadgen_cores, server_cores, redis_cores, deltas)
    console.print(
        f"    {load.ok:,} ok, {sum(load.errors.values()):,} errors, {point.throughput:,.0f}/s, "
        f"p50 {point.ms(0.5):.2f} ms, p99 {point.ms(0.99):.2f} ms"
    )
    time.sleep(0.5)  # let the service settle between points
    return point


def warm_up(url: str, requests: Requests, console: Console) -> None:
    """A short unreported closed loop: first requests pay for lazy imports and allocations."""
    load = asyncio.run(closed_loop(url, requests, concurrency=8, seconds=WARMUP_S, console=console))
    errors = sum(load.errors.values())
    console.print(f"  warm-up: {load.ok:,} requests, {errors:,} errors")


# -- the forward pass in this process ------------------------------------------------------------


@dataclass
class InProcess:
    batch: int
    calls: int
    encode_ms: np.ndarray
    forward_ms: np.ndarray


def in_process(
    settings: Settings, sessions: list[list[dict[str, Any]]], *, calls: int
) -> list[InProcess]:
    """The champion loaded here as the service loads it (its serving graph on ONNX Runtime, one
    thread; torch on 1 thread): encode (collapse + features, the service's encoder) and the
    forward pass with both heads (the service's `_forward`, top 10 next items) timed apart, for
    batches of 1, 8 and 32 sessions. A LightGBM or blend champion's forward pass includes
    LightGBM's predictor."""
    import torch

    from smallboat.features.incremental import SessionPrefix
    from smallboat.features.small_batch import encode_small_batch
    from smallboat.serve.models import DEFAULT_K
    from smallboat.serve.scoring import _forward, load_model

    torch.set_num_threads(1)
    model = load_model(settings)
    predictor = model.predictor
    results = []
    for batch in (1, 8, 32):
        n = calls if batch == 1 else max(100, calls // batch)
        encode_s, forward_s = [], []
        for k in range(n + 50):  # the first 50 warm up
            chunk = [sessions[(k * batch + j) % len(sessions)] for j in range(batch)]
            t0 = time.perf_counter()
            events = [SessionPrefix.of_rows(rows).events for rows in chunk]
            inputs = encode_small_batch(events, predictor.vocab, predictor.spec, None)
            t1 = time.perf_counter()
            _forward(model, inputs, DEFAULT_K)
            t2 = time.perf_counter()
            if k >= 50:
                encode_s.append(t1 - t0)
                forward_s.append(t2 - t1)
        results.append(
            InProcess(batch, n, np.asarray(encode_s) * 1000, np.asarray(forward_s) * 1000)
        )
    return results


# -- reports -------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


def _errors(point: Point) -> str:
    n = sum(point.load.errors.values())
    return f"[red]{n:,}[/]" if n else "0"


def _target(point: Point) -> tuple[str, str]:
    """(target, PASS/MISS) of a point, or blanks when the issue sets none for it."""
    failed = bool(point.load.errors)
    if point.mode == "open" and point.level == PREDICT_RATE and point.route == PREDICT_ROUTE:
        return f"p99 <= {PREDICT_P99_MS:g} ms", _verdict(
            point.ms(0.99) <= PREDICT_P99_MS and not failed
        )
    if point.mode == "open" and point.level == FAST_RATE and point.route == PREDICT_ROUTE:
        return f"p99 <= {FAST_P99_MS:g} ms", _verdict(point.ms(0.99) <= FAST_P99_MS and not failed)
    if point.mode == "closed" and point.level == 1 and point.route == PREDICT_ROUTE:
        ok = point.ms(0.5) <= ONE_CLIENT_P50_MS and point.ms(0.99) <= ONE_CLIENT_P99_MS
        return f"p50 <= {ONE_CLIENT_P50_MS:g}, p99 <= {ONE_CLIENT_P99_MS:g} ms", _verdict(
            ok and not failed
        )
    if point.mode == "open" and point.level == SESSIONS_RATE and point.route == APPEND_ROUTE:
        return f"p99 <= {SESSIONS_P99_MS:g} ms", _verdict(
            point.ms(0.99) <= SESSIONS_P99_MS and not failed
        )
    return "", ""


def render_load(title: str, points: list[Point], *, redis: bool) -> Table:
    table = Table(title=title, title_justify="left", caption_justify="left")
    columns = ["point", "answered/s", "p50", "p95", "p99", "max", "send lag p99", "p99 from send"]
    columns += ["errors"]
    columns += ["conns", "gen CPU", "server CPU"] + (["redis CPU"] if redis else [])
    columns += ["target", "result"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("point", "target") else "right")
    for p in points:
        lag = f"{p.lag_ms(0.99):.2f} ms" if p.mode == "open" else "-"
        from_send = f"{p.from_send_ms(0.99):.2f} ms" if p.mode == "open" else "-"
        tag = p.part.removeprefix("d ") + ", " if p.part.startswith("d ") else ""
        row = [
            f"{tag}{p.mode}-loop {p.label}",
            f"{p.throughput:,.0f}",
            f"{p.ms(0.5):.2f} ms",
            f"{p.ms(0.95):.2f} ms",
            f"{p.ms(0.99):.2f} ms",
            f"{p.ms(1.0):.1f} ms",
            lag,
            from_send,
            _errors(p),
            f"{p.load.connections}",
            f"{p.loadgen_cores:.2f}",
            f"{p.server_cores:.2f}",
        ]
        if redis:
            row.append(f"{p.redis_cores or 0.0:.2f}")
        table.add_row(*row, *_target(p))
    used = Counter[int]()
    for p in points:
        used.update(p.load.events_used)
    unscored = sum(p.load.unscored for p in points)
    sampled = sum(used.values())
    mean_used = sum(k * v for k, v in used.items()) / sampled if sampled else float("nan")
    table.caption = (
        "latency: open loop from the SCHEDULED send (p50..max), closed loop from the send; "
        "send lag = how late the generator sent (it paces with select(2)'s microsecond "
        "timeouts and shares the 2 cores); p99 from send = the same answers timed from the "
        "actual send; CPU in cores; "
        f"answers without a probability: {unscored:,}; mean events_used (sampled): {mean_used:.1f}"
    )
    return table


def render_forward(inproc: list[InProcess], points: list[Point]) -> Table:
    table = Table(
        title="c. forward pass: in-process vs. the service's /metrics",
        title_justify="left",
        caption_justify="left",
    )
    columns = ["where", "sessions/batch", "encode p50 / p99", "forward p50 / p99"]
    columns += ["forward mean", "request mean", "forward share"]
    for column in columns:
        table.add_column(column, justify="left" if column == "where" else "right")
    for r in inproc:
        forward_mean = float(np.mean(r.forward_ms))
        total_mean = forward_mean + float(np.mean(r.encode_ms))
        table.add_row(
            f"in-process, {r.calls:,} calls",
            f"{r.batch}",
            f"{np.median(r.encode_ms):.3f} / {np.quantile(r.encode_ms, 0.99):.3f} ms",
            f"{np.median(r.forward_ms):.3f} / {np.quantile(r.forward_ms, 0.99):.3f} ms",
            f"{forward_mean:.3f} ms",
            f"{total_mean:.3f} ms (encode+fwd)",
            f"{forward_mean / total_mean:.0%}",
        )
    table.add_section()
    for p in points:
        batches = p.counter("smallboat_forward_seconds_count")
        route = f'{{route="{p.route}"}}'
        requests = p.counter(f"smallboat_request_duration_seconds_count{route}")
        if not batches or not requests:
            continue
        forward_ms = p.counter("smallboat_forward_seconds_sum") / batches * 1000
        size = p.counter("smallboat_batch_sessions_sum") / batches
        server_ms = p.counter(f"smallboat_request_duration_seconds_sum{route}") / requests * 1000
        client_ms = p.mean_ms()
        star = " *" if _target(p)[0] else ""
        name = "predict" if p.route == PREDICT_ROUTE else "sessions+redis"
        table.add_row(
            f"service, {name} {p.mode}-loop {p.label}{star}",
            f"{size:.2f}",
            "",
            "",
            f"{forward_ms:.3f} ms",
            f"{server_ms:.3f} ms server, {client_ms:.3f} ms client",
            f"{forward_ms / server_ms:.0%} / {forward_ms / client_ms:.0%}",
        )
    table.caption = (
        "service rows: forward mean per batch and server-side request mean from /metrics, "
        "client mean from this generator; share = forward / request mean (server / client). "
        "* a point with a latency target (tables a and b)"
    )
    return table


def render_ratios(
    floor: list[Point],
    points: list[Point],
    *,
    floor_name: str = "the floor (bare FastAPI on the same uvicorn)",
) -> Table:
    """Each point of the service beside the floor's point of the same shape, as a ratio."""
    table = Table(title=f"ratios to {floor_name}, measured in this run", title_justify="left")
    for column in ("point", "service p50", "floor p50", "ratio", "service p99", "floor p99",
                   "ratio ", "target"):  # fmt: skip
        table.add_column(column, justify="left" if column == "point" else "right")
    by_shape = {(p.mode, p.level): p for p in floor}
    for p in points:
        base = by_shape.get((p.mode, p.level))
        if base is None:
            continue
        r50, r99 = p.ms(0.5) / base.ms(0.5), p.ms(0.99) / base.ms(0.99)
        target = ""
        if p.mode == "closed" and p.level == 1 and base.part in ("f", "wf"):
            target = f"<= {FLOOR_RATIO:g}x: {_verdict(r50 <= FLOOR_RATIO and r99 <= FLOOR_RATIO)}"
        table.add_row(
            f"{p.part} {p.mode}-loop {p.label}",
            f"{p.ms(0.5):.2f} ms",
            f"{base.ms(0.5):.2f} ms",
            f"{r50:.1f}x",
            f"{p.ms(0.99):.2f} ms",
            f"{base.ms(0.99):.2f} ms",
            f"{r99:.1f}x",
            target,
        )
    return table


SECTIONS = ("parse", "collapse", "encode", "summary", "forward", "next_items", "answers", "log",
            "respond")  # fmt: skip
"""The service's sections (SMALLBOAT_SERVE_SECTIONS, `smallboat_serve_section_seconds`)."""


def render_sections(points: list[Point]) -> Table:
    """Where a request's time goes inside the service: each section's mean ms per request (from
    the service's own perf_counter sections), the rest of the server-side latency (uvicorn's
    protocol, the ASGI stack, waiting for the batch), and the service's CPU per request."""
    table = Table(
        title="profile: ms per request inside the service (SMALLBOAT_SERVE_SECTIONS)",
        title_justify="left",
        caption_justify="left",
    )
    columns = ["point", *SECTIONS, "rest", "server mean", "CPU/request"]
    for column in columns:
        table.add_column(column, justify="left" if column == "point" else "right")
    for p in points:
        route = f'{{route="{p.route}"}}'
        requests = p.counter(f"smallboat_request_duration_seconds_count{route}")
        if not requests:
            continue
        spent = [
            p.counter(f'smallboat_serve_section_seconds_total{{section="{name}"}}') / requests
            for name in SECTIONS
        ]
        server = p.counter(f"smallboat_request_duration_seconds_sum{route}") / requests
        cpu = p.server_cores * p.load.seconds / p.load.ok if p.load.ok else float("nan")
        name = "predict" if p.route == PREDICT_ROUTE else "sessions+redis"
        table.add_row(
            f"{name} {p.mode}-loop {p.label}",
            *[f"{1000 * x:.3f}" for x in spent],
            f"{1000 * (server - sum(spent)):.3f}",
            f"{1000 * server:.3f}",
            f"{1000 * cpu:.3f}",
        )
    table.caption = (
        "parse: request start to scoring (body, JSON, validation; on /v1/sessions also the "
        "Redis round trip); collapse..answers: the scoring batch (shared by the requests batched "
        "together); log: the prediction log's row; respond: serializing and sending; rest: "
        "server latency outside these (ASGI stack, waiting for the batch); CPU/request: the "
        "service process's CPU seconds over the point / answers (all threads; ms)"
    )
    return table


def print_errors(console: Console, points: list[Point]) -> None:
    for p in points:
        for what, n in p.load.errors.most_common(5):
            console.print(f"[red]{p.part} {p.mode}-loop {p.label}: {n:,} x {what}[/]")


def log_problems(console: Console, logs: list[Path]) -> None:
    """Lines of the services' logs that look like trouble (tracebacks, errors, warnings)."""
    for log in logs:
        if not log.exists():
            continue
        bad = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if any(word in line for word in ("Traceback", "ERROR", "WARNING", "Exception"))
        ]
        status = f"{len(bad)} error/warning lines" if bad else "clean"
        console.print(f"service log {log}: {status}")
        for line in bad[:10]:
            console.print(f"  [red]{line[:200]}[/]")


# -- main ----------------------------------------------------------------------------------------


def floor_points(
    part: str,
    floor: FloorProcess,
    requests: Requests,
    *,
    rates: str,
    concurrency: str,
    seconds: float,
    console: Console,
) -> list[Point]:
    """A floor app's points (part `part`): open loops at `rates`, then closed loops at
    `concurrency` (comma-separated), after a warm-up."""
    warm_up(floor.url, requests, console)
    common: dict[str, Any] = {
        "route": PREDICT_ROUTE,
        "url": floor.url,
        "requests": requests,
        "seconds": seconds,
        "server_pid": floor.process.pid,
        "redis_pid": None,
        "console": console,
    }
    points = [measure(part, "open", rate, **common) for rate in _numbers(rates)]
    return points + [measure(part, "closed", c, **common) for c in _numbers(concurrency)]


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of each point.")
    parser.add_argument("--quick", action="store_true", help="5 s points: a smoke run.")
    parser.add_argument("--rates", default="300,1000", help="Open-loop rates of parts a, f.")
    parser.add_argument("--concurrency", default="1,8,32", help="Closed-loop workers, a and f.")
    parser.add_argument(
        "--session-rates", default="300,1000", help="Open-loop rates of part b (Redis)."
    )
    parser.add_argument(
        "--workers-concurrency", default="32,64,128", help="Closed-loop workers of part w."
    )
    parser.add_argument("--workers", type=int, default=2, help="serve --workers of part w.")
    parser.add_argument(
        "--workers-rates", default="300,1000", help="Open-loop rates of part w ('' for none)."
    )
    parser.add_argument(
        "--parts",
        default="fmabwcd",
        help="Parts to run: f the bare-FastAPI floor, m the floor with the model's graph, a "
        "predict, b Redis appends, w --workers, c in-process forward pass, d prediction log "
        "on/off; e.g. 'fma'.",
    )
    parser.add_argument("--floor-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--floor-workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-rates", default="300,600", help="Open-loop rates of part d (log on vs off)."
    )
    parser.add_argument("--home", type=Path, default=None, help="Trained home to reuse.")
    parser.add_argument("--sessions", type=int, default=30_000, help="Synthetic, if training.")
    parser.add_argument("--calls", type=int, default=2_000, help="In-process calls (part c).")
    args = parser.parse_args()
    if args.floor_server is not None:  # the child process of FloorProcess
        run_floor(args.floor_server, args.floor_workers)
        return
    seconds = 5.0 if args.quick else args.seconds
    calls = 500 if args.quick else args.calls

    # The Redis helper the integration tests use lives in the repository's tests package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.redis_server import RedisServer

    from smallboat.serve.server import ServeProcess

    console = Console(width=190)
    root = Path(tempfile.mkdtemp(prefix="smallboat-bench-serve-"))
    home = args.home or root / "home"
    settings = trained_home(home, sessions=args.sessions, seed=1, console=console)
    sessions = real_sessions(settings, REQUEST_SESSIONS)
    console.print(f"{len(sessions):,} real sessions of {EVENTS} events; logs in {root}")
    predict = predict_requests(sessions)
    logs = [root / "serve-memory.log", root / "serve-redis.log"]
    a_points: list[Point] = []
    b_points: list[Point] = []

    shape: dict[str, Any] = {
        "rates": args.rates,
        "concurrency": args.concurrency,
        "seconds": seconds,
        "console": console,
    }  # parts f and m: the points of part a
    f_points: list[Point] = []
    if "f" in args.parts:
        console.rule("f. the floor: bare FastAPI on the same uvicorn, same bodies")
        with FloorProcess(root / "floor.log") as floor:
            f_points = floor_points("f", floor, predict, **shape)

    m_points: list[Point] = []
    if "m" in args.parts:
        console.rule("m. the floor with the model: bare FastAPI + the serving graph, no features")
        model_file = floor_model_file(settings, sessions[0], root)
        env = {FLOOR_MODEL_ENV: str(model_file)}
        with FloorProcess(root / "floor-model.log", env=env) as floor:
            m_points = floor_points("m", floor, predict, **shape)

    cold_start: float | None = None
    if "a" in args.parts or "c" in args.parts:
        console.rule("a. POST /v1/predict, in-process session store")
        started = time.perf_counter()
        sections = {"SMALLBOAT_SERVE_SECTIONS": "true"}
        with ServeProcess(home, env=sections, log_path=logs[0]) as service:
            cold_start = time.perf_counter() - started
            console.print(f"  cold start to /readyz 200: {cold_start:.2f} s")
            assert service.process is not None
            warm_up(service.url, predict, console)
            common: dict[str, Any] = {
                "route": PREDICT_ROUTE,
                "url": service.url,
                "requests": predict,
                "seconds": seconds,
                "server_pid": service.process.pid,
                "redis_pid": None,
                "console": console,
            }
            for rate in _numbers(args.rates):
                a_points.append(measure("a", "open", rate, **common))
            for workers in _numbers(args.concurrency):
                a_points.append(measure("a", "closed", workers, **common))

    append_cpu: list[tuple[str, int, float, Point]] = []  # store, events, CPU ms per append
    if "b" in args.parts:
        for store in ("memory", "redis"):
            console.rule(f"b. POST /v1/sessions/{{id}}/events on long sessions, {store} store")
            with contextlib.ExitStack() as stack:
                env = {"SMALLBOAT_SERVE_SECTIONS": "true"}
                redis_pid = None
                if store == "redis":
                    redis = stack.enter_context(RedisServer())
                    env["SMALLBOAT_REDIS_URL"] = redis.url
                    redis_pid = redis.process.pid
                log_path = root / f"serve-sessions-{store}.log"
                logs.append(log_path)
                service = stack.enter_context(ServeProcess(home, env=env, log_path=log_path))
                assert service.process is not None
                warm_up(service.url, append_requests(sessions, f"warm{os.getpid()}"), console)
                common = {
                    "route": APPEND_ROUTE,
                    "url": service.url,
                    "seconds": seconds,
                    "server_pid": service.process.pid,
                    "redis_pid": redis_pid,
                    "console": console,
                }
                for events, slots in (
                    (SHORT_EVENTS, SHORT_SESSIONS),
                    (GROWN_EVENTS, LIVE_SESSIONS),
                ):
                    tag = f"cpu{os.getpid()}-{store}-{events}"
                    console.print(f"  growing {slots:,} sessions to {events:,} events ...")
                    grow_sessions(service.url, sessions, tag, slots, events)
                    cpu0 = process_cpu_seconds(service.process.pid)
                    point = measure(
                        f"b {store} {events:,} ev", "closed", 1,
                        requests=grown_appends(sessions, tag, slots, events), **common,
                    )  # fmt: skip
                    cpu = process_cpu_seconds(service.process.pid) - cpu0
                    append_cpu.append((store, events, cpu / max(1, point.load.ok) * 1000, point))
                if store == "redis":
                    for k, rate in enumerate(_numbers(args.session_rates)):
                        tag = f"bench{os.getpid()}-{k}"
                        console.print(f"  growing {LIVE_SESSIONS} sessions to {GROWN_EVENTS:,} ...")
                        grow_sessions(service.url, sessions, tag, LIVE_SESSIONS, GROWN_EVENTS)
                        requests = grown_appends(sessions, tag, LIVE_SESSIONS, GROWN_EVENTS)
                        b_points.append(measure("b", "open", rate, requests=requests, **common))

    w_points: list[Point] = []
    wf_points: list[Point] = []
    if "w" in args.parts:
        console.rule(f"w. the floor and POST /v1/predict on {args.workers} worker processes")
        log_path = root / "floor-workers.log"
        with FloorProcess(log_path, workers=args.workers) as floor:
            wait_for_workers(log_path, args.workers)
            wf_points = floor_points(
                "wf",
                floor,
                predict,
                rates=args.workers_rates,
                concurrency=args.workers_concurrency,
                seconds=seconds,
                console=console,
            )
        with RedisServer() as redis:
            env = {"SMALLBOAT_REDIS_URL": redis.url, "SMALLBOAT_SERVE_WORKERS": str(args.workers)}
            log_path = root / "serve-workers.log"
            logs.append(log_path)
            # N workers loading at once on a busy machine can take longer than the default 30 s.
            with started_process(
                ServeProcess(home, env=env, log_path=log_path), timeout=120.0
            ) as service:
                assert service.process is not None
                wait_for_workers(log_path, args.workers)
                warm_up(service.url, predict, console)
                points = [("open", r) for r in _numbers(args.workers_rates)]
                points += [("closed", c) for c in _numbers(args.workers_concurrency)]
                for mode, level in points:
                    w_points.append(
                        measure(
                            "w",
                            mode,
                            level,
                            route=PREDICT_ROUTE,
                            url=service.url,
                            requests=predict,
                            seconds=seconds,
                            server_pid=service.process.pid,
                            redis_pid=redis.process.pid,
                            console=console,
                        )
                    )

    d_points: list[Point] = []
    logged: dict[str, float] = {}
    if "d" in args.parts:
        console.rule("d. POST /v1/predict with the prediction log on and off (same load)")
        for state in ("off", "on", "off", "on"):  # alternated: the machine drifts over minutes
            env = {"SMALLBOAT_PREDICTION_LOG": "true" if state == "on" else "false"}
            log_path = root / f"serve-log-{state}.log"
            with ServeProcess(home, env=env, log_path=log_path) as service:
                assert service.process is not None
                warm_up(service.url, predict, console)
                for rate in _numbers(args.log_rates):
                    point = measure(
                        f"d log {state}",
                        "open",
                        rate,
                        route=PREDICT_ROUTE,
                        url=service.url,
                        requests=predict,
                        seconds=seconds,
                        server_pid=service.process.pid,
                        redis_pid=None,
                        console=console,
                    )
                    d_points.append(point)
                metrics = scrape(service.url)
                for name in (
                    "smallboat_prediction_log_written",
                    "smallboat_prediction_log_dropped",
                ):
                    logged[f"{state} {name}"] = logged.get(f"{state} {name}", 0.0) + metrics.get(
                        name, 0.0
                    )

    inproc: list[InProcess] = []
    if "c" in args.parts:
        console.rule("c. the forward pass in this process")
        console.print(f"  {calls:,} calls of one session, fewer of batches of 8 and 32 ...")
        inproc = in_process(settings, sessions, calls=calls)

    console.rule(f"results ({seconds:g} s per point)")
    if f_points:
        title = "f. the floor: bare FastAPI, same uvicorn options, same bodies, fixed answer"
        console.print(render_load(title, f_points, redis=False))
    if m_points:
        title = (
            "m. the floor with the model: bare FastAPI, the same bodies parsed, and the "
            "champion's serving graph run on one session encoded beforehand (batch 1; no "
            "features, batching, log or answer of its own)"
        )
        console.print(render_load(title, m_points, redis=False))
    if a_points:
        title = "a. POST /v1/predict, one 20-event session per request (in-process store)"
        console.print(render_load(title, a_points, redis=False))
    if b_points:
        title = (
            f"b. POST /v1/sessions/{{id}}/events, one event per request, {LIVE_SESSIONS} sessions "
            f"grown to {GROWN_EVENTS:,} events (Redis store)"
        )
        console.print(render_load(title, b_points, redis=True))
    if append_cpu:
        table = Table(
            title="b. the service's CPU per append (closed loop, one client), by session length",
            title_justify="left",
        )
        for column in ("store", "session events", "appends", "CPU per append", "p50", "p99"):
            table.add_column(column, justify="left" if column == "store" else "right")
        for store, events, cpu_ms, point in append_cpu:
            table.add_row(store, f"{events:,}+", f"{point.load.ok:,}", f"{cpu_ms:.2f} ms",
                          f"{point.ms(0.5):.2f} ms", f"{point.ms(0.99):.2f} ms")  # fmt: skip
        console.print(table)
    if wf_points:
        title = f"w. the floor on {args.workers} worker processes (a socket each)"
        console.print(render_load(title, wf_points, redis=False))
    if w_points:
        title = f"w. POST /v1/predict, serve --workers {args.workers} (Redis sessions)"
        table = render_load(title, w_points, redis=True)
        best = max((p for p in w_points if p.mode == "closed"), key=lambda p: p.throughput)
        ok = best.throughput >= SATURATED_TARGET and not best.load.errors
        table.add_section()
        table.add_row(f"saturated ({best.label})", f"{best.throughput:,.0f}", *[""] * 11,
                      f">= {SATURATED_TARGET:,.0f}/s", _verdict(ok))  # fmt: skip
        console.print(table)
    if f_points and a_points:
        console.print(render_ratios(f_points, a_points))
    if m_points and a_points:
        console.print(render_ratios(m_points, a_points, floor_name="the floor with the model (m)"))
    if wf_points and w_points:
        console.print(render_ratios(wf_points, w_points))
    if a_points or b_points:
        console.print(render_sections(a_points + b_points))
    saturated = [
        max(closed, key=lambda p: p.throughput)
        for closed in (
            [p for p in ps if p.mode == "closed"]
            for ps in (f_points, a_points, wf_points, w_points)
        )
        if closed
    ]
    if saturated:
        console.print(
            "saturated (best closed-loop point, answers/s): "
            + ", ".join(f"{p.part} {p.label} {p.throughput:,.0f}/s" for p in saturated)
            + f" (f: the floor, a: one process; wf: the floor, w: the service, on "
            f"{args.workers} workers)"
        )
    if cold_start is not None:
        console.print(f"cold start (spawn to /readyz 200, champion from the registry): "
                      f"{cold_start:.2f} s")  # fmt: skip
    if d_points:
        title = "d. POST /v1/predict, prediction log off vs on (alternating runs)"
        console.print(render_load(title, d_points, redis=False))
        console.print(
            "prediction log counters: "
            + ", ".join(f"{name} = {value:,.0f}" for name, value in sorted(logged.items()))
        )
    if inproc:
        console.print(render_forward(inproc, a_points + b_points))
    print_errors(console, a_points + b_points + [p for *_, p in append_cpu] + d_points)
    log_problems(console, logs)
    console.print(f"home: {home} (reuse: --home {home})")


if __name__ == "__main__":
    main()

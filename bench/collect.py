"""Benchmark the event collector: sustained ingest over loopback, and no acknowledged event lost.

1. Generates browsing events with the synthetic generator and starts `smallboat collect serve`
   in a child process (default settings: group commit, 30 s segments, background compaction
   every 10 s in the collector's own child process, `collect.compactor`), with a fresh state home.
2. This process is the load generator (`smallboat.collect.replay`, a lean keep-alive HTTP/1.1
   client; each run's requests are encoded before its clock starts, so the generator's CPU on
   the shared cores is sending and reading answers only):
   - batches as the libraries send them by default: Segment `POST /v1/batch` of 100 events
     (also paced at 5,000 events/s), Snowplow tp2 of 10, canonical JSON of 100 (target >= 40,000
     events/s at full speed, issue 14);
   - single hits of every protocol (UA `GET /collect`, GA4 `GET /g/collect`, Snowplow tp2,
     Segment, JSON `POST /collect`), at full speed (target >= 4,000 hits/s) and paced at 1,000
     hits/s (the collector under one core).
   Each run reports events/s, ack latency p50/p99 (request sent -> 2xx answer, i.e. after the
   fsync), and the CPU used by the load generator, by the collector's serving process(es) and by
   its background compactor(s) (cores = CPU s / wall s).
3. After each run (untimed), lands everything acknowledged so far, as `smallboat collect
   compact` does (the running collector rolls its log, then every closed segment is compacted),
   so one run's backlog is not compacted during the next, and counts the landed rows: every
   acknowledged event of every run must be there (0 lost), and nothing twice.
4. Prints, per protocol, the best single hits/s and batched events/s and the collector's CPU at
   the paced 1,000 hits/s, beside the targets.

    flock /tmp/smallboat-bench.lock .venv/bin/python bench/collect.py
    .venv/bin/python bench/collect.py --seconds 5 --in-flight 16 64 256 --only UA GA4
    .venv/bin/python bench/collect.py --app-cpu   # the app's CPU per request, no HTTP server
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from smallboat.config import Settings

SEGMENT_TARGET = 40_000
SEGMENT_PACED = 5_000
HIT_TARGET = 4_000
HIT_PACED = 1_000
PACED_CPU_TARGET = 1.0
"""At the paced 1,000 hits/s the collector's serving process must use under one core."""
COMPACTOR_NAME = "collect-compact"
"""`collect.compactor.COMPACTOR_NAME`, the background compactor's process name (kept here as
text: the benchmark reads /proc, it does not import the collector's modules at start)."""


@dataclass
class Run:
    name: str
    protocol: str
    in_flight: int
    target: float
    rate_limit: float | None
    events: int
    acknowledged: int
    failed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    loadgen_cores: float
    server_cores: float
    compactor_cores: float
    lost: int = 0
    """Acknowledged events of this run (and the ones before) not landed after it."""
    landed_s: float = 0.0
    """How long landing the run's events took, after it (untimed)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class Cpu:
    """CPU seconds of the collector's process tree: its serving process(es) and compactor(s)."""

    serving: float = 0.0
    compactor: float = 0.0


Tree = dict[int, tuple[str, float]]
"""pid -> (process name, CPU seconds)."""


def process_tree_cpu(pid: int, into: Tree | None = None) -> Tree:
    """pid -> (process name, user + system CPU seconds) of a process and its live descendants
    (`--workers`: uvicorn's worker processes; each collector's compactor), from /proc (Linux)."""
    tree: Tree = {} if into is None else into
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # gone meanwhile
        return tree
    name, _, rest = stat.partition(" (")[2].rpartition(")")
    fields = rest.split()
    tree[pid] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    for child in children:
        process_tree_cpu(int(child), tree)
    return tree


def cpu_between(before: Tree, after: Tree) -> Cpu:
    """The CPU each process used between two readings, the compactors' (by their name at the
    second reading: a compactor names itself once started) apart. A process that ended between
    the readings takes its CPU with it."""
    cpu = Cpu()
    for pid, (name, seconds) in after.items():
        used = seconds - before.get(pid, ("", 0.0))[1]
        if name == COMPACTOR_NAME:
            cpu.compactor += used
        else:
            cpu.serving += used
    return cpu


def fsync_latency(folder: Path, n: int = 200) -> tuple[float, float]:
    """p50 and p99 ms of `os.fdatasync` after a 200-byte append in `folder` (what one group
    commit of the collector's log waits for), measured now, on this disk."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    times: list[float] = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 200)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return times[n // 2], times[min(n - 1, int(n * 0.99))]


def events_table(data: Path, n: int) -> pa.Table:
    """`n` browsing rows: the synthetic file's rows in time order, repeated as needed (every
    replay run gives each row a fresh message id, so repeats are new events)."""
    from smallboat.collect.replay import read_browsing

    base = read_browsing(data / "browsing_train.csv")
    copies = -(-n // base.num_rows)
    return pa.concat_tables([base] * copies).slice(0, n)


def measure(
    name: str,
    protocol: str,
    *,
    events: pa.Table,
    url: str,
    server_pid: int,
    target: float,
    rate: float | None,
    concurrency: int,
    write_key: str,
    batch_size: int,
) -> Run:
    from smallboat.collect.replay import send_requests
    from smallboat.collect.replay_requests import requests_of

    # Encoded before the clock starts: the load generator shares the collector's two cores, and
    # making the bodies (Arrow rows -> JSON) cost it as much CPU as sending them.
    requests = list(
        requests_of(events, protocol=protocol, run=secrets.token_hex(4), batch_size=batch_size)  # type: ignore[arg-type]
    )
    cpu0, server0, wall0 = time.process_time(), process_tree_cpu(server_pid), time.perf_counter()
    summary = send_requests(
        requests,
        url=url,
        protocol=protocol,  # type: ignore[arg-type]
        total=events.num_rows,
        rate=rate,
        write_key=write_key,
        concurrency=concurrency,
    )
    wall = time.perf_counter() - wall0
    server = cpu_between(server0, process_tree_cpu(server_pid))
    return Run(
        name=name,
        protocol=protocol,
        in_flight=concurrency,
        target=target,
        rate_limit=rate,
        events=summary.sent,
        acknowledged=summary.acknowledged,
        failed=summary.failed,
        seconds=summary.seconds,
        p50_ms=summary.latency_ms(0.5),
        p99_ms=summary.latency_ms(0.99),
        loadgen_cores=(time.process_time() - cpu0) / wall,
        server_cores=server.serving / wall,
        compactor_cores=server.compactor / wall,
    )


def render(runs: list[Run], landed: int, duplicates: int) -> Table:
    table = Table(title="collector ingest over loopback (2 shared cores)", title_justify="left")
    for column in ("run", "in flight", "events", "events/s", "target", "ack p50", "ack p99"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for column in ("load gen CPU", "collector CPU", "compactor CPU", "failed", "lost", "landed in"):
        table.add_column(column, justify="right")
    for r in runs:
        ok = r.rate >= r.target or r.rate_limit is not None
        cpu_ok = r.rate_limit != HIT_PACED or r.server_cores < PACED_CPU_TARGET
        table.add_row(
            r.name,
            str(r.in_flight),
            f"{r.events:,}",
            f"[{'green' if ok else 'red'}]{r.rate:,.0f}[/]",
            f">= {r.target:,.0f}",
            f"{r.p50_ms:.1f} ms",
            f"{r.p99_ms:.1f} ms",
            f"{r.loadgen_cores:.2f} cores",
            f"[{'green' if cpu_ok else 'red'}]{r.server_cores:.2f} cores[/]",
            f"{r.compactor_cores:.2f} cores",
            f"{r.failed:,}",
            f"[{'green' if r.lost == 0 else 'red'}]{r.lost:,}[/]",
            f"{r.landed_s:.1f} s",
        )
    acked = sum(r.acknowledged for r in runs)
    table.caption = (
        f"acknowledged {acked:,}; landed {landed:,} ({duplicates:,} duplicates dropped); "
        f"acknowledged but not landed: {max(0, acked - landed):,}. Collector CPU: its serving "
        "process; compactor CPU: its background compaction process (nice 10). After each run "
        "everything acknowledged is landed (`landed in`, untimed), and `lost` counts what was "
        "not."
    )
    return table


def render_targets(runs: list[Run]) -> Table:
    """Per protocol, the best of its runs against the issue-14 targets."""
    table = Table(title="per protocol, against the targets", title_justify="left")
    for column in ("protocol", "single hits/s", "batched events/s", "CPU at 1,000 hits/s"):
        table.add_column(column, justify="left" if column == "protocol" else "right")

    def best(protocol: str, single: bool) -> str:
        rates = [
            r.rate
            for r in runs
            if r.protocol == protocol and r.rate_limit is None and ("hit" in r.name) == single
        ]
        if not rates:
            return "-"
        target = HIT_TARGET if single else SEGMENT_TARGET
        color = "green" if max(rates) >= target else "red"
        return f"[{color}]{max(rates):,.0f}[/] (>= {target:,})"

    for protocol in dict.fromkeys(r.protocol for r in runs):
        paced = [r for r in runs if r.protocol == protocol and r.rate_limit == HIT_PACED]
        cpu = "-"
        if paced:
            cores = max(r.server_cores for r in paced)
            color = "green" if cores < PACED_CPU_TARGET else "red"
            cpu = f"[{color}]{cores:.2f} cores[/] (< {PACED_CPU_TARGET:g})"
        table.add_row(protocol, best(protocol, True), best(protocol, False), cpu)
    return table


def landed_rows(settings: Settings) -> tuple[int, int]:
    """Rows in the collector's landing files, and duplicates compaction dropped."""
    landing = settings.table_landing_dir("browsing_events")
    if not any(landing.glob("collect-*.parquet")):
        return 0, 0
    with duckdb.connect() as con:
        [(landed,)] = con.sql(
            f"select count(*) from read_parquet('{landing}/collect-*.parquet')"
        ).fetchall()
    with closing(sqlite3.connect(settings.collect_dir / "state.sqlite")) as state:
        [(duplicates,)] = state.execute("select coalesce(sum(duplicates), 0) from segments")
    return int(landed), int(duplicates)


def app_cpu(data: Path, home: Path, plans: list[tuple[str, str, int]], console: Console) -> None:
    """CPU per request of the collector app alone (no HTTP server): each plan's requests called
    in this process as ASGI, 16 in flight, on a real log (fsync'd); process CPU / requests."""
    import asyncio
    import base64

    from smallboat.collect.app import create_app
    from smallboat.collect.replay_requests import Request, requests_of
    from smallboat.collect.store import EventStore
    from smallboat.config import Settings

    settings = Settings(
        home=home, write_keys="bench", collect_max_event_age_days=36500, collect_compact_seconds=0
    )
    store = EventStore.open(settings, background_compaction=False)
    app = create_app(settings, store=store)
    app.state.store = store
    auth = b"Basic " + base64.b64encode(b"bench:")

    async def call(r: Request) -> None:
        path, _, query = r.path.partition("?")
        headers = [(b"host", b"bench"), (b"authorization", auth)]
        if r.body is not None:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(r.body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": r.method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": query.encode(), "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}  # fmt: skip
        received = False
        statuses: list[int] = []

        async def receive() -> dict[str, object]:
            nonlocal received
            if received:
                await asyncio.sleep(3600)  # no disconnect while the answer is pending
            received = True
            return {"type": "http.request", "body": r.body or b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))  # type: ignore[call-overload]

        await app(scope, receive, send)  # type: ignore[arg-type]
        assert statuses[0] < 300, f"{r.method} {r.path}: {statuses}"

    async def run(requests: list[Request]) -> None:
        queue = iter(requests)

        async def worker() -> None:
            for r in queue:
                await call(r)

        await asyncio.gather(*(worker() for _ in range(16)))

    table = Table(title="collector app CPU, no HTTP server (in-process ASGI)", title_justify="left")
    for column in ("run", "requests", "events", "CPU per request", "CPU per event"):
        table.add_column(column, justify="left" if column == "run" else "right")
    try:
        for name, protocol, batch in plans:
            n = 3_000 if batch == 1 else 30_000
            requests = list(
                requests_of(events_table(data, n), protocol=protocol, run=name, batch_size=batch)  # type: ignore[arg-type]
            )
            asyncio.run(run(requests[:50]))  # warm up
            requests = requests[50:]
            cpu0 = time.process_time()
            asyncio.run(run(requests))
            cpu = time.process_time() - cpu0
            events = sum(r.events for r in requests)
            table.add_row(
                name,
                f"{len(requests):,}",
                f"{events:,}",
                f"{cpu / len(requests) * 1e6:,.0f} us",
                f"{cpu / events * 1e6:,.1f} us",
            )
    finally:
        store.close()
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of each paced run.")
    parser.add_argument("--segment-events", type=int, default=200_000, help="Full-speed run.")
    parser.add_argument("--ga-hits", type=int, default=15_000, help="Full-speed run.")
    parser.add_argument(
        "--in-flight",
        "--concurrency",
        dest="in_flight",
        type=int,
        nargs="+",
        default=[16],
        help="Requests in flight (connections of the load generator); several values: each "
        "full-speed run once per value (the paced runs use the first).",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keep state here.")
    parser.add_argument(
        "--only", nargs="*", default=[], help="Run only the runs whose name holds a word."
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="`collect serve --workers N` (processes)."
    )
    parser.add_argument(
        "--app-cpu",
        action="store_true",
        help="Only measure the app's CPU per request in this process (no server, no load gen).",
    )
    args = parser.parse_args()

    from smallboat.collect.compaction import compact_events
    from smallboat.collect.control import compact_now
    from smallboat.collect.server import CollectorProcess
    from smallboat.config import Settings
    from smallboat.data.synth.generate import SynthConfig, synthesize

    console = Console(width=190)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="smallboat-bench-collect-"))
    shutil.rmtree(root / "home", ignore_errors=True)
    data = root / "data"
    if not (data / "browsing_train.csv").exists():
        synthesize(SynthConfig(sessions=20_000, seed=1), data)
    home = root / "home"
    key = "bench"
    env = {"SMALLBOAT_WRITE_KEYS": key, "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500"}
    # (run, protocol, target, paced rate or None, events, events per request): per protocol
    # single hits at full speed and paced at 1,000/s, and the library's default batching
    # (Segment's and RudderStack's Python SDKs flush 100, Snowplow's Python tracker 10).
    hits = args.ga_hits
    plans: list[tuple[str, str, float, float | None, int, int]] = [
        ("segment x100, max", "segment", SEGMENT_TARGET, None, args.segment_events, 100),
        ("segment x100, paced", "segment", SEGMENT_PACED, SEGMENT_PACED,
         int(SEGMENT_PACED * args.seconds), 100),
        ("snowplow x10, max", "snowplow", SEGMENT_TARGET, None, args.segment_events // 2, 10),
        ("json x100, max", "json", SEGMENT_TARGET, None, args.segment_events // 2, 100),
    ]  # fmt: skip
    for protocol, label in (
        ("ga", "UA"),
        ("ga4", "GA4"),
        ("snowplow", "snowplow"),
        ("segment", "segment"),
        ("json", "json"),
    ):
        plans.append((f"{label} hit, max", protocol, HIT_TARGET, None, hits, 1))
        plans.append(
            (
                f"{label} hit, paced",
                protocol,
                HIT_PACED,
                HIT_PACED,
                int(HIT_PACED * args.seconds),
                1,
            )
        )
    if args.only:
        plans = [p for p in plans if any(word in p[0] for word in args.only)]
    if args.app_cpu:
        once = [(name.rsplit(",", 1)[0], p, batch) for name, p, _, rate, _, batch in plans]
        app_cpu(data, home, [plan for plan in dict.fromkeys(once)], console)
        return
    p50, p99 = fsync_latency(root / "fsync")
    console.print(f"fdatasync on this disk now: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    runs: list[Run] = []
    serve_args = ["--workers", str(args.workers)] if args.workers > 1 else []
    console.print(f"collector: {args.workers} process(es)")
    settings = Settings(home=home)
    with CollectorProcess(
        home, env=env, args=serve_args, log_path=root / "collector.log"
    ) as collector:
        assert collector.process is not None
        for name, protocol, target, rate, n, batch in plans:
            for in_flight in args.in_flight if rate is None else args.in_flight[:1]:
                console.print(f"{name}, {in_flight} in flight: {n:,} events ...")
                run = measure(
                    name,
                    protocol,
                    events=events_table(data, n),
                    url=collector.url,
                    server_pid=collector.process.pid,
                    target=target,
                    rate=rate,
                    concurrency=in_flight,
                    write_key=key,
                    batch_size=batch,
                )
                # Land this run's events now, so their compaction does not share the next run.
                started = time.perf_counter()
                compact_now(settings)
                run.landed_s = time.perf_counter() - started
                acked = sum(r.acknowledged for r in runs) + run.acknowledged
                run.lost = max(0, acked - landed_rows(settings)[0])
                runs.append(run)
    compact_events(settings)  # what the collector logged after the last roll: nothing
    console.print(render(runs, *landed_rows(settings)))
    console.print(render_targets(runs))
    p50, p99 = fsync_latency(root / "fsync")
    console.print(f"fdatasync on this disk after the runs: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    console.print(f"state: {root}")


if __name__ == "__main__":
    main()

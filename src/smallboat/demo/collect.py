"""The demo's collection step: replay part of the test split through a real collector.

1. take the earliest test-split sessions of the warehouse (about `events` raw rows) from the
   landed browsing events, and write them as a Coveo `browsing_train.csv`;
2. start `smallboat collect serve` in a child process, with its own state home
   (`<home>/demo-collect/home`), so the demo's replayed copy never doubles the warehouse's data;
3. replay the file through it (`smallboat replay --as ga`: one pixel hit per row, original
   sessions and times), stop the collector, compact its log into landing Parquet;
4. compare: events sent, acknowledged, landed, and landed rows identical to the originals (the
   URL hash re-hashed, as the collector stores a URL it is sent).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from smallboat.collect.compaction import LANDING_PREFIX, compact_events
from smallboat.collect.replay import replay_file
from smallboat.collect.replay_requests import Protocol
from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.schema import BROWSING_EVENTS
from smallboat.warehouse.db import connect

DEMO_DIR = "demo-collect"
_COLUMNS = ", ".join(BROWSING_EVENTS.column_names)


@dataclass(frozen=True)
class ReplayDemoResult:
    sessions: int
    sent: int
    acknowledged: int
    landed: int
    identical: int
    sessions_landed: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.sent == self.acknowledged == self.landed == self.identical


def replay_demo(
    settings: Settings,
    console: Console,
    *,
    events: int = 3_000,
    rate: float = 2_000.0,
    protocol: Protocol = "ga",
) -> ReplayDemoResult:
    """Replay about `events` test-split rows through a collector; raises SmallboatError unless
    every event sent is acknowledged and landed exactly once, identical to its original."""
    started = time.perf_counter()
    root = settings.home_dir / DEMO_DIR
    shutil.rmtree(root, ignore_errors=True)
    source = root / "replay" / "browsing_train.csv"
    source.parent.mkdir(parents=True)
    sessions = _write_test_sessions(settings, source, events)
    home = root / "home"
    collector = CollectorProcess(
        home,
        env={
            # The synthetic data's times are years old: this collector backfills history.
            "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
            "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
            "SMALLBOAT_WRITE_KEYS": "demo",
        },
        log_path=root / "collector.log",
    )
    console.print(
        f"collector on {collector.url} (state {home}); replaying {source} as {protocol} "
        f"at {rate:,.0f} events/s"
    )
    with collector:
        summary = replay_file(
            source, url=collector.url, protocol=protocol, rate=rate, write_key="demo", progress=True
        )
    collect_settings = Settings(home=home)
    report = compact_events(collect_settings)
    console.print(report.render())
    landed_dir = collect_settings.table_landing_dir(BROWSING_EVENTS.name)
    landed, identical, sessions_landed = _compare(
        source, landed_dir / f"{LANDING_PREFIX}-*.parquet", rehash_url=protocol != "json"
    )
    result = ReplayDemoResult(
        sessions=sessions,
        sent=summary.sent,
        acknowledged=summary.acknowledged,
        landed=landed,
        identical=identical,
        sessions_landed=sessions_landed,
        seconds=time.perf_counter() - started,
    )
    console.print(_render(result, summary.rate, summary.latency_ms(0.99)))
    if not result.ok:
        raise SmallboatError(
            f"collection demo: sent {result.sent:,}, acknowledged {result.acknowledged:,}, landed "
            f"{result.landed:,}, identical {result.identical:,}: they should all be equal "
            f"(collector log: {root / 'collector.log'})"
        )
    return result


def _write_test_sessions(settings: Settings, out: Path, events: int) -> int:
    """Write the earliest test sessions' landed rows (about `events`) as a Coveo CSV."""
    landing = settings.table_landing_dir(BROWSING_EVENTS.name)
    with connect(settings, read_only=True) as con:
        listed = con.sql("select table_name from information_schema.tables").fetchall()
        tables = {name for (name,) in listed}
        if "sessions" not in tables:
            raise SmallboatError("the warehouse has no sessions table: run `smallboat transform`")
        con.sql(
            f"""
            create temp table picked as
            with test as (
                select session_id_hash, started_at_ms from sessions where split = 'test'
            ),
            raw as (
                select b.* from read_parquet('{landing}/*.parquet') as b
                join test using (session_id_hash)
            ),
            sized as (
                select session_id_hash, count(*) as n, any_value(t.started_at_ms) as started
                from raw join test as t using (session_id_hash)
                group by session_id_hash
            ),
            running as (
                select session_id_hash,
                    sum(n) over (order by started, session_id_hash) as cumulative
                from sized
            )
            select {_COLUMNS} from raw
            where session_id_hash in (
                select session_id_hash from running where cumulative <= {int(events)}
            )
            """
        )
        [(n_sessions,)] = con.sql("select count(distinct session_id_hash) from picked").fetchall()
        if not n_sessions:
            raise SmallboatError("the warehouse's test split has no session to replay")
        con.sql(
            f"copy (select * from picked order by server_timestamp_epoch_ms) to '{out}' "
            "(header, delimiter ',')"
        )
    return int(n_sessions)


def _compare(source: Path, landed_glob: Path, *, rehash_url: bool) -> tuple[int, int, int]:
    """(rows landed, landed rows matching a source row one-to-one, sessions landed)."""
    url = "nullif(hashed_url, '')"
    if rehash_url:
        url = f"sha256({url})"
    with duckdb.connect() as con:
        con.sql(
            f"""
            create table sent as
            select
                session_id_hash,
                event_type,
                nullif(product_action, '') as product_action,
                nullif(product_sku_hash, '') as product_sku_hash,
                cast(server_timestamp_epoch_ms as bigint) as server_timestamp_epoch_ms,
                {url} as hashed_url
            from read_csv('{source}', header = true, all_varchar = true)
            """
        )
        con.sql(f"create table landed as select {_COLUMNS} from read_parquet('{landed_glob}')")
        [(landed, sessions)] = con.sql(
            "select count(*), count(distinct session_id_hash) from landed"
        ).fetchall()
        [(unmatched,)] = con.sql(
            "select count(*) from (select * from landed except all select * from sent)"
        ).fetchall()
    return int(landed), int(landed) - int(unmatched), int(sessions)


def _render(result: ReplayDemoResult, rate: float, p99_ms: float) -> Table:
    table = Table(title="collection: test split replayed", title_justify="left", box=None)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("test sessions replayed", f"{result.sessions:,}")
    table.add_row("events sent", f"{result.sent:,}")
    table.add_row("acknowledged (fsync'd)", f"{result.acknowledged:,}")
    table.add_row("landed (compacted)", f"{result.landed:,}")
    table.add_row("landed = an original row", f"{result.identical:,}")
    table.add_row("sessions landed", f"{result.sessions_landed:,}")
    table.add_row("replay rate / ack p99", f"{rate:,.0f} events/s / {p99_ms:.1f} ms")
    table.add_row("step time", f"{result.seconds:.1f} s")
    verdict = "[green]all equal[/]" if result.ok else "[red]MISMATCH[/]"
    table.add_row("verdict", verdict)
    return table

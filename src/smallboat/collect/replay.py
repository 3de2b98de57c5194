"""`smallboat replay`: stream a browsing file to a collector, in timestamp order, at a given rate.

The file is read with the package's source adapters (`--format coveo` and the others `smallboat
data load` knows), its browsing rows sorted by time (a stable sort: ties keep file order), and
each row sent as the chosen protocol speaks it:

- `ga`: one `GET /collect` hit per row: `t=pageview`, or `t=event&pa=<action>&pr1id=<sku>`; the
  session id travels as `cid` and `sid`, the event time as `ts_ms`, the URL as `dl`;
- `ga4`: one gtag.js-style `GET /g/collect` hit per row: `en=page_view`, or `view_item`,
  `add_to_cart`, `remove_from_cart`, `purchase` with `pr1=id<sku>`; the session id travels as
  `cid` and `sid` (so rows land in session `collect.ga.ga4_session_id(session, session)`), the
  event time as `ts_ms`, the URL as `dl`;
- `segment`: `POST /v1/batch` of up to `batch_size` messages: `page` for pageviews, the
  e-commerce spec's track events for actions, with `properties.session_id` and `timestamp`;
- `json`: `POST /collect` with up to `batch_size` canonical events (the URL hash sent as is);
- `snowplow`: `POST /com.snowplowanalytics.snowplow/tp2` of up to `batch_size` tracker-protocol
  events: `e=pv` for pageviews, the e-commerce plugin's actions (`product_view`, `add_to_cart`,
  `remove_from_cart`, `transaction`) with a product entity for the others; the session id
  travels as `sid` (and `duid`), the event time as `ttm`, the URL as `url`.

So a replay preserves sessions and event times (the collector must accept the file's times: see
SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS). GA and Segment carry a URL, which the collector hashes, so
their rows land with `hashed_url = sha256(the file's hashed_url)`; `json` lands rows identical to
the file's. Every message has an id (`replay-<run>-<row>`): a request that fails on the network
or with a 5xx/429 is retried with the same ids and deduplicated by the collector. A 4xx is not
retried; its events count as failed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import uvloop
from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smallboat.collect.replay_requests import PROTOCOLS, Protocol, Request, requests_of
from smallboat.data.land.load import DEFAULT_BLOCK_SIZE, SOURCES
from smallboat.data.sources.base import Problems, ReadStats
from smallboat.errors import DataError, SmallboatError
from smallboat.schema import BROWSING_EVENTS
from smallboat.web.wire import Connection, Endpoint, WireError

log = logging.getLogger(__name__)


RETRIES = 5
"""Attempts after the first for a request that failed on the network or with 5xx/429."""
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_SHOWN_ERRORS = 3
_NO_ANSWER = "no answer from the collector"


@dataclass
class ReplaySummary:
    """What a replay sent and what the collector acknowledged."""

    protocol: str
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    target_rate: float | None = None
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    """Per acknowledged request: send to 2xx answer (the ack latency)."""
    unreachable: str | None = None
    """Why the replay stopped early: the collector never answered its first requests."""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, q: float) -> float:
        """The q-quantile (0..1) of request latencies; 0.0 when there were none."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def render(self) -> RenderableType:
        table = Table(title=f"replay ({self.protocol})", title_justify="left", box=None)
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_row("events sent", f"{self.sent:,}")
        table.add_row("acknowledged", f"{self.acknowledged:,}")
        table.add_row("failed", f"{self.failed:,}")
        table.add_row("requests (retries)", f"{self.requests:,} ({self.retries:,})")
        target = "" if self.target_rate is None else f" (target {self.target_rate:,.0f})"
        table.add_row("events/s", f"{self.rate:,.0f}{target}")
        table.add_row(
            "ack latency p50 / p99",
            f"{self.latency_ms(0.5):.1f} / {self.latency_ms(0.99):.1f} ms",
        )
        parts: list[RenderableType] = [table]
        for detail, count in self.errors.most_common(_SHOWN_ERRORS):
            parts.append(f"[red]{count:,} request(s) failed:[/] {detail}")
        return Group(*parts)


def read_browsing(path: Path, *, source: str = "coveo", limit: int | None = None) -> pa.Table:
    """The browsing rows of `path`, sorted by time (ties in file order), at most `limit`."""
    if source not in SOURCES:
        raise DataError(f"source format {source!r} is not one of {', '.join(SOURCES)}")
    if not path.is_file():
        raise DataError(f"{path} is not a file; replay streams one browsing file")
    adapter = SOURCES[source]
    batches: list[pa.RecordBatch] = []
    read = adapter.read(
        path, problems=Problems("fail"), stats=ReadStats(), block_size=DEFAULT_BLOCK_SIZE
    )
    tables_seen: set[str] = set()
    for table, batch in read:
        tables_seen.add(table.name)
        if table.name == BROWSING_EVENTS.name:
            batches.append(batch)
    if not batches and tables_seen - {BROWSING_EVENTS.name}:
        raise DataError(
            f"{path} holds {', '.join(sorted(tables_seen))}, not browsing events; "
            "replay streams browsing events"
        )
    events = pa.Table.from_batches(batches, schema=BROWSING_EVENTS.arrow_schema)
    order = pc.sort_indices(events, sort_keys=[("server_timestamp_epoch_ms", "ascending")])
    events = events.take(order)
    return events if limit is None else events.slice(0, limit)


def replay_events(
    events: pa.Table,
    *,
    url: str,
    protocol: Protocol = "ga",
    rate: float | None = None,
    write_key: str | None = None,
    concurrency: int = 16,
    batch_size: int = 100,
    progress: bool = False,
) -> ReplaySummary:
    """Send `events` (canonical browsing rows, in the order given) to the collector at `url`.

    `rate` is in events per second (None: as fast as the collector answers, `concurrency`
    requests in flight). Events the collector did not acknowledge (after retries) are counted
    as failed in the summary, with the errors seen; a bad URL or protocol raises at once.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    requests = requests_of(
        events, protocol=protocol, run=secrets.token_hex(4), batch_size=batch_size
    )
    return send_requests(
        requests,
        url=url,
        protocol=protocol,
        total=events.num_rows,
        rate=rate,
        write_key=write_key,
        concurrency=concurrency,
        progress=progress,
    )


def send_requests(
    requests: Iterable[Request],
    *,
    url: str,
    protocol: Protocol,
    total: int,
    rate: float | None = None,
    write_key: str | None = None,
    concurrency: int = 16,
    progress: bool = False,
) -> ReplaySummary:
    """Send `requests` (`replay_requests.requests_of`: lazily made, or made beforehand, as the
    benchmark does so that encoding them does not share the collector's cores) of `protocol`,
    `total` events in all, to the collector at `url`; see `replay_events`."""
    if protocol == "segment" and not write_key:
        raise SmallboatError("--as segment needs a write key (--write-key or SMALLBOAT_WRITE_KEYS)")
    if rate is not None and rate <= 0:
        raise DataError(f"rate {rate} must be positive (events per second)")
    endpoint = Endpoint.parse(url)
    summary = ReplaySummary(protocol=protocol, target_rate=rate)
    json_body = protocol in ("segment", "json", "snowplow")
    headers = {"Content-Type": "application/json"} if json_body else {}
    if protocol == "segment" and write_key:
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    # uvloop, as the collector runs: the sender's CPU per request is its event loop's, and a
    # load generator sharing the collector's cores should take as little of them as it can.
    uvloop.run(
        _send_all(
            requests,
            summary,
            endpoint=endpoint,
            rate=rate,
            headers=headers,
            concurrency=concurrency,
            progress=progress,
            total=total,
        )
    )
    if summary.unreachable is not None:
        raise SmallboatError(f"cannot replay to {url}: {summary.unreachable}; is it running?")
    return summary


def replay_file(
    path: Path,
    *,
    url: str,
    source: str = "coveo",
    protocol: Protocol = "ga",
    rate: float | None = None,
    limit: int | None = None,
    write_key: str | None = None,
    concurrency: int = 16,
    batch_size: int = 100,
    progress: bool = False,
) -> ReplaySummary:
    """Read a browsing file (see `read_browsing`) and replay it (see `replay_events`)."""
    events = read_browsing(path, source=source, limit=limit)
    return replay_events(
        events,
        url=url,
        protocol=protocol,
        rate=rate,
        write_key=write_key,
        concurrency=concurrency,
        batch_size=batch_size,
        progress=progress,
    )


async def _send_all(
    requests: Iterable[Request],
    summary: ReplaySummary,
    *,
    endpoint: Endpoint,
    rate: float | None,
    headers: dict[str, str],
    concurrency: int,
    progress: bool,
    total: int,
) -> None:
    queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=concurrency * 2)
    bar = Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acked {task.fields[acked]:,}  failed {task.fields[failed]:,}"),
        TimeElapsedColumn(),
        disable=not progress,
    )
    started = time.perf_counter()
    with bar:
        task = bar.add_task("replay", total=total, acked=0, failed=0)

        def advance(n: int) -> None:
            bar.update(task, advance=n, acked=summary.acknowledged, failed=summary.failed)

        unreachable = asyncio.Event()
        workers = [
            asyncio.create_task(
                _worker(Connection(endpoint), queue, summary, headers, advance, unreachable)
            )
            for _ in range(concurrency)
        ]
        sent_events = 0
        for request in requests:
            if unreachable.is_set():
                break
            if rate is not None:
                delay = started + sent_events / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await queue.put(request)
            sent_events += request.events
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    summary.seconds = time.perf_counter() - started


async def _worker(
    connection: Connection,
    queue: asyncio.Queue[Request | None],
    summary: ReplaySummary,
    headers: dict[str, str],
    advance: Callable[[int], None],
    unreachable: asyncio.Event,
) -> None:
    try:
        while (request := await queue.get()) is not None:
            if unreachable.is_set():
                continue  # drain: the collector never answered, stop sending
            summary.sent += request.events
            ok, detail = await _send(connection, request, headers, summary)
            if ok:
                summary.acknowledged += request.events
            else:
                summary.failed += request.events
                summary.errors[detail] += 1
                if detail.startswith(_NO_ANSWER) and summary.acknowledged == 0:
                    summary.unreachable = detail
                    unreachable.set()
            advance(request.events)
    finally:
        connection.close()


async def _send(
    connection: Connection, request: Request, headers: dict[str, str], summary: ReplaySummary
) -> tuple[bool, str]:
    """Send with retries; (acknowledged, error detail)."""
    detail = ""
    for attempt in range(RETRIES + 1):
        if attempt:
            summary.retries += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        summary.requests += 1
        sent_at = time.perf_counter()
        try:
            answer = await connection.request(
                request.method, request.path, body=request.body, headers=headers
            )
        except WireError as exc:
            detail = f"{_NO_ANSWER} ({exc})"
            continue
        if 200 <= answer.status < 300:
            summary.latencies_ms.append((time.perf_counter() - sent_at) * 1000)
            return True, ""
        detail = f"{answer.status} {_error_detail(answer.body)}"
        if answer.status not in _RETRY_STATUS:
            return False, detail
    return False, detail


def _error_detail(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", errors="replace")
    if isinstance(parsed, dict) and "detail" in parsed:
        return str(parsed["detail"])
    return str(parsed)[:200]

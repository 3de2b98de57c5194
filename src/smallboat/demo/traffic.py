"""Live traffic for the closed loop: shoppers' clicks sent to the collector AND the service.

`drive(events, collector_url=, service_url=)` plays browsing rows session by session, in order of
session start, several sessions at a time: each click goes to the collector (`POST /collect`, one
canonical JSON event with a message id, retried with the same id on a network error or a 5xx) and
then to the prediction service (`POST /v1/sessions/{id}/events`, which predicts on the session so
far and logs the prediction). What a shop's page does on every click, minus the browser. Only
HTTP: no part of the service or the collector is imported.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pyarrow as pa
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from smallboat.errors import SmallboatError
from smallboat.web.wire import Connection, Endpoint, WireError

log = logging.getLogger(__name__)

RETRIES = 5
_JSON = {"Content-Type": "application/json"}


@dataclass
class TrafficSummary:
    sessions: int = 0
    events: int = 0
    collected: int = 0
    predicted: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _sessions(events: pa.Table) -> list[list[dict[str, Any]]]:
    """Rows grouped by session, each session in time order, sessions by their first event."""
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in events.to_pylist():
        by_session[row["session_id_hash"]].append(row)
    sessions = [
        sorted(rows, key=lambda r: r["server_timestamp_epoch_ms"]) for rows in by_session.values()
    ]
    sessions.sort(
        key=lambda rows: (rows[0]["server_timestamp_epoch_ms"], rows[0]["session_id_hash"])
    )
    return sessions


def drive(
    events: pa.Table,
    *,
    collector_url: str,
    service_url: str,
    concurrency: int = 16,
    progress: bool = False,
) -> TrafficSummary:
    """Send every row of `events` to the collector and the service (see the module docstring);
    raises SmallboatError when a click could not be delivered to both."""
    sessions = _sessions(events)
    summary = TrafficSummary(sessions=len(sessions), events=events.num_rows)
    started = time.perf_counter()
    asyncio.run(_drive(sessions, collector_url, service_url, concurrency, summary, progress))
    summary.seconds = time.perf_counter() - started
    if summary.failed:
        shown = "; ".join(summary.failed[:3])
        raise SmallboatError(
            f"live traffic: {len(summary.failed)} of {summary.events:,} clicks were not delivered "
            f"({shown})"
        )
    return summary


async def _drive(
    sessions: list[list[dict[str, Any]]],
    collector_url: str,
    service_url: str,
    concurrency: int,
    summary: TrafficSummary,
    progress: bool,
) -> None:
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for rows in sessions:
        queue.put_nowait(rows)
    run = secrets.token_hex(4)
    bar = Progress(
        TextColumn("live traffic"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
    )
    task = bar.add_task("clicks", total=summary.events)
    collector_at, service_at = Endpoint.parse(collector_url), Endpoint.parse(service_url)
    counter = itertools.count()

    async def worker() -> None:
        # One keep-alive connection to each server per worker (httpx costs ~1.2 ms of CPU per
        # request here, more than the servers spend answering; see smallboat.web.wire).
        collector, service = Connection(collector_at), Connection(service_at)
        try:
            while not queue.empty():
                rows = queue.get_nowait()
                for row in rows:
                    message_id = f"live-{run}-{next(counter)}"
                    await _click(collector, service, row, message_id, summary)
                    bar.advance(task)
        finally:
            collector.close()
            service.close()

    with bar:
        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _click(
    collector: Connection,
    service: Connection,
    row: dict[str, Any],
    message_id: str,
    summary: TrafficSummary,
) -> None:
    session = row["session_id_hash"]
    sent = await _post(collector, "/collect", [{"message_id": message_id, **row}])
    if sent is not None:
        summary.failed.append(f"collector: {sent}")
        return
    summary.collected += 1
    event = {k: v for k, v in row.items() if k != "session_id_hash"}
    path = f"/v1/sessions/{quote(session, safe='')}/events"
    answer = await _post(service, path, {"events": [event]})
    if answer is not None:
        summary.failed.append(f"service: {answer}")
        return
    summary.predicted += 1


async def _post(connection: Connection, path: str, body: Any) -> str | None:
    """None when answered 2xx; else what went wrong (after retries for network errors/5xx)."""
    data = json.dumps(body).encode()
    problem = ""
    for attempt in range(RETRIES + 1):
        try:
            answer = await connection.request("POST", path, body=data, headers=_JSON)
        except WireError as exc:
            problem = f"{path}: {exc}"
        else:
            if 200 <= answer.status < 300:
                return None
            problem = f"{path}: {answer.status} {answer.body[:200].decode(errors='replace')}"
            if answer.status < 500 and answer.status != 429:
                return problem
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    return problem

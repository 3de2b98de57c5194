"""Replicas behind a real load balancer: Debian's nginx in front of two collectors (replicas a and
b of one home) and two prediction services (sessions in one real Redis). A mixed stream of
tracker hits (Universal Analytics GET hits, Segment batches) and click-by-click predictions goes
through nginx; one replica of each is SIGKILLed mid-stream. The clients retry as the libraries do
(a connection error or a 5xx: the same request again). Then every acknowledged event lands
exactly once (both replicas' logs, compacted by concurrent compactors), and every prediction was
answered 200 with the flow's offline prediction for that session prefix.

nginx checks passively (open-source nginx has no active checks): a refused connection or a
502/503/504 marks the replica failed and the request goes to the other one
(`tests/nginx_balancer.py`)."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smallboat.collect.replay_requests import Protocol, Request, requests_of
from smallboat.collect.server import CollectorProcess
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS
from smallboat.serve.server import ServeProcess
from tests.compactors import compact_beside_another
from tests.nginx_balancer import Balancer
from tests.trained_service import Trained

pytestmark = pytest.mark.slow

WRITE_KEY = "lb-key"
COLLECT_ENV = {
    "SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS": "36500",
    "SMALLBOAT_COLLECT_COMPACT_SECONDS": "1",  # background compactors run during the test
    "SMALLBOAT_WRITE_KEYS": WRITE_KEY,
}
HEADERS: dict[str, dict[str, str]] = {
    "ga": {},
    "segment": {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    },
}
ACTIONS = ("detail", "add", "remove", "purchase")
RETRY_FOR_S = 60.0


def event(i: int) -> dict[str, Any]:
    """Event i, unique by its SKU (so each landed row maps back to it)."""
    row = {c: None for c in BROWSING_EVENTS.column_names}
    return row | {
        "session_id_hash": f"lb-session-{i % 53}",
        "server_timestamp_epoch_ms": 1_600_000_000_000 + i * 1000,
        "event_type": "event_product",
        "product_action": ACTIONS[i % 4],
        "product_sku_hash": f"sku-{i:06d}",
        "hashed_url": f"https://shop.example/p/{i}",
    }


def with_retries(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    """Call until an answer below 500, as the trackers' and SDKs' clients retry; the answer and
    how many tries failed."""
    deadline = time.monotonic() + RETRY_FOR_S
    failed = 0
    while True:
        try:
            answer = call()
            if answer.status_code < 500:
                return answer, failed
        except httpx.TransportError:
            pass
        failed += 1
        assert time.monotonic() < deadline, "no replica answered within the retry window"
        time.sleep(0.1)


@dataclass
class Stream:
    """A client thread; `progress` counts its acknowledged requests."""

    progress: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self, target: Callable[[], None]) -> Stream:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the test
                self.errors.append(repr(exc))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self


def send_hits(url: str, protocol: Protocol, numbers: list[int], stream: Stream) -> None:
    table = pa.Table.from_pylist([event(i) for i in numbers], schema=BROWSING_EVENTS.arrow_schema)
    batch = 1 if protocol == "ga" else 100  # Segment's libraries send up to 100 per batch
    with httpx.Client(timeout=30) as client:
        for request in requests_of(table, protocol=protocol, run=protocol, batch_size=batch):
            answer, failed = with_retries(partial(exchange, client, url, protocol, request))
            assert answer.status_code in (200, 204), answer.text
            stream.retries += failed
            stream.progress += 1


def exchange(client: httpx.Client, url: str, protocol: str, request: Request) -> httpx.Response:
    return client.request(
        request.method, f"{url}{request.path}", content=request.body, headers=HEADERS[protocol]
    )


def predict_clicks(
    url: str, trained: Trained, sessions: list[int], stream: Stream, checked: list[int]
) -> None:
    """Feed each session click by click; at each test example's prefix the answer must be the
    flow's offline prediction."""
    wanted: dict[int, dict[int, float]] = {}
    for (s, k), p in zip(trained.examples, trained.offline, strict=True):
        wanted.setdefault(s, {})[k] = float(p)
    with httpx.Client(timeout=30) as client:
        for s in sessions:
            session_id = f"lb-{s}"
            for k, row in enumerate(trained.session_rows[s][: max(wanted[s])], start=1):
                body = {"events": [row | {"session_id_hash": None}]}
                post = partial(client.post, f"{url}/v1/sessions/{session_id}/events", json=body)
                answer, failed = with_retries(post)
                stream.retries += failed
                assert answer.status_code == 200, answer.text
                got = answer.json()
                # A retried append of an event the dead replica had stored collapses to one.
                assert got["events_in_session"] == k, (session_id, k, got)
                if k in wanted[s]:
                    assert got["purchase_probability"] == pytest.approx(wanted[s][k], abs=1e-6)
                    checked.append(s)
                stream.progress += 1


def landed_skus(settings: Settings) -> tuple[Counter[str], set[str]]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    skus: Counter[str] = Counter()
    replicas = set()
    for path in folder.glob("collect-*.parquet"):
        rows = pq.read_table(path).to_pylist()
        skus.update(str(r["product_sku_hash"]) for r in rows)
        if rows:
            replicas.add(path.name.split("-")[1])
    return skus, replicas


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_replicas_behind_nginx_survive_a_killed_replica(
    trained: Trained, redis_url: str, tmp_path: Path
) -> None:
    collect_home = tmp_path / "collect-home"
    collect_settings = Settings(home=collect_home)
    serve_home = trained.settings.home_dir
    logs = tmp_path / "logs"
    logs.mkdir()
    collectors = [
        CollectorProcess(
            collect_home, env=COLLECT_ENV, args=["--replica", r], log_path=logs / f"collect-{r}"
        )
        for r in ("a", "b")
    ]
    services = [
        ServeProcess(
            serve_home,
            env={"SMALLBOAT_REDIS_URL": redis_url, "SMALLBOAT_SERVE_REPLICA": f"lb-{r}"},
            log_path=logs / f"serve-{r}",
        )
        for r in ("a", "b")
    ]
    for process in [*collectors, *services]:
        process.start()
    try:
        groups = {
            "collect": [f"127.0.0.1:{c.port}" for c in collectors],
            "serve": [f"127.0.0.1:{s.port}" for s in services],
        }
        with Balancer(groups) as nginx:
            numbers = list(range(6_000))
            ga_numbers, segment_numbers = numbers[:1_200], numbers[1_200:]
            wanted_sessions = sorted({s for s, _ in trained.examples})[:24]
            checked: list[int] = []
            collect_url, serve_url = nginx.url("collect"), nginx.url("serve")
            streams = {name: Stream() for name in ("ga", "segment", "predict-0", "predict-1")}
            streams["ga"].start(partial(send_hits, collect_url, "ga", ga_numbers, streams["ga"]))
            streams["segment"].start(
                partial(send_hits, collect_url, "segment", segment_numbers, streams["segment"])
            )
            for k in range(2):
                stream = streams[f"predict-{k}"]
                part = wanted_sessions[k::2]
                stream.start(partial(predict_clicks, serve_url, trained, part, stream, checked))
            wait_for(
                lambda: all(s.progress >= 20 or s.errors for s in streams.values()),
                60,
                "every stream flows before the kill",
            )
            at_kill = {name: s.progress for name, s in streams.items()}
            collectors[0].kill()  # SIGKILL mid-stream
            services[0].kill()
            for s in streams.values():
                assert s.thread is not None
                s.thread.join(300)
                assert not s.thread.is_alive()
            assert {n: s.errors for n, s in streams.items() if s.errors} == {}
            assert all(s.progress > at_kill[n] for n, s in streams.items()), (
                "every stream went on after the kill"
            )
            assert len(set(checked)) == len(wanted_sessions)

        # Compactors at once: the CLI (rolling replica b, still running), one more in this
        # process, and replica b's background passes; replica a's log is landed by them too.
        cli = compact_beside_another(collect_settings)
        assert cli.returncode == 0, cli.stderr
        skus, replicas = landed_skus(collect_settings)
        assert skus == Counter(f"sku-{i:06d}" for i in numbers)  # every one acknowledged, once
        assert replicas == {"a", "b"}, "both collectors took traffic"
    finally:
        for process in [*collectors, *services]:
            process.kill()

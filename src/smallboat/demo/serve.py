"""The demo's serving step: the registered champion answering real test-split sessions.

1. start `smallboat serve` in a child process on the demo's home (it loads the champion);
2. feed a few test-split sessions that added to cart, click by click, through
   `POST /v1/sessions/{id}/events` (the raw events before any purchase, in time order), and
   print the purchase probability after each click beside what the shopper really did;
3. call the reference Lambda's form (`GET /v1/predict?session=...`) and SageMaker's runtime
   API through boto3's own `sagemaker-runtime` client;
4. print the service's request count and latency from its `/metrics`, then stop it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.schema import BROWSING_EVENTS
from smallboat.serve.server import ServeProcess
from smallboat.warehouse.db import connect

DEMO_DIR = "demo-serve"
_COLUMNS = ", ".join(BROWSING_EVENTS.column_names)


@dataclass(frozen=True)
class DemoSession:
    session_id: str
    purchased: bool
    rows: list[dict[str, Any]]  # raw events before the first purchase, in time order


def serve_demo(settings: Settings, console: Console, *, sessions: int = 4) -> None:
    """Serve the champion briefly and print real predictions; raises SmallboatError when the
    service fails to answer."""
    picked = _test_sessions(settings, sessions)
    root = settings.home_dir / DEMO_DIR
    root.mkdir(parents=True, exist_ok=True)
    with ServeProcess(settings.home_dir, log_path=root / "serve.log") as service:
        ready = httpx.get(f"{service.url}/readyz").json()
        console.print(
            f"prediction service on {service.url}: model v{ready['model_version']} "
            f"({ready['model_source']}), sessions {ready['session_store']}"
        )
        with httpx.Client(base_url=service.url, timeout=30.0) as client:
            console.print(_click_by_click(client, picked))
            console.print(_lambda_form(client))
        console.print(_boto3_call(service.url, picked[0], settings.serve_endpoint_name))
        console.print(_latency(httpx.get(f"{service.url}/metrics").text))
    console.print(f"service log: {root / 'serve.log'}; run it yourself with `smallboat serve`")


def _test_sessions(settings: Settings, n: int) -> list[DemoSession]:
    """The first test-split sessions with an add: half that went on to buy, half that did not."""
    with connect(settings, read_only=True) as con:
        chosen = con.sql(
            f"""
            with ranked as (
                select session_id_hash, has_purchase,
                       row_number() over (partition by has_purchase order by started_at_ms) as nth
                from sessions
                where split = 'test' and has_add and n_events between 6 and 20
            )
            select session_id_hash, has_purchase from ranked where nth <= {(n + 1) // 2}
            order by nth, has_purchase desc
            """
        ).fetchall()
        if not chosen:
            raise SmallboatError("the warehouse has no test-split sessions with an add to serve")
        out = []
        for session_id, purchased in chosen[:n]:
            rows = con.execute(
                f"select {_COLUMNS} from stg_landing__browsing_events where session_id_hash = ? "
                "order by server_timestamp_epoch_ms",
                [session_id],
            ).fetchall()
            events = [dict(zip(BROWSING_EVENTS.column_names, row, strict=True)) for row in rows]
            first_purchase = min(
                (
                    e["server_timestamp_epoch_ms"]
                    for e in events
                    if e["product_action"] == "purchase"
                ),
                default=None,
            )
            before = [
                {k: v for k, v in e.items() if k != "session_id_hash"}
                for e in events
                if first_purchase is None or e["server_timestamp_epoch_ms"] < first_purchase
            ]
            out.append(DemoSession(session_id, bool(purchased), before))
    return out


def _click_by_click(client: httpx.Client, sessions: list[DemoSession]) -> Table:
    table = Table(
        title="P(purchase) after each click, served from the session store "
        "(POST /v1/sessions/{id}/events)"
    )
    table.add_column("session")
    table.add_column("clicks", justify="right")
    table.add_column("P(purchase) after each click (. pageview, d detail, a add, r remove)")
    table.add_column("then", justify="center")
    for session in sessions:
        trail = []
        session_id = f"demo-{session.session_id[:12]}"
        client.delete(f"/v1/sessions/{session_id}")
        for row in session.rows:
            r = client.post(f"/v1/sessions/{session_id}/events", json={"events": [row]})
            if r.status_code != 200:
                raise SmallboatError(f"the service answered {r.status_code}: {r.text}")
            p = r.json()["purchase_probability"]
            mark = {"detail": "d", "add": "a", "remove": "r"}.get(row["product_action"] or "", ".")
            trail.append(f"{mark}{p:.2f}")
        table.add_row(
            session.session_id[:12],
            str(len(session.rows)),
            " ".join(trail),
            "[green]bought[/]" if session.purchased else "[red]left[/]",
        )
    return table


def _lambda_form(client: httpx.Client) -> str:
    lines = ["the reference Lambda's form, GET /v1/predict?session=...:"]
    for actions in ("detail,add", "detail,add,detail,detail,view,view", "add,remove,view"):
        p = client.get("/v1/predict", params={"session": actions}).json()["purchase_probability"]
        lines.append(f"  {actions:<36} P(purchase) = {p:.3f}")
    return "\n".join(lines)


def _boto3_call(url: str, session: DemoSession, endpoint: str) -> str:
    try:
        import boto3
    except ImportError:
        return "boto3 is not installed (pip install -e '.[dev]'): skipped the SageMaker call"
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    answer = client.invoke_endpoint(
        EndpointName=endpoint,
        ContentType="application/json",
        Body=json.dumps({"session_id": session.session_id, "events": session.rows}),
    )
    body = json.loads(answer["Body"].read())
    return (
        f"boto3 sagemaker-runtime invoke_endpoint(EndpointName={endpoint!r}) -> "
        f"P(purchase) = {body['purchase_probability']:.3f} for session "
        f"{session.session_id[:12]} ({len(session.rows)} events), model v{body['model_version']}"
    )


def _latency(metrics: str) -> str:
    """Requests and mean latency per route, from the service's own Prometheus counters."""
    totals: dict[str, list[float]] = {}
    for line in metrics.splitlines():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            prefix = f"smallboat_request_duration_seconds{suffix}{{"
            if line.startswith(prefix):
                route = line.split('route="', 1)[1].split('"', 1)[0]
                totals.setdefault(route, [0.0, 0.0])[slot] += float(line.rsplit(" ", 1)[1])
    parts = [
        f"{route} {int(count)} x {1000 * total / count:.2f} ms"
        for route, (total, count) in sorted(totals.items())
        if count and route.startswith(("/v1", "/end"))
    ]
    stamp = time.strftime("%H:%M:%S")
    return f"served at {stamp} (mean server-side latency, from /metrics): " + "; ".join(parts)

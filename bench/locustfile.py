"""A locust scenario for the prediction service: shoppers clicking through real held-out sessions.

Each simulated shopper takes a real session of the home's test split (held out from training),
sends its events one click at a time to `POST /v1/sessions/{id}/events` (the route a page calls on
each click; the service keeps the session), waits a click's think time, and ends the session with
`DELETE /v1/sessions/{id}`. One task in ten is instead a batch `POST /v1/predict` of 50 sessions
(a nightly job scoring a list). Runs headless against any deployment:

    locust -f bench/locustfile.py --headless -u 20 -r 5 -t 30s --host http://127.0.0.1:8080

Sessions come from the home's warehouse (SMALLBOAT_HOME, read only) when it has one; otherwise
(a remote deployment, no warehouse here) from SMALLBOAT_LOCUST_SESSIONS, a JSON file holding a
list of sessions, each a list of browsing events. Think time between clicks:
SMALLBOAT_LOCUST_THINK_S (default 0.05 s: a load test, not a real shopper's pace).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

BATCH_SESSIONS = 50
MAX_SESSIONS = 2_000
THINK_S = float(os.environ.get("SMALLBOAT_LOCUST_THINK_S", "0.05"))

SESSIONS: list[list[dict[str, Any]]] = []


def held_out_sessions(limit: int) -> list[list[dict[str, Any]]]:
    """Raw browsing rows of up to `limit` test-split sessions of the home's warehouse, each in
    event-time order (what a page would have sent, click by click)."""
    from smallboat.config import Settings
    from smallboat.warehouse.db import connect

    settings = Settings()
    query = f"""
        with test as (
            select session_id_hash from sessions where split = 'test'
            order by hash(session_id_hash) limit {int(limit)}
        )
        select e.session_id_hash, e.event_type, e.product_action, e.product_sku_hash,
               e.server_timestamp_epoch_ms, e.hashed_url
        from stg_landing__browsing_events e join test using (session_id_hash)
        order by e.session_id_hash, e.server_timestamp_epoch_ms
    """
    with connect(settings, read_only=True) as con:
        frame = con.execute(query).df()
    out: dict[str, list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        row = {k: (None if v != v else v) for k, v in row.items()}  # NaN -> None
        row["server_timestamp_epoch_ms"] = int(row["server_timestamp_epoch_ms"])
        out.setdefault(str(row["session_id_hash"]), []).append(row)
    return [rows for rows in out.values() if len(rows) >= 2]


@events.init.add_listener
def load_sessions(environment: Any, **_: Any) -> None:
    source = os.environ.get("SMALLBOAT_LOCUST_SESSIONS")
    loaded = json.loads(Path(source).read_text()) if source else held_out_sessions(MAX_SESSIONS)
    if not loaded:
        raise SystemExit(
            "no sessions to replay: point SMALLBOAT_HOME at a transformed home, or "
            "SMALLBOAT_LOCUST_SESSIONS at a JSON list of sessions"
        )
    SESSIONS[:] = loaded


class Shopper(HttpUser):
    wait_time = between(THINK_S / 2, THINK_S * 1.5)

    @task(9)
    def click_through_a_session(self) -> None:
        rows = random.choice(SESSIONS)
        session_id = f"locust-{uuid.uuid4().hex[:16]}"
        route = "/v1/sessions/[id]/events"
        for row in rows:
            event = {**row, "session_id_hash": None}
            with self.client.post(
                f"/v1/sessions/{session_id}/events",
                json={"events": [event]},
                name=route,
                catch_response=True,
            ) as answer:
                if answer.status_code != 200:
                    answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                    return
                if answer.json().get("purchase_probability") is None:
                    answer.failure("no purchase_probability")
                    return
            self.wait()
        self.client.delete(f"/v1/sessions/{session_id}", name="/v1/sessions/[id]")

    @task(1)
    def score_a_batch(self) -> None:
        batch = random.sample(SESSIONS, min(BATCH_SESSIONS, len(SESSIONS)))
        body = {"sessions": [{"events": rows} for rows in batch]}
        with self.client.post(
            "/v1/predict", json=body, name="/v1/predict (batch)", catch_response=True
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
            elif len(answer.json().get("predictions", [])) != len(batch):
                answer.failure("not one prediction per session")

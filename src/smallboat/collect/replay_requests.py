"""The HTTP requests that replay a browsing file, one protocol at a time, as each tracker's own
client sends them (`smallboat replay --as ...`; the crash test encodes its traffic with these too).

- `ga`: one `GET /collect` hit per row; `ga4`: one gtag.js-style `GET /g/collect` hit per row;
- `segment`: `POST /v1/batch`; `json`: `POST /collect`; `snowplow`: `POST
  /com.snowplowanalytics.snowplow/tp2`, each of up to `batch_size` events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import pyarrow as pa

from smallboat.collect.ga import GA4_ACTIONS
from smallboat.collect.protocols import SEGMENT_ACTIONS
from smallboat.collect.snowplow import (
    ACTION_SCHEMA,
    CONTEXTS_SCHEMA,
    PAYLOAD_SCHEMA,
    PRODUCT_SCHEMA,
    SNOWPLOW_ACTIONS,
    UNSTRUCT_SCHEMA,
)

Protocol = Literal["ga", "ga4", "segment", "json", "snowplow"]
PROTOCOLS: tuple[str, ...] = ("ga", "ga4", "segment", "json", "snowplow")
ACTION_EVENTS: dict[str, str] = {action: name for name, action in SEGMENT_ACTIONS.items()}
"""Product action -> the Segment e-commerce event name that maps to it."""
GA4_EVENTS: dict[str, str] = {action: name for name, action in GA4_ACTIONS.items()}
"""Product action -> the GA4 event name that maps to it."""
SNOWPLOW_EVENTS: dict[str, str] = {action: kind for kind, action in SNOWPLOW_ACTIONS.items()}
"""Product action -> the Snowplow e-commerce action type that maps to it."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    events: int
    body: bytes | None = None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _rows(events: pa.Table) -> Iterator[dict[str, Any]]:
    for batch in events.to_batches(max_chunksize=10_000):
        yield from batch.to_pylist()


def requests_of(
    events: pa.Table, *, protocol: Protocol, run: str, batch_size: int
) -> Iterator[Request]:
    """The requests that send `events`, lazily (a large file is never all in memory as JSON)."""
    if protocol == "ga":
        for i, row in enumerate(_rows(events)):
            yield Request("GET", f"/collect?{urlencode(_ga_params(row, run, i))}", 1)
        return
    if protocol == "ga4":
        for i, row in enumerate(_rows(events)):
            yield Request("GET", f"/g/collect?{urlencode(_ga4_params(row, run, i))}", 1)
        return
    make = {"segment": _segment_message, "snowplow": _snowplow_event}.get(protocol, _json_event)
    chunk: list[dict[str, Any]] = []
    for i, row in enumerate(_rows(events)):
        chunk.append(make(row, run, i))
        if len(chunk) == batch_size:
            yield _request_of(protocol, chunk)
            chunk = []
    if chunk:
        yield _request_of(protocol, chunk)


def _request_of(protocol: Protocol, chunk: list[dict[str, Any]]) -> Request:
    if protocol == "segment":
        return Request("POST", "/v1/batch", len(chunk), json.dumps({"batch": chunk}).encode())
    if protocol == "snowplow":
        body = json.dumps({"schema": PAYLOAD_SCHEMA + "0-4", "data": chunk}).encode()
        return Request("POST", "/com.snowplowanalytics.snowplow/tp2", len(chunk), body)
    return Request("POST", "/collect", len(chunk), json.dumps(chunk).encode())


def _ga_params(row: dict[str, Any], run: str, i: int) -> dict[str, str]:
    session = row["session_id_hash"]
    params = {"v": "1", "cid": session, "sid": session, "z": f"replay-{run}-{i}"}
    if row["event_type"] == "pageview":
        params["t"] = "pageview"
    else:
        params.update(t="event", pa=row["product_action"], pr1id=row["product_sku_hash"])
    params["ts_ms"] = str(row["server_timestamp_epoch_ms"])
    if row["hashed_url"] is not None:
        params["dl"] = row["hashed_url"]
    return params


def _ga4_params(row: dict[str, Any], run: str, i: int) -> dict[str, str]:
    session = row["session_id_hash"]
    params = {"v": "2", "tid": "G-REPLAY", "cid": session, "sid": session, "_p": run, "_s": str(i)}
    if row["event_type"] == "pageview":
        params["en"] = "page_view"
    else:
        params.update(en=GA4_EVENTS[row["product_action"]], pr1=f"id{row['product_sku_hash']}")
    params["ts_ms"] = str(row["server_timestamp_epoch_ms"])
    if row["hashed_url"] is not None:
        params["dl"] = row["hashed_url"]
    return params


def _segment_message(row: dict[str, Any], run: str, i: int) -> dict[str, Any]:
    session = row["session_id_hash"]
    properties: dict[str, Any] = {"session_id": session}
    if row["hashed_url"] is not None:
        properties["url"] = row["hashed_url"]
    message: dict[str, Any] = {
        "anonymousId": session,
        "messageId": f"replay-{run}-{i}",
        "timestamp": _iso(row["server_timestamp_epoch_ms"]),
        "properties": properties,
    }
    action = row["product_action"]
    if row["event_type"] == "pageview":
        message["type"] = "page"
    else:
        message.update(type="track", event=ACTION_EVENTS[action])
        if action == "purchase":
            properties["products"] = [{"product_id": row["product_sku_hash"]}]
        else:
            properties["product_id"] = row["product_sku_hash"]
    return message


def _snowplow_event(row: dict[str, Any], run: str, i: int) -> dict[str, Any]:
    session = row["session_id_hash"]
    event = {
        "e": "pv",
        "eid": f"replay-{run}-{i}",
        "p": "srv",
        "tv": "smallboat-replay",
        "sid": session,
        "duid": session,
        "ttm": str(row["server_timestamp_epoch_ms"]),
    }
    if row["hashed_url"] is not None:
        event["url"] = row["hashed_url"]
    if row["event_type"] != "pageview":
        action = {"type": SNOWPLOW_EVENTS[row["product_action"]]}
        product = {"schema": PRODUCT_SCHEMA + "0-0", "data": {"id": row["product_sku_hash"]}}
        event["e"] = "ue"
        event["ue_pr"] = json.dumps(
            {"schema": UNSTRUCT_SCHEMA, "data": {"schema": ACTION_SCHEMA + "0-2", "data": action}}
        )
        event["co"] = json.dumps({"schema": CONTEXTS_SCHEMA, "data": [product]})
    return event


def _json_event(row: dict[str, Any], run: str, i: int) -> dict[str, Any]:
    return {"message_id": f"replay-{run}-{i}", **row}

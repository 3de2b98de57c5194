"""The happy path of `POST /v1/predict` without pydantic: orjson in, orjson out.

Profiled at one client (docs/serving.md, "Where a request's time goes"), FastAPI's validation of
a 20-event body (~0.3 ms) and its serialization of the answer through the response model
(~0.3 ms) cost as much as encoding the session. `plain_predict_body` checks a body the way the
pydantic models do, with direct type and range checks, and returns its rows; it returns None for
ANY body it is not sure of (not plain JSON to orjson, a NaN, an integer past 2**53, a float
where an integer goes, an unknown or missing key, a value out of range, an event whose product
columns disagree, "" where a Literal goes...), and the route then answers through FastAPI as
declared. So every error keeps one definition (the models'), and the lane only ever answers a
body the models take, with the rows the models would give (tests/unit/test_serve_plainbody.py
compares both on every kind of body).

`plain_append_body` does the same for `POST /v1/sessions/{session_id}/events` (`AppendEvents`).
`answer_json` writes the answer the response model would (`Prediction` or `BatchPredictions`,
every field, in order) with orjson.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from smallboat import schema
from smallboat.serve.models import (
    DEFAULT_K,
    MAX_BATCH_SESSIONS,
    MAX_ID,
    MAX_K,
    MAX_TIMESTAMP_MS,
    MAX_URL,
    BrowsingEvent,
)
from smallboat.serve.scoring import NextItemOptions, Outcome

_TOP_KEYS = frozenset(("session_id", "events", "sessions", "k", "exclude_seen"))
_SESSION_KEYS = frozenset(("session_id", "events"))
_APPEND_KEYS = frozenset(("events",))
_EVENT_KEYS = frozenset(BrowsingEvent.model_fields)
"""The keys an event may carry: the fields of the model this lane stands in for."""
_EVENT_TYPES = frozenset(schema.EVENT_TYPES)
_ACTIONS = frozenset(schema.PRODUCT_ACTIONS)


class _Doubtful(Exception):
    """The body is not certainly valid: FastAPI's path decides."""


@dataclass(frozen=True)
class PlainBody:
    """A valid `PredictBody`, as the rows the route scores."""

    sessions: list[list[dict[str, Any]]]
    session_ids: list[str | None]
    is_batch: bool
    options: NextItemOptions


def plain_predict_body(raw: bytes) -> PlainBody | None:
    """`raw`'s sessions as raw browsing rows, or None when the body is not certainly a valid
    PredictBody (FastAPI's validation then answers it)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    try:
        return _plain(data)
    except _Doubtful:
        return None


def _plain(data: Any) -> PlainBody:
    if type(data) is not dict or not data.keys() <= _TOP_KEYS:
        raise _Doubtful
    k = data.get("k", DEFAULT_K)
    exclude_seen = data.get("exclude_seen", False)
    if type(k) is not int or not 1 <= k <= MAX_K or type(exclude_seen) is not bool:
        raise _Doubtful
    options = NextItemOptions(k=k, exclude_seen=exclude_seen)
    if "sessions" in data:
        sessions = data["sessions"]
        if (
            "events" in data
            or "session_id" in data
            or type(sessions) is not list
            or not 1 <= len(sessions) <= MAX_BATCH_SESSIONS
        ):
            raise _Doubtful
        rows: list[list[dict[str, Any]]] = []
        ids: list[str | None] = []
        for session in sessions:
            if type(session) is not dict or not session.keys() <= _SESSION_KEYS:
                raise _Doubtful
            session_id = _text(session.get("session_id"), MAX_ID)
            rows.append(_rows(session.get("events"), session_id))
            ids.append(session_id)
        return PlainBody(rows, ids, True, options)
    session_id = _text(data.get("session_id"), MAX_ID)
    return PlainBody([_rows(data.get("events"), session_id)], [session_id], False, options)


def plain_append_body(raw: bytes, session_id: str) -> list[dict[str, Any]] | None:
    """`raw`'s events as the rows of session `session_id`, or None when the body is not
    certainly a valid `AppendEvents` for that session (the route then answers it: an event
    naming another session is its 422)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or data.keys() != _APPEND_KEYS:
        return None
    events = data["events"]
    if type(events) is not list or not events:
        return None
    try:
        rows = _rows(events, session_id)
    except _Doubtful:
        return None
    if any(row["session_id_hash"] != session_id for row in rows):
        return None
    return rows


def _text(value: Any, max_length: int) -> str | None:
    """An optional id or URL: "" is null; a string over `max_length` characters is doubtful
    (orjson refuses lone surrogates, so any str it gives is valid Unicode)."""
    if value is None or value == "":
        return None
    if type(value) is not str or len(value) > max_length:
        raise _Doubtful
    return value


def _rows(events: Any, session_id: str | None) -> list[dict[str, Any]]:
    """`BrowsingEvent.row` of each event, checked as `BrowsingEvent` checks it."""
    if type(events) is not list:
        raise _Doubtful
    rows = []
    for event in events:
        if type(event) is not dict or not event.keys() <= _EVENT_KEYS:
            raise _Doubtful
        event_type = event.get("event_type")
        action = event.get("product_action")
        if action == "":
            action = None
        timestamp = event.get("server_timestamp_epoch_ms")
        if (
            type(event_type) is not str
            or event_type not in _EVENT_TYPES
            or (action is not None and (type(action) is not str or action not in _ACTIONS))
            or type(timestamp) is not int
            or not 0 <= timestamp <= MAX_TIMESTAMP_MS
        ):
            raise _Doubtful
        sku = _text(event.get("product_sku_hash"), MAX_ID)
        if schema.product_columns_problem(event_type, action, sku) is not None:
            raise _Doubtful
        rows.append(
            {
                "session_id_hash": _text(event.get("session_id_hash"), MAX_ID) or session_id,
                "event_type": event_type,
                "product_action": action,
                "product_sku_hash": sku,
                "server_timestamp_epoch_ms": timestamp,
                "hashed_url": _text(event.get("hashed_url"), MAX_URL),
            }
        )
    return rows


def wire_prediction(outcome: Outcome, session_id: str | None) -> dict[str, Any]:
    """`outcome` answering `session_id`, as `Prediction`'s JSON (every field, in order)."""
    next_items = outcome.next_items
    return {
        "session_id": session_id,
        "purchase_probability": outcome.purchase_probability,
        "model_version": outcome.model_version,
        "events_used": outcome.events_used,
        "events_in_session": outcome.events_in_session,
        "oov_skus": outcome.oov_skus,
        "note": outcome.note,
        "next_items": None
        if next_items is None
        else [{"sku": sku, "score": score} for sku, score in next_items],
    }


def answer_json(body: PlainBody, outcomes: Sequence[Outcome], version: str) -> bytes:
    """The answer to `body`: one `Prediction`, or `BatchPredictions` in request order (its
    `model_version` the first outcome's, else `version`)."""
    predictions = [
        wire_prediction(o, sid) for o, sid in zip(outcomes, body.session_ids, strict=True)
    ]
    if not body.is_batch:
        return orjson.dumps(predictions[0])
    if outcomes:
        version = outcomes[0].model_version
    return orjson.dumps({"model_version": version, "predictions": predictions})

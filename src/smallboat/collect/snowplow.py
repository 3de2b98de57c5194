"""Snowplow's tracker protocol mapped onto canonical hits (one browsing row each).

- `e=pv` (page view) is a pageview.
- `e=ue` (self-describing event) whose event is the e-commerce plugin's
  `snowplow_ecommerce_action`: `product_view` -> detail, `add_to_cart` -> add,
  `remove_from_cart` -> remove, `transaction` -> purchase, one row per `product` entity in the
  event's contexts (the product's `id` is the SKU). Its other actions (list_view, checkout_step,
  promo_view, refund, ...) and other self-describing events are acknowledged and ignored.
- Every other event type (page pings, structured events, ...) is acknowledged and ignored.

Self-describing JSON comes plain (`ue_pr`, `co`) or base64url (`ue_px`, `cx`; padding optional).
The session is the tracker's `sid` (else the `client_session` entity's `sessionId`); without one,
sessions are cut from the client id: `duid`, else `nuid`, else `uid`. The event time is `ttm`
(the true timestamp) when sent, else Snowplow's derived time (receive time minus the time the
event waited on the device, `stm - dtm`), else the receive time. Message ids are `sp:<eid>`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from smallboat.collect.events import Hit, HitError, TimePolicy, hash_url, row_id
from smallboat.collect.fastmodels import SnowplowLike
from smallboat.collect.models import MAX_ID
from smallboat.web.jsontext import loads

ECOMMERCE_VENDOR = "iglu:com.snowplowanalytics.snowplow.ecommerce/"
ACTION_SCHEMA = ECOMMERCE_VENDOR + "snowplow_ecommerce_action/jsonschema/1-"
PRODUCT_SCHEMA = ECOMMERCE_VENDOR + "product/jsonschema/1-"
SESSION_SCHEMA = "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-"
PAYLOAD_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-"
UNSTRUCT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
SNOWPLOW_ACTIONS: dict[str, str] = {
    "product_view": "detail",
    "add_to_cart": "add",
    "remove_from_cart": "remove",
    "transaction": "purchase",
}
"""The e-commerce plugin's action types -> product actions."""
IGNORED_ACTIONS = frozenset(
    {
        "list_view",
        "list_click",
        "checkout_step",
        "promo_view",
        "promo_click",
        "refund",
        "trns_error",
    }
)
EVENT_TYPES = frozenset({"pp", "se", "tr", "ti", "ad", "s"})
"""Event types ignored by name in the counters (any other is counted as `other event`)."""

Row = tuple[str, str | None, str | None]


def snowplow_hits(
    event: SnowplowLike, *, received_ms: int, policy: TimePolicy, at: str = ""
) -> tuple[list[Hit], str | None]:
    """The rows of one tracker-protocol event, and why it logs none (None when it logs rows).
    A bad event raises HitError, its field names prefixed with `at` (`data[3].`)."""
    contexts = _contexts(event, at)
    rows, ignored = _rows(event, contexts, at)
    if ignored is not None:
        return [], ignored
    client = event.duid or event.nuid or event.uid
    session = event.sid or _session_of(contexts)
    if session is None and client is None:
        raise HitError(f"{at}sid", "or duid, nuid or uid is required: the session or the user")
    ts = _event_ms(event, received_ms, policy, at)
    url = hash_url(event.url) if event.url else None
    base = f"sp:{event.eid}" if event.eid else f"sp:~{uuid.uuid4().hex}"
    hits = [
        Hit(row_id(base, i), event_type, action, sku, ts, url, session, client, "snowplow")
        for i, (event_type, action, sku) in enumerate(rows)
    ]
    return hits, None


def _rows(
    event: SnowplowLike, contexts: list[dict[str, Any]], at: str
) -> tuple[list[Row], str | None]:
    if event.e == "pv":
        return [("pageview", None, None)], None
    if event.e != "ue":
        return [], f"e={event.e}" if event.e in EVENT_TYPES else "other event"
    inner = _self_describing(event, at)
    schema = inner.get("schema")
    if not isinstance(schema, str) or not schema.startswith(ACTION_SCHEMA):
        return [], "self-describing (not e-commerce)"
    data = inner.get("data")
    kind = data.get("type") if isinstance(data, dict) else None
    action = SNOWPLOW_ACTIONS.get(kind) if isinstance(kind, str) else None
    if action is None:
        if kind in IGNORED_ACTIONS:
            return [], f"ecommerce {kind}"
        raise HitError(
            f"{at}ue_pr.data.data.type",
            f"{kind!r} is not an e-commerce action type: one of "
            f"{', '.join(sorted(SNOWPLOW_ACTIONS.keys() | IGNORED_ACTIONS))}",
        )
    skus = _product_skus(contexts, at)
    if not skus:
        raise HitError(
            f"{at}co",
            f"has no product entity ({PRODUCT_SCHEMA}0-0 with an id) for the {kind} action",
        )
    return [("event_product", action, sku) for sku in skus], None


def _decode(event: SnowplowLike, plain: str, encoded: str, at: str) -> Any:
    """The JSON of field `plain` (as sent) or `encoded` (base64url); None when neither is sent."""
    text: str | None = getattr(event, plain)
    name = plain
    if text is None:
        raw: str | None = getattr(event, encoded)
        if raw is None:
            return None
        name = encoded
        try:
            padded = raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4)
            data = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
            text = data.decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise HitError(f"{at}{name}", "is not base64url-encoded UTF-8 JSON") from None
    try:
        return loads(text)
    except ValueError as exc:
        raise HitError(f"{at}{name}", f"is not valid JSON ({exc})") from None


def _self_describing(event: SnowplowLike, at: str) -> dict[str, Any]:
    """The event inside `ue_pr`/`ue_px`'s `unstruct_event` envelope: {schema, data}."""
    envelope = _decode(event, "ue_pr", "ue_px", at)
    if envelope is None:
        raise HitError(f"{at}ue_pr", "(or ue_px) is required on a self-describing event (e=ue)")
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict):
        raise HitError(f"{at}ue_pr", "needs a data object with the event's schema and data")
    return inner


def _contexts(event: SnowplowLike, at: str) -> list[dict[str, Any]]:
    """The context entities of `co`/`cx`: a `contexts` envelope whose data is a list."""
    envelope = _decode(event, "co", "cx", at)
    if envelope is None:
        return []
    entities = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(entities, list):
        raise HitError(f"{at}co", "needs a data list of context entities")
    return [e for e in entities if isinstance(e, dict)]


def _product_skus(contexts: list[dict[str, Any]], at: str) -> list[str]:
    skus = []
    for i, entity in enumerate(contexts):
        schema = entity.get("schema")
        if not isinstance(schema, str) or not schema.startswith(PRODUCT_SCHEMA):
            continue
        data = entity.get("data")
        sku = data.get("id") if isinstance(data, dict) else None
        if isinstance(sku, int | float) and not isinstance(sku, bool):
            sku = str(sku)
        if not isinstance(sku, str) or not sku:
            raise HitError(f"{at}co.data[{i}].data.id", "is required: the product's SKU")
        if len(sku) > MAX_ID:
            raise HitError(
                f"{at}co.data[{i}].data.id",
                f"is {len(sku)} characters long; at most {MAX_ID} are accepted",
            )
        skus.append(sku)
    return skus


def _session_of(contexts: list[dict[str, Any]]) -> str | None:
    for entity in contexts:
        schema = entity.get("schema")
        if isinstance(schema, str) and schema.startswith(SESSION_SCHEMA):
            data = entity.get("data")
            session = data.get("sessionId") if isinstance(data, dict) else None
            if isinstance(session, str) and 0 < len(session) <= MAX_ID:
                return session
    return None


def _ms(value: str, name: str) -> int:
    try:
        return int(float(value)) if "." in value else int(value)
    except (ValueError, OverflowError):
        raise HitError(name, f"{value!r} is not a time in epoch milliseconds") from None


def _event_ms(event: SnowplowLike, received_ms: int, policy: TimePolicy, at: str) -> int:
    if event.ttm is not None:
        return policy.check(f"{at}ttm", _ms(event.ttm, f"{at}ttm"), received_ms)
    if event.dtm is not None and event.stm is not None:
        waited = _ms(event.stm, f"{at}stm") - _ms(event.dtm, f"{at}dtm")
        return policy.check(f"{at}dtm", received_ms - max(waited, 0), received_ms)
    if event.dtm is not None:
        return policy.check(f"{at}dtm", _ms(event.dtm, f"{at}dtm"), received_ms)
    return received_ms

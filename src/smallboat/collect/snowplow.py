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
from functools import lru_cache
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
_ENCODED = {"ue_pr": "ue_px", "co": "cx"}
"""The base64url field of each plain self-describing JSON field."""

Row = tuple[str, str | None, str | None]
_PAGEVIEW: list[Row] = [("pageview", None, None)]
_new = tuple.__new__


def snowplow_hits(
    event: SnowplowLike, *, received_ms: int, policy: TimePolicy, at: str = ""
) -> tuple[list[Hit], str | None]:
    """The rows of one tracker-protocol event, and why it logs none (None when it logs rows).
    A bad event raises HitError, its field names prefixed with `at` (`data[3].`)."""
    contexts = _contexts(event, at)
    if event.e == "pv":  # most events: no self-describing JSON to read
        rows = _PAGEVIEW
    else:
        rows, ignored = _rows(event, contexts, at)
        if ignored is not None:
            return [], ignored
    client = event.duid or event.nuid or event.uid
    session = event.sid or (_session_of(contexts) if contexts else None)
    if session is None and client is None:
        raise HitError(f"{at}sid", "or duid, nuid or uid is required: the session or the user")
    ts = _event_ms(event, received_ms, policy, at)
    url = hash_url(event.url) if event.url else None
    base = f"sp:{event.eid}" if event.eid else f"sp:~{uuid.uuid4().hex}"
    # `tuple.__new__`, not `Hit(...)`: the same tuple without the Python-level `__new__` that
    # NamedTuple generates (a sixth of a page view's mapping went to it).
    if len(rows) == 1:  # a page view, one product
        kind, action, sku = rows[0]
        return [_new(Hit, (base, kind, action, sku, ts, url, session, client, "snowplow"))], None
    return [
        _new(Hit, (row_id(base, i), kind, action, sku, ts, url, session, client, "snowplow"))
        for i, (kind, action, sku) in enumerate(rows)
    ], None


def _rows(
    event: SnowplowLike, contexts: list[dict[str, Any]], at: str
) -> tuple[list[Row], str | None]:
    if event.e == "pv":
        return _PAGEVIEW, None
    if event.e != "ue":
        return [], f"e={event.e}" if event.e in EVENT_TYPES else "other event"
    try:
        action, kind, ignored = _ecommerce_action(event.ue_pr, event.ue_px)
    except HitError as exc:  # its field names are the event's own: prefixed here
        raise HitError(f"{at}{exc.param}", exc.problem) from None
    if ignored is not None:
        return [], ignored
    skus = _product_skus(contexts, at)
    if not skus:
        raise HitError(
            f"{at}co",
            f"has no product entity ({PRODUCT_SCHEMA}0-0 with an id) for the {kind} action",
        )
    return [("event_product", action, sku) for sku in skus], None


@lru_cache(maxsize=32)
def _ecommerce_action(
    ue_pr: str | None, ue_px: str | None
) -> tuple[str, str, None] | tuple[None, None, str]:
    """The product action and the plugin's action type of a self-describing event's JSON, or
    why the event is ignored; a HitError naming the event's field (unprefixed). Cached, as a
    function of the texts alone (32 pairs of at most MAX_SNOWPLOW_JSON characters each): a
    shop's trackers send the same few texts over and over (`{"type": "add_to_cart"}`...), and
    reading each again was a fifth of an e-commerce event's mapping."""
    inner = _self_describing(ue_pr, ue_px)
    schema = inner.get("schema")
    if not isinstance(schema, str) or not schema.startswith(ACTION_SCHEMA):
        return None, None, "self-describing (not e-commerce)"
    data = inner.get("data")
    kind = data.get("type") if isinstance(data, dict) else None
    action = SNOWPLOW_ACTIONS.get(kind) if isinstance(kind, str) else None
    if action is None:
        if kind in IGNORED_ACTIONS:
            return None, None, f"ecommerce {kind}"
        raise HitError(
            "ue_pr.data.data.type",
            f"{kind!r} is not an e-commerce action type: one of "
            f"{', '.join(sorted(SNOWPLOW_ACTIONS.keys() | IGNORED_ACTIONS))}",
        )
    assert isinstance(kind, str)
    return action, kind, None


def _decode(text: str | None, encoded: str | None, name: str, at: str) -> Any:
    """The JSON of field `name` (as sent, `text`) or of its base64url form (`encoded`, field
    `name` with `x` for `pr`/`o`: `ue_px`, `cx`); None when neither is sent."""
    if text is None:
        if encoded is None:
            return None
        name = _ENCODED[name]
        try:
            padded = encoded.replace("+", "-").replace("/", "_") + "=" * (-len(encoded) % 4)
            data = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
            text = data.decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise HitError(f"{at}{name}", "is not base64url-encoded UTF-8 JSON") from None
    try:
        return loads(text)
    except ValueError as exc:
        raise HitError(f"{at}{name}", f"is not valid JSON ({exc})") from None


def _self_describing(ue_pr: str | None, ue_px: str | None) -> dict[str, Any]:
    """The event inside `ue_pr`/`ue_px`'s `unstruct_event` envelope: {schema, data}."""
    envelope = _decode(ue_pr, ue_px, "ue_pr", "")
    if envelope is None:
        raise HitError("ue_pr", "(or ue_px) is required on a self-describing event (e=ue)")
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict):
        raise HitError("ue_pr", "needs a data object with the event's schema and data")
    return inner


def _contexts(event: SnowplowLike, at: str) -> list[dict[str, Any]]:
    """The context entities of `co`/`cx`: a `contexts` envelope whose data is a list."""
    if event.co is None and event.cx is None:  # most page views
        return []
    envelope = _decode(event.co, event.cx, "co", at)
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
        if type(sku) is not str and isinstance(sku, (int, float)) and not isinstance(sku, bool):
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


def _ms(value: str, at: str, name: str) -> int:
    try:
        return int(float(value)) if "." in value else int(value)
    except (ValueError, OverflowError):
        raise HitError(f"{at}{name}", f"{value!r} is not a time in epoch milliseconds") from None


def _event_ms(event: SnowplowLike, received_ms: int, policy: TimePolicy, at: str) -> int:
    if event.ttm is not None:
        return policy.check(f"{at}ttm", _ms(event.ttm, at, "ttm"), received_ms)
    if event.dtm is not None and event.stm is not None:
        waited = _ms(event.stm, at, "stm") - _ms(event.dtm, at, "dtm")
        return policy.check(f"{at}dtm", received_ms - max(waited, 0), received_ms)
    if event.dtm is not None:
        return policy.check(f"{at}dtm", _ms(event.dtm, at, "dtm"), received_ms)
    return received_ms

"""Each wire format mapped onto canonical hits (one browsing row each).

- GA hit: `t=pageview` is a plain pageview; a product action `pa` with products `pr<N>id` adds
  one `event_product` row per product (so a `t=pageview&pa=detail` product page logs a pageview
  AND a detail at the same millisecond, as the Coveo release does); `t=event` needs `pa`.
- Segment: a page call is a pageview; the e-commerce spec's track events map to actions
  (SEGMENT_ACTIONS), "Order Completed" yielding one purchase per entry of `properties.products`.
  Other track events and other message types are acknowledged and ignored.
- Canonical JSON: one row per event, as sent.

Message ids are namespaced by protocol (`ga:<cid>:<z>`, `seg:<messageId>`, `json:<message_id>`;
GA's cache buster is only unique per client) and suffixed `#<n>` for the n-th extra row of a
message. A message without an id gets a random one: it is logged, but a retry cannot be
recognised.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from smallboat.collect.events import Hit, HitError, TimePolicy, hash_url, row_id
from smallboat.collect.models import MAX_ID, GaHit, JsonEvent, SegmentMessage

SEGMENT_ACTIONS: dict[str, str] = {
    "Product Viewed": "detail",
    "Product Added": "add",
    "Product Removed": "remove",
    "Order Completed": "purchase",
}
"""Segment e-commerce spec event names -> product actions."""
GA_MAX_PRODUCTS = 200
_GA_PRODUCT = re.compile(r"^pr([1-9][0-9]{0,2})id$")
_ACTIONS_TEXT = "detail, add, remove, purchase"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _random_id(protocol: str) -> str:
    return f"{protocol}:~{uuid.uuid4().hex}"


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _ga_products(hit: GaHit) -> list[str]:
    """The hit's `pr<N>id` values in N order."""
    found: list[tuple[int, str]] = []
    for name, value in (hit.model_extra or {}).items():
        match = _GA_PRODUCT.match(name)
        if match is None:
            continue
        index = int(match.group(1))
        if index > GA_MAX_PRODUCTS:
            raise HitError(name, f"is past the last product index, pr{GA_MAX_PRODUCTS}id")
        if not isinstance(value, str) or not value:
            raise HitError(name, "is empty; expected the product's SKU")
        if len(value) > MAX_ID:
            raise HitError(name, f"is {len(value)} characters long; at most {MAX_ID} are accepted")
        found.append((index, value))
    return [sku for _, sku in sorted(found)]


def ga_hits(hit: GaHit, *, received_ms: int, policy: TimePolicy) -> list[Hit]:
    """The rows of one GA hit (see the module docstring)."""
    if hit.ts_ms is not None and hit.qt is not None:
        raise HitError("qt", "cannot be combined with ts_ms: send the event time one way")
    if hit.ts_ms is not None:
        ts = policy.check("ts_ms", hit.ts_ms, received_ms)
    else:
        ts = received_ms - (hit.qt or 0)
    products = _ga_products(hit)
    if hit.pa is None and products:
        raise HitError(
            "pa", f"is required when products (pr<N>id) are sent: one of {_ACTIONS_TEXT}"
        )
    if hit.pa is not None and not products:
        raise HitError("pr1id", f"is required with pa={hit.pa}: the product's SKU")
    if hit.t == "event" and hit.pa is None:
        raise HitError("pa", f"is required on t=event hits: one of {_ACTIONS_TEXT}")
    base = f"ga:{hit.cid}:{hit.z}" if hit.z is not None else _random_id("ga")
    url = hash_url(hit.dl) if hit.dl else None
    rows: list[tuple[str, str | None, str | None]] = []
    if hit.t == "pageview":
        rows.append(("pageview", None, None))
    rows.extend(("event_product", hit.pa, sku) for sku in products)
    return [
        Hit(row_id(base, i), event_type, action, sku, ts, url, hit.sid, hit.cid, "ga")
        for i, (event_type, action, sku) in enumerate(rows)
    ]


def json_hits(events: Sequence[JsonEvent], *, received_ms: int, policy: TimePolicy) -> list[Hit]:
    """One row per canonical JSON event."""
    hits: list[Hit] = []
    for i, event in enumerate(events):
        if event.server_timestamp_epoch_ms is None:
            ts = received_ms
        else:
            where = (
                f"[{i}].server_timestamp_epoch_ms"
                if len(events) > 1
                else "server_timestamp_epoch_ms"
            )
            ts = policy.check(where, event.server_timestamp_epoch_ms, received_ms)
        url = event.hashed_url if event.url is None else hash_url(event.url)
        message_id = (
            f"json:{event.message_id}" if event.message_id is not None else _random_id("json")
        )
        hits.append(
            Hit(
                message_id,
                event.event_type,
                event.product_action,
                event.product_sku_hash,
                ts,
                url,
                event.session_id_hash,
                event.client_id,
                "json",
            )
        )
    return hits


def segment_hits(
    messages: Sequence[SegmentMessage],
    *,
    received_ms: int,
    policy: TimePolicy,
    where: str = "",
) -> tuple[list[Hit], int]:
    """The rows of Segment messages, and how many messages were ignored.

    `where` prefixes field names in errors: "batch" for a batch (`batch[3].properties.products`),
    "" for a single message.
    """
    hits: list[Hit] = []
    ignored = 0
    for i, message in enumerate(messages):
        at = f"{where}[{i}]." if where else ""
        rows = _segment_rows(message, at)
        if rows is None:
            ignored += 1
            continue
        client = message.userId or message.anonymousId
        if client is None:
            raise HitError(f"{at}userId", "or anonymousId is required on track and page calls")
        props = message.properties
        context = message.context
        session = (props.session_id if props else None) or (context.session_id if context else None)
        if message.timestamp is None:
            ts = received_ms
        else:
            ts = policy.check(f"{at}timestamp", _epoch_ms(message.timestamp), received_ms)
        page = context.page if context else None
        raw_url = (props.url if props else None) or (page.url if page else None)
        url = hash_url(raw_url) if raw_url else None
        base = f"seg:{message.messageId}" if message.messageId else _random_id("seg")
        hits.extend(
            Hit(row_id(base, j), event_type, action, sku, ts, url, session, client, "segment")
            for j, (event_type, action, sku) in enumerate(rows)
        )
    return hits, ignored


def _segment_rows(
    message: SegmentMessage, at: str
) -> list[tuple[str, str | None, str | None]] | None:
    """(event_type, action, sku) rows of a message; None when the message maps to no row."""
    if message.type is None:
        raise HitError(f"{at}type", "is required: track, page, identify, ...")
    if message.type == "page":
        return [("pageview", None, None)]
    if message.type != "track":
        return None
    if message.event is None:
        raise HitError(f"{at}event", "is required on a track call")
    action = SEGMENT_ACTIONS.get(message.event)
    if action is None:
        return None
    props = message.properties
    if action == "purchase":
        products = props.products if props else None
        if not products:
            raise HitError(
                f"{at}properties.products",
                "is required for 'Order Completed': a list of products with product_id",
            )
        rows: list[tuple[str, str | None, str | None]] = []
        for j, product in enumerate(products):
            sku = product.product_id or product.sku
            if sku is None:
                raise HitError(f"{at}properties.products[{j}].product_id", "is required")
            rows.append(("event_product", action, sku))
        return rows
    sku = (props.product_id or props.sku) if props else None
    if sku is None:
        raise HitError(f"{at}properties.product_id", f"is required for '{message.event}'")
    return [("event_product", action, sku)]

"""Each wire format mapped onto canonical hits (one browsing row each).

- Google's protocols (Universal Analytics, GA4): `smallboat.collect.ga`.
- Segment: a page call is a pageview; the e-commerce spec's track events map to actions
  (SEGMENT_ACTIONS), "Order Completed" yielding one purchase per entry of `properties.products`.
  Other track events and other message types are acknowledged and ignored.
- Canonical JSON: one row per event, as sent.

Message ids are namespaced by protocol (`seg:<messageId>`, `json:<message_id>`; Google's in
`collect.ga`) and suffixed `#<n>` for the n-th extra row of a
message. A message without an id gets a random one: it is logged, but a retry cannot be
recognised.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from smallboat.collect.events import Hit, HitError, TimePolicy, hash_url, row_id
from smallboat.collect.fastmodels import JsonLike, ProductLike, SegmentLike

SEGMENT_ACTIONS: dict[str, str] = {
    "Product Viewed": "detail",
    "Product Added": "add",
    "Product Removed": "remove",
    "Order Completed": "purchase",
}
"""Segment e-commerce spec event names -> product actions."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _random_id(protocol: str) -> str:
    return f"{protocol}:~{uuid.uuid4().hex}"


def _epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds, floored (exact: integer parts, no float; half the cost of dividing
    by a timedelta)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1_000 + delta.microseconds // 1_000


def json_hits(events: Sequence[JsonLike], *, received_ms: int, policy: TimePolicy) -> list[Hit]:
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
    messages: Sequence[SegmentLike],
    *,
    received_ms: int,
    policy: TimePolicy,
    where: str = "",
) -> tuple[list[Hit], int]:
    """The rows of Segment messages, and how many messages were ignored; the first bad message
    raises.

    `where` prefixes field names in errors: "batch" for a batch (`batch[3].properties.products`),
    "" for a single message.
    """
    hits: list[Hit] = []
    ignored = 0
    for i, message in enumerate(messages):
        at = f"{where}[{i}]." if where else ""
        rows, reason = segment_message_hits(message, received_ms=received_ms, policy=policy, at=at)
        hits.extend(rows)
        ignored += reason is not None
    return hits, ignored


SEGMENT_TYPES = frozenset({"identify", "group", "alias", "screen"})
"""Message types ignored by name in the counters (any other is counted as `other type`)."""


def segment_message_hits(
    message: SegmentLike, *, received_ms: int, policy: TimePolicy, at: str = ""
) -> tuple[list[Hit], str | None]:
    """The rows of one Segment message, and why it logs none (None when it logs rows). A bad
    message raises HitError, its field names prefixed with `at` (`batch[3].`)."""
    rows = _segment_rows(message, at)
    if rows is None:
        if message.type == "track":
            return [], "track (not e-commerce)"
        return [], f"type={message.type}" if message.type in SEGMENT_TYPES else "other type"
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
    hits = [
        Hit(row_id(base, j), event_type, action, sku, ts, url, session, client, "segment")
        for j, (event_type, action, sku) in enumerate(rows)
    ]
    return hits, None


def _segment_rows(message: SegmentLike, at: str) -> list[tuple[str, str | None, str | None]] | None:
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
        products: Sequence[ProductLike] | None = props.products if props else None
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

"""Plain views of the per-event models, built without pydantic for the events trackers send.

A Segment message, a Snowplow event or a canonical JSON event is validated on its own, 100 or
10 of them per request: pydantic's validation, and the models it builds, were a third of a
batched event's CPU. The functions here read the usual shape of an event (ASCII text ids
within their lengths, ISO times in one common form, objects and lists where the model wants
them) straight from the parsed JSON into a slotted view with the attributes the mapping reads
(`collect.protocols`, `collect.snowplow`). Anything else, valid or not, gives None: the caller
then validates with the model, which accepts, converts or refuses it as it always has (one
definition of every error). So a view exists only for an event the model accepts, with the same
values; the property tests (tests/unit/test_collect_fastmodels.py) hold the two to that.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smallboat import schema
from smallboat.collect.models import (
    MAX_ID,
    MAX_JSON_EVENTS,
    MAX_SNOWPLOW_JSON,
    MAX_URL,
    JsonEvent,
    SegmentContext,
    SegmentMessage,
    SegmentProduct,
    SegmentProperties,
    SnowplowEvent,
)


class _Defer(Exception):
    """The value is not in the plain shape: the model decides. (Raised as a class, a new
    instance each time: a reused instance would grow its traceback with every raise.)"""


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?")
"""The ISO-8601 form Segment's libraries send (`2024-05-01T12:00:00.123Z`); `datetime.
fromisoformat` reads it as pydantic does (other forms, and what fromisoformat refuses, defer)."""


def _id(value: Any) -> str | None:
    """An `Id` / `TpId` (or None): ASCII text of 1 to MAX_ID characters, kept as is."""
    if value is None:
        return None
    if type(value) is str and value.isascii() and 0 < len(value) <= MAX_ID:
        return value
    raise _Defer


def _text(value: Any, longest: int = sys.maxsize) -> str | None:
    """A `str` / `TpText` / `TpUrl` field (or None): ASCII text of at most `longest`
    characters (other text may hold a lone surrogate, which the model refuses)."""
    if value is None or (type(value) is str and value.isascii() and len(value) <= longest):
        return value
    raise _Defer


def _object(value: Any) -> dict[str, Any] | None:
    if value is None or type(value) is dict:
        return value
    raise _Defer


# -- Segment -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ProductView:
    product_id: str | None
    sku: str | None


@dataclass(slots=True)
class PropertiesView:
    product_id: str | None
    sku: str | None
    products: list[ProductView] | None
    url: str | None
    session_id: str | None


@dataclass(slots=True)
class PageView:
    url: str | None


@dataclass(slots=True)
class ContextView:
    session_id: str | None
    page: PageView | None


@dataclass(slots=True)
class SegmentView:
    """What `collect.protocols` reads of a `SegmentMessage`."""

    type: str | None
    event: str | None
    userId: str | None
    anonymousId: str | None
    messageId: str | None
    timestamp: datetime | None
    properties: PropertiesView | SegmentProperties | None
    context: ContextView | SegmentContext | None


SegmentLike = SegmentMessage | SegmentView
ProductLike = SegmentProduct | ProductView


def segment_view(raw: Any) -> SegmentView | None:
    """The view of a Segment message in the plain shape, or None (validate it with the model)."""
    if type(raw) is not dict:
        return None
    get = raw.get
    try:
        return SegmentView(
            _text(get("type")),
            _text(get("event"), MAX_ID),
            _id(get("userId")),
            _id(get("anonymousId")),
            _id(get("messageId")),
            _time(get("timestamp")),
            _properties(_object(get("properties"))),
            _context(_object(get("context"))),
        )
    except _Defer:
        return None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str or _ISO_TIME.fullmatch(value) is None:
        raise _Defer
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # a day or an hour out of range: the model's error
        raise _Defer from None


def _properties(props: dict[str, Any] | None) -> PropertiesView | None:
    if props is None:
        return None
    get = props.get
    listed = get("products")
    products = None
    if listed is not None:
        if type(listed) is not list:
            raise _Defer
        products = [_product(_object(p)) for p in listed]
    return PropertiesView(
        _id(get("product_id")),
        _id(get("sku")),
        products,
        _text(get("url"), MAX_URL),
        _id(get("session_id")),
    )


def _product(product: dict[str, Any] | None) -> ProductView:
    if product is None:  # a null entry of `products`: the model refuses it
        raise _Defer
    return ProductView(_id(product.get("product_id")), _id(product.get("sku")))


def _context(context: dict[str, Any] | None) -> ContextView | None:
    if context is None:
        return None
    page = _object(context.get("page"))
    return ContextView(
        _id(context.get("session_id")),
        None if page is None else PageView(_text(page.get("url"), MAX_URL)),
    )


# -- Snowplow ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SnowplowView:
    """What `collect.snowplow` reads of a `SnowplowEvent`."""

    e: str
    eid: str | None
    url: str | None
    sid: str | None
    duid: str | None
    nuid: str | None
    uid: str | None
    dtm: str | None
    stm: str | None
    ttm: str | None
    ue_pr: str | None
    ue_px: str | None
    co: str | None
    cx: str | None


SnowplowLike = SnowplowEvent | SnowplowView


def snowplow_view(raw: Any) -> SnowplowView | None:
    """The view of a tracker-protocol event in the plain shape (every field read is ASCII text
    within its length), or None (validate it with the model)."""
    if type(raw) is not dict:
        return None
    get = raw.get
    try:
        kind = _id(get("e"))
        if kind is None:
            return None
        return SnowplowView(
            kind,
            _id(get("eid")),
            _text(get("url"), MAX_URL),
            _id(get("sid")),
            _id(get("duid")),
            _id(get("nuid")),
            _id(get("uid")),
            _id(get("dtm")),
            _id(get("stm")),
            _id(get("ttm")),
            _text(get("ue_pr"), MAX_SNOWPLOW_JSON),
            _text(get("ue_px"), MAX_SNOWPLOW_JSON),
            _text(get("co"), MAX_SNOWPLOW_JSON),
            _text(get("cx"), MAX_SNOWPLOW_JSON),
        )
    except _Defer:
        return None


# -- canonical JSON ----------------------------------------------------------------------------


@dataclass(slots=True)
class JsonView:
    """What `collect.protocols.json_hits` reads of a `JsonEvent`."""

    message_id: str | None
    session_id_hash: str | None
    client_id: str | None
    event_type: str
    product_action: str | None
    product_sku_hash: str | None
    hashed_url: str | None
    url: str | None
    server_timestamp_epoch_ms: int | None


JsonLike = JsonEvent | JsonView
_JSON_FIELDS = frozenset(JsonView.__slots__)
_EVENT_TYPES = frozenset({"pageview", "event_product"})
_ACTIONS = frozenset(schema.PRODUCT_ACTIONS)


def json_views(data: Any) -> list[JsonView] | None:
    """The views of a `POST /collect` body (one event or a list of up to MAX_JSON_EVENTS) when
    every event is in the plain shape, else None (validate the body with `JsonEvents`)."""
    events = [data] if type(data) is dict else data
    if type(events) is not list or len(events) > MAX_JSON_EVENTS:
        return None
    try:
        return [_json_view(event) for event in events]
    except _Defer:
        return None


def _json_view(event: Any) -> JsonView:
    if type(event) is not dict or not _JSON_FIELDS.issuperset(event):  # extra="forbid"
        raise _Defer
    get = event.get
    event_type = get("event_type")
    action = get("product_action")
    ts = get("server_timestamp_epoch_ms")
    if type(event_type) is not str or event_type not in _EVENT_TYPES:
        raise _Defer
    if not (action is None or (type(action) is str and action in _ACTIONS)):
        raise _Defer
    if not (ts is None or type(ts) is int):
        raise _Defer
    view = JsonView(
        _id(get("message_id")),
        _id(get("session_id_hash")),
        _id(get("client_id")),
        event_type,
        action,
        _id(get("product_sku_hash")),
        _text(get("hashed_url"), MAX_URL),
        _text(get("url"), MAX_URL),
        ts,
    )
    # JsonEvent's model validator: the model refuses these, naming the problem
    if view.session_id_hash is None and view.client_id is None:
        raise _Defer
    if view.url is not None and view.hashed_url is not None:
        raise _Defer
    if schema.product_columns_problem(event_type, action, view.product_sku_hash) is not None:
        raise _Defer
    return view

"""Request and response bodies of the collection API (pydantic models; FastAPI validates them).

Three wire formats come in: Google-Analytics-style query parameters (`GaHit`), canonical JSON
events (`JsonEvent`, one or a list) and Segment messages (`SegmentMessage`, alone or in a
`SegmentBatch`). Unknown extra fields are accepted where the real protocols send more than the
collector uses (GA's dozens of parameters, Segment's context and integrations) and refused in the
canonical JSON, where a misspelt column would otherwise silently become NULL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
    model_validator,
)

from smallboat import schema
from smallboat.web.fields import utf8_text

MAX_JSON_EVENTS = 500
"""Most canonical events one POST /collect may carry."""
MAX_SEGMENT_BATCH = 2_500
"""Most messages one Segment batch may carry (the body limit usually binds first)."""
MAX_ID = 256
MAX_URL = 8_192
MAX_QUEUE_TIME_MS = 4 * 3_600_000
"""GA drops hits queued longer than 4 hours; so does the collector."""

Action = Literal["detail", "add", "remove", "purchase"]
assert set(Action.__args__) == set(schema.PRODUCT_ACTIONS)  # type: ignore[attr-defined]
UaHitType = Literal[
    "pageview", "event", "timing", "exception", "social", "screenview", "transaction", "item"
]
"""Universal Analytics hit types (`t`); only pageview and event carry browsing rows."""
UaAction = Literal[
    "detail", "click", "add", "remove", "checkout", "checkout_option", "purchase", "refund",
    "promo_click",
]  # fmt: skip
"""Universal Analytics product actions (`pa`); only those of `Action` map to rows."""
MAX_GA4_MP_EVENTS = 25
"""Most events in one Measurement Protocol request (Google's limit)."""
MAX_GA4_ITEMS = 200
M = TypeVar("M", bound=BaseModel)


def validator(model: type[M]) -> Callable[[Any], M]:
    """`model.model_validate` without its Python wrapper, which costs ~0.6 us a call (a third
    of a small model's whole validation): the same validator, so the same model or the same
    ValidationError. For the per-event validations of batches and single hits."""
    return cast(Callable[[Any], M], model.__pydantic_validator__.validate_python)


def _id_text(value: Any) -> Any:
    """Segment ids may be numbers (its libraries accept both): keep them as text. A number that
    overflows (1e400 parses to inf) or NaN is left as is, and refused as not a string.

    Text holding a lone surrogate ("\\ud800" in the JSON) is refused here: the constraints after
    a BeforeValidator do not check it, and it cannot be written as UTF-8.
    """
    kind = type(value)
    if kind is str and value.isascii():  # the usual id: nothing to convert or check
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    return utf8_text(value)


Id = Annotated[
    str,
    # The length constraints BEFORE the validator: pydantic-core then checks them natively on
    # the str the validator returns (after it, they ran as Python code: 3x the cost).
    Field(min_length=1, max_length=MAX_ID),
    BeforeValidator(_id_text),
    # The schema says what the code takes: text, or a number kept as its text.
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_ID}, {"type": "number"}]}
    ),
]


def _iso_time(value: Any) -> Any:
    """Segment's times are ISO-8601 text; a number (`"sentAt": 0`) would otherwise be read as
    seconds since 1970, which no Segment library sends and the schema does not allow."""
    if type(value) is str:  # the usual timestamp (a test of its type, 3x `isinstance` of a union)
        return value
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an ISO-8601 date-time text, e.g. 2024-05-01T12:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_time)]


class GaHit(BaseModel):
    """A Universal Analytics hit (`/collect`, `/batch`): only these parameters are read.

    Products are `pr<N>id` (N = 1..200), one row each. `sid` and `ts_ms` are smallboat
    extensions: the session id (GA4 uses the same name) and the event time in epoch milliseconds.
    """

    model_config = ConfigDict(extra="allow")

    v: Literal["1"] = Field(description="Protocol version: 1.")
    t: UaHitType = Field(description="Hit type.")
    cid: str = Field(min_length=1, max_length=MAX_ID, description="Client (or session) id.")
    sid: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID, description="Session id."
    )
    z: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID, description="Cache buster: the message id."
    )
    dl: str | None = Field(
        default=None, max_length=MAX_URL, description="Page URL (stored hashed)."
    )
    pa: UaAction | None = Field(default=None, description="Product action.")
    qt: int | None = Field(
        default=None,
        ge=0,
        le=MAX_QUEUE_TIME_MS,
        description="Queue time: ms the hit waited to be sent.",
    )
    ts_ms: int | None = Field(
        default=None, description="Event time, epoch ms (smallboat extension)."
    )


class Ga4WebEvent(BaseModel):
    """One gtag.js event (`/g/collect`): the query's shared parameters with one body line's.

    Items are `pr<N>` (`id<SKU>~nm<name>~...`), read by `collect.ga`. `ts_ms` is the smallboat
    extension of `GaHit`: the event time in epoch ms (gtag sends none; the receive time is used).
    """

    model_config = ConfigDict(extra="allow")

    v: Literal["2"] = Field(description="Protocol version: 2.")
    en: str = Field(min_length=1, max_length=MAX_ID, description="Event name.")
    cid: str = Field(min_length=1, max_length=MAX_ID, description="Client id.")
    sid: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID, description="GA4 session id."
    )
    dl: str | None = Field(
        default=None, max_length=MAX_URL, description="Page URL (stored hashed)."
    )
    p: str | None = Field(default=None, alias="_p", max_length=MAX_ID, description="Page load id.")
    s: str | None = Field(
        default=None, alias="_s", max_length=MAX_ID, description="Hit sequence number."
    )
    ts_ms: int | None = Field(
        default=None, description="Event time, epoch ms (smallboat extension)."
    )


class Ga4Item(BaseModel):
    """An item of a GA4 e-commerce event: its SKU is `item_id`, or `item_name` without one."""

    model_config = ConfigDict(extra="allow")

    item_id: Id | None = None
    item_name: Id | None = None


class Ga4Params(BaseModel):
    """The event parameters the collector reads; others are ignored."""

    model_config = ConfigDict(extra="allow")

    items: list[Ga4Item] | None = Field(default=None, max_length=MAX_GA4_ITEMS)
    session_id: Id | None = None
    page_location: str | None = Field(default=None, max_length=MAX_URL)


class Ga4MpEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=MAX_ID)
    params: Ga4Params | None = None
    timestamp_micros: int | None = None


class Ga4MpBody(BaseModel):
    """The JSON body of `POST /mp/collect` (GA4 Measurement Protocol)."""

    model_config = ConfigDict(extra="allow")

    client_id: Id | None = None
    app_instance_id: Id | None = None
    user_id: Id | None = None
    timestamp_micros: int | None = None
    events: list[Ga4MpEvent] = Field(min_length=1, max_length=MAX_GA4_MP_EVENTS)


class JsonEvent(BaseModel):
    """One canonical browsing event (`POST /collect`), in the columns of the landing table.

    `session_id_hash` or `client_id` (sessions are then cut after 30 idle minutes) is required;
    `url` is hashed into `hashed_url`, or `hashed_url` is taken as is.
    """

    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    session_id_hash: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    client_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    event_type: Literal["pageview", "event_product"]
    product_action: Action | None = None
    product_sku_hash: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    hashed_url: str | None = Field(default=None, max_length=MAX_URL)
    url: str | None = Field(default=None, max_length=MAX_URL)
    server_timestamp_epoch_ms: int | None = Field(
        default=None, description="Event time, epoch ms; the receive time when absent."
    )

    @model_validator(mode="after")
    def _consistent(self) -> JsonEvent:
        if self.session_id_hash is None and self.client_id is None:
            raise ValueError("needs session_id_hash or client_id")
        if self.url is not None and self.hashed_url is not None:
            raise ValueError("has both url and hashed_url; send one")
        problem = schema.product_columns_problem(
            self.event_type, self.product_action, self.product_sku_hash
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class JsonEvents(RootModel[list[JsonEvent]]):
    """The body of `POST /collect`: one event, or a list of up to MAX_JSON_EVENTS."""

    root: list[JsonEvent] = Field(max_length=MAX_JSON_EVENTS)

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        return [data] if isinstance(data, dict) else data


class SegmentProduct(BaseModel):
    model_config = ConfigDict(extra="allow")

    product_id: Id | None = None
    sku: Id | None = None


class SegmentProperties(BaseModel):
    """The properties the collector reads (the e-commerce spec's product fields, the page URL
    and an optional session id); others are ignored."""

    model_config = ConfigDict(extra="allow")

    product_id: Id | None = None
    sku: Id | None = None
    products: list[SegmentProduct] | None = None
    url: str | None = Field(default=None, max_length=MAX_URL)
    session_id: Id | None = None


class SegmentPage(BaseModel):
    """`context.page`: only its URL is read (when `properties.url` is absent)."""

    model_config = ConfigDict(extra="allow")

    url: str | None = Field(default=None, max_length=MAX_URL)


class SegmentContext(BaseModel):
    """The context fields the collector reads, validated like their `properties` equivalents;
    others are ignored."""

    model_config = ConfigDict(extra="allow")

    session_id: Id | None = None
    page: SegmentPage | None = None


class SegmentMessage(BaseModel):
    """A Segment message (track, page, or a type the collector ignores: identify, group, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    event: str | None = Field(default=None, max_length=MAX_ID)
    userId: Id | None = None  # Segment's field names, camelCase
    anonymousId: Id | None = None
    messageId: Id | None = None
    timestamp: IsoTime | None = None
    properties: SegmentProperties | None = None
    context: SegmentContext | None = None


class SegmentBatch(BaseModel):
    """The body of `POST /v1/batch` (what Segment's libraries send). Each message is validated
    on its own (as a `SegmentMessage`), so one bad message does not refuse the good ones."""

    model_config = ConfigDict(extra="allow")

    batch: list[Any] = Field(max_length=MAX_SEGMENT_BATCH)
    sentAt: IsoTime | None = None


MAX_SNOWPLOW_EVENTS = 2_500
"""Most events one Snowplow `payload_data` POST may carry (the body limit usually binds first)."""
MAX_SNOWPLOW_JSON = 64 * 1024
"""Longest self-describing JSON (`ue_pr`/`co`, or their base64 `ue_px`/`cx`) read from an event."""


def _tp_text(value: Any) -> Any:
    """Snowplow sends every field as a string; numbers are accepted as their text."""
    if type(value) is str and value.isascii():  # the usual field: nothing to convert or check
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return utf8_text(value)


TpText = Annotated[str, Field(max_length=MAX_SNOWPLOW_JSON), BeforeValidator(_tp_text)]
TpId = Annotated[str, Field(min_length=1, max_length=MAX_ID), BeforeValidator(_tp_text)]
TpUrl = Annotated[str, Field(max_length=MAX_URL), BeforeValidator(_tp_text)]
"""(Constraints before the validator: checked natively, as `Id`'s.)"""


class SnowplowEvent(BaseModel):
    """One Snowplow tracker-protocol event (a `payload_data` entry, or the `GET /i` query): only
    these fields are read; the tracker's many others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    e: TpId = Field(description="Event type: pv (page view), ue (self-describing), ...")
    eid: TpId | None = Field(default=None, description="Event id (a UUID): the message id.")
    url: TpUrl | None = Field(default=None, description="Page URL (stored hashed).")
    sid: TpId | None = Field(default=None, description="Session id (domain_sessionid).")
    duid: TpId | None = Field(default=None, description="Domain user id (first-party cookie).")
    nuid: TpId | None = Field(default=None, description="Network user id (collector cookie).")
    uid: TpId | None = Field(default=None, description="The shop's user id.")
    dtm: TpId | None = Field(default=None, description="Device created time, epoch ms.")
    stm: TpId | None = Field(default=None, description="Device sent time, epoch ms.")
    ttm: TpId | None = Field(default=None, description="True event time, epoch ms.")
    ue_pr: TpText | None = Field(default=None, description="Self-describing event, JSON.")
    ue_px: TpText | None = Field(default=None, description="Self-describing event, base64.")
    co: TpText | None = Field(default=None, description="Context entities, JSON.")
    cx: TpText | None = Field(default=None, description="Context entities, base64.")


class SnowplowPayload(BaseModel):
    """The body of `POST /com.snowplowanalytics.snowplow/tp2`: a `payload_data` self-describing
    JSON whose `data` is the list of events (each validated on its own)."""

    model_config = ConfigDict(extra="allow")

    schema_: str = Field(alias="schema", max_length=MAX_ID)
    data: list[Any] = Field(max_length=MAX_SNOWPLOW_EVENTS)


class Accepted(BaseModel):
    """A 2xx answer: every event of the request is durable (fsync'd to the log)."""

    success: bool = True
    events: int = Field(description="Rows logged.")
    ignored: int = Field(
        default=0, description="Messages that map to no browsing row (identify, ...)."
    )


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: bad_request, unauthorized, ...")
    detail: str = Field(description="What was wrong, naming the parameter or field.")


class SdkErrorBody(ErrorBody):
    """An error of the Segment routes (`/v1/...`): also `code` and `message`, the fields
    Segment's and RudderStack's SDKs read from an error answer."""

    code: str = Field(description="The same as `error`.")
    message: str = Field(description="The same as `detail`.")


class Refusal(BaseModel):
    """One refused event of a request whose other events were accepted."""

    index: int = Field(description="Its position in the request's list.")
    messageId: str | None = Field(default=None, description="Its id, when it had one.")
    detail: str = Field(description="Why it was refused, naming the field.")


MAX_SHOWN_REFUSALS = 100
"""Most refusals listed in one answer (`refused` counts them all; the rejects log keeps them)."""


class BatchAccepted(Accepted):
    """A 2xx answer to a batch: its good events are durable; bad ones (`refused`, listed in
    `refusals`, logged in the rejects log) were not logged. A batch with no good event is a 400."""

    refused: int = Field(default=0, description="Events refused (not logged).")
    refusals: list[Refusal] = Field(
        default_factory=list, description=f"Why, for the first {MAX_SHOWN_REFUSALS}."
    )


class Ready(BaseModel):
    """`GET /readyz`: the log is open and writable; its counters since the collector started."""

    status: Literal["ready"] = "ready"
    active_segment: str | None
    closed_segments: int
    appends: int
    records: int
    group_commits: int
    tracked_clients: int
    compactor_restarts: int = 0
    """Background compactors that died and were started again since the collector started."""

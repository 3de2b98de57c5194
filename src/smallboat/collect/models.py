"""Request and response bodies of the collection API (pydantic models; FastAPI validates them).

Three wire formats come in: Google-Analytics-style query parameters (`GaHit`), canonical JSON
events (`JsonEvent`, one or a list) and Segment messages (`SegmentMessage`, alone or in a
`SegmentBatch`). Unknown extra fields are accepted where the real protocols send more than the
collector uses (GA's dozens of parameters, Segment's context and integrations) and refused in the
canonical JSON, where a misspelt column would otherwise silently become NULL.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, model_validator

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


def _id_text(value: Any) -> Any:
    """Segment ids may be numbers (its libraries accept both): keep them as text. A number that
    overflows (1e400 parses to inf) or NaN is left as is, and refused as not a string.

    Text holding a lone surrogate ("\\ud800" in the JSON) is refused here: the constraints after
    a BeforeValidator do not check it, and it cannot be written as UTF-8.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    return utf8_text(value)


Id = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=MAX_ID)]


class GaHit(BaseModel):
    """A Google-Analytics-style hit (`GET /collect`): only these parameters are read.

    Products are `pr<N>id` (N = 1..200), one row each. `sid` and `ts_ms` are smallboat
    extensions: the session id (GA4 uses the same name) and the event time in epoch milliseconds.
    """

    model_config = ConfigDict(extra="allow")

    v: Literal["1"] = Field(description="Protocol version: 1.")
    t: Literal["pageview", "event"] = Field(description="Hit type.")
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
    pa: Action | None = Field(default=None, description="Product action.")
    qt: int | None = Field(
        default=None,
        ge=0,
        le=MAX_QUEUE_TIME_MS,
        description="Queue time: ms the hit waited to be sent.",
    )
    ts_ms: int | None = Field(
        default=None, description="Event time, epoch ms (smallboat extension)."
    )


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
    timestamp: datetime | None = None
    properties: SegmentProperties | None = None
    context: SegmentContext | None = None


class SegmentBatch(BaseModel):
    """The body of `POST /v1/batch` (what Segment's libraries send)."""

    model_config = ConfigDict(extra="allow")

    batch: list[SegmentMessage] = Field(max_length=MAX_SEGMENT_BATCH)
    sentAt: datetime | None = None


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


class Ready(BaseModel):
    """`GET /readyz`: the log is open and writable; its counters since the collector started."""

    status: Literal["ready"] = "ready"
    active_segment: str | None
    closed_segments: int
    appends: int
    records: int
    group_commits: int
    tracked_clients: int

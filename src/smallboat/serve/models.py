"""Request and response bodies of the prediction API (pydantic models; FastAPI validates them).

Events come in the canonical browsing columns (`schema.BROWSING_EVENTS`). As in the Coveo CSVs, an
empty string means "no value" (`""` -> null). Unknown fields are refused, so a misspelt column is
a 422 naming it instead of a silently missing value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from smallboat import schema
from smallboat.web.fields import utf8_text

MAX_ID = 256
MAX_URL = 8_192
MAX_BATCH_SESSIONS = 1_000
"""Most sessions one batch request may carry (the body limit usually binds first)."""
DEFAULT_K = 10
"""Next items returned when a request does not say how many."""
MAX_K = 100

Action = Literal["detail", "add", "remove", "purchase"]
assert set(Action.__args__) == set(schema.PRODUCT_ACTIONS)  # type: ignore[attr-defined]
EventType = Literal["pageview", "event_product"]
assert set(EventType.__args__) == set(schema.EVENT_TYPES)  # type: ignore[attr-defined]


def _empty_is_null(value: Any) -> Any:
    return None if value == "" else value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not true or false")
    return value


WholeNumber = Annotated[int, BeforeValidator(_not_bool)]
"""An integer field: JSON's true and false are refused (pydantic would read them as 1 and 0);
1.0 is taken, as JSON Schema counts it an integer."""

OptionalId = Annotated[
    # No min_length: "" is taken (as null), and the schema must say so.
    Annotated[str, Field(max_length=MAX_ID)] | None,
    BeforeValidator(utf8_text),
    BeforeValidator(_empty_is_null),
]
OptionalUrl = Annotated[
    Annotated[str, Field(max_length=MAX_URL)] | None,
    BeforeValidator(utf8_text),
    BeforeValidator(_empty_is_null),
]


MAX_TIMESTAMP_MS = 2**53
"""The latest event time taken (the largest integer a JSON number carries exactly)."""


class BrowsingEvent(BaseModel):
    """One browsing event in the canonical columns (`session_id_hash` may be left out)."""

    model_config = ConfigDict(extra="forbid")

    session_id_hash: OptionalId = None
    event_type: EventType
    product_action: Annotated[Action | None, BeforeValidator(_empty_is_null)] = None
    product_sku_hash: OptionalId = None
    server_timestamp_epoch_ms: WholeNumber = Field(
        ge=0, le=MAX_TIMESTAMP_MS, description="Event time, epoch ms."
    )
    hashed_url: OptionalUrl = None

    @model_validator(mode="after")
    def _consistent(self) -> BrowsingEvent:
        problem = schema.product_columns_problem(
            self.event_type, self.product_action, self.product_sku_hash
        )
        if problem is not None:
            raise ValueError(problem)
        return self

    def row(self, session_id: str | None) -> dict[str, Any]:
        """The event as a raw browsing row (what the feature code and session store take)."""
        return {
            "session_id_hash": self.session_id_hash or session_id,
            "event_type": self.event_type,
            "product_action": self.product_action,
            "product_sku_hash": self.product_sku_hash,
            "server_timestamp_epoch_ms": self.server_timestamp_epoch_ms,
            "hashed_url": self.hashed_url,
        }


class SessionEvents(BaseModel):
    """One session's events, in any order (they are sorted by time)."""

    model_config = ConfigDict(extra="forbid")

    session_id: OptionalId = Field(default=None, description="Echoed back; not stored.")
    events: list[BrowsingEvent]

    def rows(self) -> list[dict[str, Any]]:
        return [event.row(self.session_id) for event in self.events]


class PredictBody(BaseModel):
    """`POST /v1/predict` (and the SageMaker routes): one session's `events`, or many
    `sessions`, answered in the same order."""

    model_config = ConfigDict(extra="forbid")

    session_id: OptionalId = Field(default=None, description="Echoed back; not stored.")
    events: list[BrowsingEvent] | None = None
    sessions: list[SessionEvents] | None = Field(
        default=None, min_length=1, max_length=MAX_BATCH_SESSIONS
    )
    # `true` is not 1 and "yes" is not a boolean: the schema says integer and boolean.
    k: WholeNumber = Field(
        default=DEFAULT_K, description=f"Next items to return per session (1..{MAX_K})."
    )
    exclude_seen: StrictBool = Field(
        default=False, description="Leave SKUs the session already holds out of next_items."
    )

    @field_validator("k")
    @classmethod
    def _k_in_range(cls, k: int) -> int:
        if not 1 <= k <= MAX_K:
            raise ValueError(
                f"must be 1 to {MAX_K} (how many next items to return), got {k}; "
                f"leave it out for {DEFAULT_K}"
            )
        return k

    @model_validator(mode="after")
    def _one_form(self) -> PredictBody:
        if (self.events is None) == (self.sessions is None):
            raise ValueError(
                "needs either events (one session) or sessions (a batch), not both or neither"
            )
        if self.sessions is not None and self.session_id is not None:
            raise ValueError("a batch names each session inside sessions[], not at the top")
        return self

    @property
    def is_batch(self) -> bool:
        return self.sessions is not None

    def session_list(self) -> list[SessionEvents]:
        if self.sessions is not None:
            return self.sessions
        return [SessionEvents(session_id=self.session_id, events=self.events or [])]


class AppendEvents(BaseModel):
    """Events to add to a stored session (`POST /v1/sessions/{session_id}/events`)."""

    model_config = ConfigDict(extra="forbid")

    events: list[BrowsingEvent] = Field(min_length=1)


class NextItem(BaseModel):
    sku: str = Field(description="product_sku_hash of a SKU the shopper may view next.")
    score: float = Field(description="The recommender's score; the list is sorted by it.")


class Prediction(BaseModel):
    """P(purchase) for a session so far, and the SKUs the shopper may view next.

    `purchase_probability` is null when the session has no events before its first purchase
    (nothing to predict from, or the purchase already happened); `note` then says which.
    `next_items` is null then too, and when the model bundle has no next-item recommender.
    """

    session_id: str | None = None
    purchase_probability: float | None
    model_version: str
    events_used: int = Field(description="Events inside the model's window (the last L).")
    events_in_session: int = Field(description="Events of the session after collapsing.")
    oov_skus: int = Field(description="Events in the window whose SKU the model never saw.")
    note: str | None = None
    next_items: list[NextItem] | None = Field(
        default=None, description="Top-k next SKUs, by descending score (k: the request's)."
    )


class LambdaPrediction(Prediction):
    """`GET /v1/predict?session=` (or `?x=`): the prediction, and the keys the reference
    project's Lambda answered with."""

    prediction: float | None = Field(description="purchase_probability (the Lambda's key).")
    time: float = Field(description="Seconds the service spent on the request.")
    endpoint: str = Field(description="The service's endpoint name.")


class Session(BaseModel):
    """A stored session (`GET /v1/sessions/{session_id}`): its current visit's raw events, in
    time order, and the prediction on them."""

    session_id: str
    events: list[BrowsingEvent]
    prediction: Prediction


class BatchPredictions(BaseModel):
    model_version: str
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    error: str
    detail: str


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str
    model_source: str
    session_store: str


class Reloaded(BaseModel):
    model_version: str
    model_source: str
    previous_version: str

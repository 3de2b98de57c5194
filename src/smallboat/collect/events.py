"""The collector's unit of data: a canonical hit, and the record the write-ahead log keeps of it.

Every wire format (GA hits, canonical JSON, Segment messages) becomes a list of `Hit`s: one
browsing row each, in the columns of `schema.BROWSING_EVENTS`, plus a message id for
deduplication and either the session id the client sent or the client id to cut sessions from.
The store turns a hit into an `EventRecord` (with its session resolved) and logs it; compaction
maps a record back to a landing row with `record_to_row`.

Event times: the collector's receive time, unless the client says when the event happened (GA
`ts_ms` or `qt`, Segment `timestamp`, JSON `server_timestamp_epoch_ms`). A client-given time must
lie between `max_age_ms` before the collector's clock and `MAX_FUTURE_SKEW_MS` after it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

from smallboat.schema import BROWSING_EVENTS

MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
"""A client clock may run up to 5 minutes ahead of the collector's; later times are refused."""
DAY_MS = 86_400_000
MAX_EPOCH_MS = 253_402_300_799_999
"""The last millisecond of year 9999: client times past it are refused before any arithmetic
(a 400-digit `ts_ms` used to overflow the float of the error message: a 500)."""


class HitError(ValueError):
    """A hit the collector refuses: names the parameter (or body field) and the problem."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param} {problem}")
        self.param = param
        self.problem = problem


class Hit(NamedTuple):
    """One canonical browsing row as a client reported it, before its session is resolved.

    A NamedTuple, immutable like the frozen dataclass it was, built in a fifth of its time (a
    batch of 100 events builds 100; the dataclass's `__init__` was the mapping's costliest
    line)."""

    message_id: str
    event_type: str
    product_action: str | None
    product_sku_hash: str | None
    timestamp_ms: int
    hashed_url: str | None
    session_id: str | None
    client_id: str | None
    source: str


class EventRecord(TypedDict):
    """What the write-ahead log holds per hit: the landing row plus its provenance."""

    message_id: str
    session_id_hash: str
    event_type: str
    product_action: str | None
    product_sku_hash: str | None
    server_timestamp_epoch_ms: int
    hashed_url: str | None
    received_at_ms: int
    client_id: str | None
    session_start_ms: int | None
    source: str


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hash_url(url: str) -> str:
    """The stored form of a page URL: sha256, lowercase hex (64 characters, like the release)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def row_id(base: str, index: int) -> str:
    """Message id of the `index`-th row a message expands to: the message id itself for the
    first, `<id>#<index>` for the others (an order's products, a pageview's product)."""
    return base if index == 0 else f"{base}#{index}"


@dataclass(frozen=True)
class TimePolicy:
    """Which client-given event times the collector accepts, relative to its own clock."""

    max_age_ms: int
    max_future_ms: int = MAX_FUTURE_SKEW_MS

    @classmethod
    def from_days(cls, max_age_days: float) -> TimePolicy:
        return cls(max_age_ms=int(max_age_days * DAY_MS))

    def check(self, param: str, event_ms: int, received_ms: int) -> int:
        """`event_ms` if within bounds, else a HitError naming `param`."""
        if not 0 <= event_ms <= MAX_EPOCH_MS:
            shown = f"{event_ms}" if len(f"{event_ms}") <= 20 else f"{str(event_ms)[:20]}..."
            raise HitError(
                param, f"{shown} is not an epoch time in milliseconds (0 to {MAX_EPOCH_MS:,})"
            )
        ahead = event_ms - received_ms
        if ahead > self.max_future_ms:
            raise HitError(
                param,
                f"{event_ms} is {_duration(ahead)} after the collector's clock; event times may "
                f"be at most {_duration(self.max_future_ms)} ahead",
            )
        if -ahead > self.max_age_ms:
            raise HitError(
                param,
                f"{event_ms} is {_duration(-ahead)} before the collector's clock; it accepts "
                f"event times up to {_duration(self.max_age_ms)} old "
                "(SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS)",
            )
        return event_ms


def _duration(ms: int) -> str:
    if ms >= DAY_MS:
        return f"{ms / DAY_MS:,.1f} days"
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.1f} hours"
    return f"{ms / 60_000:.1f} minutes"


ROW_COLUMNS: tuple[str, ...] = tuple(BROWSING_EVENTS.column_names)


def record_to_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The landing row of a logged record (the canonical browsing columns)."""
    return {name: record[name] for name in ROW_COLUMNS}


def record_key(record: Mapping[str, Any]) -> str:
    """The deduplication key of a logged record."""
    key = record["message_id"]
    assert isinstance(key, str), f"record without a message id: {record!r}"
    return key

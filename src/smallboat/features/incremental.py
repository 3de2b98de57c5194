"""A stored session's model state, kept up to date click by click (the service's session route).

Encoding a session from its raw rows on every click costs time in proportion to its length. What
the model needs of a long session is its last `max_events` collapsed events' tokens plus a few
whole-prefix quantities, so `SessionState` keeps the session's current visit as

- a frozen HEAD: its older collapsed events folded into a `Carry` (counts, first and last time,
  the funnel's first add and cart, the last SKU), covering every raw row at or before `frozen_ms`;
- a raw TAIL: the rows after `frozen_ms`, in time order, holding at least `TAIL_WINDOWS` model
  windows of collapsed events once the visit is that long (older time groups are frozen into the
  head as rows arrive; one millisecond's rows are never split, a purchase is never frozen, and
  rows after the first purchase, which no prefix ever reaches, are not kept).

A prediction encodes the tail with the head's carry (`encode_collapsed(..., carry=...)`): the same
numbers as encoding the whole visit, at a cost that does not grow with it. Rows the state cannot
absorb exactly (older than `frozen_ms`, or reaching back towards an older visit so that a late
event may bridge the 30-minute gap) make `apply` answer False: the caller rebuilds the state from
the stored raw rows (`SessionState.build`), a cost in proportion to the length, and rare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, field
from operator import itemgetter
from typing import Any

import orjson

from smallboat.features.encode import Carry, CollapsedEvent, collapse_session
from smallboat.schema import SESSION_GAP_MS

TIME = "server_timestamp_epoch_ms"
TAIL_WINDOWS = 2
"""The tail keeps this many model windows of collapsed events: one for the window itself, one of
slack, so an event arriving up to a window's worth of events late still lands in the tail instead
of forcing a rebuild."""
MAX_TAIL_ROWS = 1_000
"""The most raw rows the tail keeps, whatever arrives: the tail never holds an exact duplicate of
one of its rows (a retried click), and normally stays near `TAIL_WINDOWS` windows of events, but a
client sending thousands of distinct rows within a few milliseconds (which are never split) would
grow it without end. Past this bound its oldest rows are dropped uncounted, as the raw record
drops its oldest (`SMALLBOAT_SESSION_MAX_EVENTS`, 1,000 by default)."""
STATE_FORMAT = 1
"""Version of `SessionState.to_json`'s layout; a stored state of another version is rebuilt."""

_by_time = itemgetter(TIME)


def current_session(
    rows: Sequence[Mapping[str, Any]], *, gap_ms: int = SESSION_GAP_MS, copy: bool = True
) -> list[dict[str, Any]]:
    """The rows of the session's current visit, in event-time order.

    Rows are sorted (stably) by event time and cut after the last gap of more than `gap_ms`
    between consecutive events: a session idle for 30 minutes ends, as in the Coveo data.
    `copy`: return copies of the rows (False: the rows themselves, for rows nobody else holds).
    """
    ordered: list[dict[str, Any]] = sorted(
        (dict(row) for row in rows) if copy else rows,  # type: ignore[arg-type]
        key=_by_time,
    )
    for i in range(len(ordered) - 1, 0, -1):
        if ordered[i][TIME] - ordered[i - 1][TIME] > gap_ms:
            return ordered[i:]
    return ordered


def _is_purchase(row: Mapping[str, Any]) -> bool:
    return row["event_type"] != "pageview" and row.get("product_action") == "purchase"


def _identity(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A raw row's value: two rows with the same are one event (a retried click)."""
    return tuple(sorted(row.items()))


@dataclass(frozen=True)
class SessionPrefix:
    """A session's prefix as the scorer takes it: the carry of its older events and its recent
    collapsed events (all of them when `carry` is None)."""

    carry: Carry | None
    events: list[CollapsedEvent]
    has_rows: bool = True
    """The visit holds raw rows (False: nothing stored); with no `events` the prefix is empty
    because the visit opens with a purchase."""

    @classmethod
    def of_rows(cls, rows: Sequence[Mapping[str, Any]]) -> SessionPrefix:
        """The prefix of one session's raw rows, encoded whole."""
        return cls(None, collapse_session(rows), bool(rows))

    @property
    def n_events(self) -> int:
        return (self.carry.events if self.carry is not None else 0) + len(self.events)

    def events_after_first_add(self) -> int | None:
        """Events after the prefix's first add (the intent task's k); None without one."""
        if self.carry is not None and self.carry.first_add >= 0:
            return self.n_events - 1 - self.carry.first_add
        offset = self.carry.events if self.carry is not None else 0
        for i, (action, _, _) in enumerate(self.events):
            if action == "add":
                return self.n_events - 1 - (offset + i)
        return None


@dataclass
class SessionState:
    """A session's current visit as a frozen head and a raw tail (see the module's docstring)."""

    window: int  # the model's max_events the tail is kept for
    first_ms: int | None = None  # the visit's first raw row's time (None: no rows)
    last_ms: int | None = None  # the visit's last raw row's time
    frozen_ms: int | None = None  # the head covers the visit's rows at or before this time
    head: Carry | None = None
    tail: list[dict[str, Any]] = field(default_factory=list)
    _events: list[CollapsedEvent] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, rows: Sequence[Mapping[str, Any]], *, window: int) -> SessionState:
        """The state of a session's stored raw rows (every visit's; the current one is kept)."""
        state = cls(window)
        visit = current_session(rows)
        if visit:
            state._start(visit)
        return state

    def _start(self, visit: list[dict[str, Any]]) -> None:
        """Begin a new visit of these rows (sorted by time)."""
        self.first_ms, self.last_ms = visit[0][TIME], visit[-1][TIME]
        self.frozen_ms, self.head, self.tail = None, None, visit
        self._freeze()

    def apply(self, rows: Sequence[dict[str, Any]], *, window: int) -> bool:
        """Absorb newly stored rows. False, with the state unchanged or half-changed, when it
        cannot do so exactly: the caller rebuilds from the stored rows (`build`)."""
        if window != self.window:
            return False
        if not rows:
            return True
        if self.first_ms is None or self.last_ms is None:
            self._start(current_session(rows, copy=False))
            return True
        gap = SESSION_GAP_MS
        inside: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        # Exact duplicates share a time: rows' values are compared only at a time already held.
        times = {row[TIME] for row in self.tail}
        seen: set[tuple[tuple[str, Any], ...]] | None = None
        for row in rows:
            t = row[TIME]
            if t in times:
                if seen is None:
                    seen = {_identity(r) for r in (*self.tail, *inside, *after) if r[TIME] in times}
                identity = _identity(row)
                if identity in seen:
                    continue  # an exact duplicate of a tail row: it collapses into that one
                seen.add(identity)
            elif t > (self.frozen_ms if self.frozen_ms is not None else self.first_ms - gap - 1):
                times.add(t)
                if seen is not None:
                    seen.add(_identity(row))
            if t < self.first_ms - gap:
                continue  # an older visit's: the current one stays as it is (a gap > 30 min)
            if t < self.first_ms or (self.frozen_ms is not None and t <= self.frozen_ms):
                return False  # may bridge to an older visit, or falls inside the frozen head
            (after if t > self.last_ms else inside).append(row)
        after.sort(key=_by_time)
        previous, cut = self.last_ms, None
        for i, row in enumerate(after):
            if row[TIME] - previous > gap:
                cut = i
            previous = row[TIME]
        if cut is not None:  # a new visit: what came before the last gap ends with the old one
            self._start(after[cut:])
            return True
        self.tail = sorted(self.tail + inside + after, key=_by_time)
        if after:
            self.last_ms = after[-1][TIME]
        return self._freeze()

    def _freeze(self) -> bool:
        """Fold the tail's oldest time groups into the head while it keeps TAIL_WINDOWS windows
        of events; drop rows after the first purchase. False when the head is set but the tail
        no longer fills the window (a late purchase cut it short): rebuild."""
        events = collapse_session(self.tail)
        purchase = min((r[TIME] for r in self.tail if _is_purchase(r)), default=None)
        if purchase is not None:
            self.tail = [r for r in self.tail if r[TIME] <= purchase]
        k = len(events) - TAIL_WINDOWS * self.window
        while k > 0 and events[k - 1][2] == events[k][2]:  # never split one millisecond
            k -= 1
        if k > 0:
            frozen = events[:k]
            self.head = Carry.of(frozen) if self.head is None else self.head.extend(frozen)
            self.frozen_ms = frozen[-1][2]
            self.tail = [r for r in self.tail if r[TIME] > frozen[-1][2]]
            events = events[k:]
        if len(self.tail) > MAX_TAIL_ROWS:
            self.tail = self.tail[len(self.tail) - MAX_TAIL_ROWS :]
            events = collapse_session(self.tail)
        self._events = events
        return self.head is None or len(events) >= self.window

    def prefix(self) -> SessionPrefix:
        """What the scorer encodes: the head's carry and the tail's collapsed events."""
        if self._events is None:
            self._events = collapse_session(self.tail)
        return SessionPrefix(self.head, list(self._events), self.first_ms is not None)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": STATE_FORMAT,
                "window": self.window,
                "first_ms": self.first_ms,
                "last_ms": self.last_ms,
                "frozen_ms": self.frozen_ms,
                "head": None if self.head is None else astuple(self.head),
                "tail": self.tail,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> SessionState | None:
        """The state `to_json` wrote; None for another format (or not a state): rebuild."""
        try:
            value = orjson.loads(data)
            if not isinstance(value, dict) or value.get("format") != STATE_FORMAT:
                return None
            head = value["head"]
            return cls(
                window=int(value["window"]),
                first_ms=value["first_ms"],
                last_ms=value["last_ms"],
                frozen_ms=value["frozen_ms"],
                head=None if head is None else Carry(*head),
                tail=value["tail"],
            )
        except (ValueError, KeyError, TypeError):
            return None

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

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter
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
_carry_values = attrgetter(*(f.name for f in fields(Carry)))
"""A carry's fields in order, as `Carry(*values)` takes them (dataclasses.astuple, which deep-copies
each value, took most of `to_json`'s time)."""


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
    """`collapse_session(tail)`, once computed (None: not yet)."""
    _ended: bool | None = field(default=None, repr=False, compare=False)
    """The tail holds a purchase (None: not known), as `_freeze` last found."""

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
        # Exact duplicates share a time: a row is compared only with the rows of its millisecond
        # (the tail is in time order: found by bisection, not by a pass over the whole tail).
        held: dict[int, set[tuple[tuple[str, Any], ...]]] = {}
        for row in rows:
            t = row[TIME]
            if t < self.first_ms - gap:
                continue  # an older visit's: the current one stays as it is (a gap > 30 min)
            if t < self.first_ms or (self.frozen_ms is not None and t <= self.frozen_ms):
                return False  # may bridge to an older visit, or falls inside the frozen head
            same = held.get(t)
            if same is None:
                lo = bisect_left(self.tail, t, key=_by_time)
                hi = bisect_right(self.tail, t, lo=lo, key=_by_time)
                same = held[t] = {_identity(r) for r in self.tail[lo:hi]}
            identity = _identity(row)
            if identity in same:
                continue  # an exact duplicate of a stored row: it collapses into that one
            same.add(identity)
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
        if after:
            self.last_ms = after[-1][TIME]
        added = inside + after
        self.tail = sorted(self.tail + added, key=_by_time)
        if not added or self._events is None or self._ended:
            return self._freeze()
        # Collapsing works millisecond by millisecond and cuts at the first purchase (the tail
        # holds none yet), so the tail's collapsed events before the new rows' first time stay
        # as they were: only the tail from that time on is collapsed again (for the common
        # click, later than every stored row, the new rows alone), not the whole tail.
        since = min(row[TIME] for row in added)
        kept = len(self._events)
        while kept and self._events[kept - 1][2] >= since:
            kept -= 1
        recent = [row for row in self.tail if row[TIME] >= since]
        purchase = min((r[TIME] for r in added if _is_purchase(r)), default=None)
        return self._freeze((self._events[:kept] + collapse_session(recent), purchase))

    def _freeze(self, collapsed: tuple[list[CollapsedEvent], int | None] | None = None) -> bool:
        """Fold the tail's oldest time groups into the head while it keeps TAIL_WINDOWS windows
        of events; drop rows after the first purchase. False when the head is set but the tail
        no longer fills the window (a late purchase cut it short): rebuild. `collapsed`: the
        tail's collapsed events and its first purchase's time, when the caller knows them."""
        if collapsed is None:
            events = collapse_session(self.tail)
            purchase = min((r[TIME] for r in self.tail if _is_purchase(r)), default=None)
        else:
            events, purchase = collapsed
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
        self._events, self._ended = events, purchase is not None
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
                "head": None if self.head is None else _carry_values(self.head),
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

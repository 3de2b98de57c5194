"""A session prefix -> model inputs: the reference implementation, used by training and serving.

Training hands over many sessions at once as flat arrays (`EventTable`, read from the
warehouse's `session_events`); serving hands over one request's sessions, first collapsed from raw
browsing events by `collapse_session` (the Python twin of `session_events`, held to it by a parity
test). Both go through the same `tokenize` and `windows`, vectorised with NumPy, so a model sees
the same numbers online as it did offline. (A request's few events cost NumPy mostly its fixed
per-call overhead: serving encodes small batches with `features.small_batch`, a per-event loop
held to `encode_collapsed` bit for bit by a property test, and larger ones here.)

A session served event by event need not be encoded whole on every click: its older events can be
folded into a `Carry` (what they leave to the tokens of the later ones: counts, the first and last
times, the funnel's first add and cart, the last SKU seen), and only its recent events encoded,
with the carry handed to `tokenize`, `windows` and `encode_collapsed`. Training passes no carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from smallboat.features.spec import (
    ACTION_TOKEN,
    COUNT_FEATURES,
    COUNTED_ACTIONS,
    GAP_FIRST,
    MOVE_NA,
    MOVE_OTHER,
    MOVE_SAME,
    MOVE_UNKNOWN,
    PAD,
    PRICE_NONE,
    SKU_NONE,
    SKU_OOV,
    STAGE_BEFORE_ADD,
    STAGE_MAX_SINCE_ADD,
    FeatureSpec,
)
from smallboat.features.vocab import Vocabulary
from smallboat.schema import SESSION_GAP_MS

LOG_SESSION_GAP = float(np.log1p(SESSION_GAP_MS / 1000))
_ACTION_RANK = {"pageview": 1, "detail": 2, "add": 3, "remove": 4, "purchase": 5}
TOKEN_COLUMNS: tuple[str, ...] = ("action", "sku", "gap", "price", "category", "move", "stage")
"""Per-event token columns of `ModelInputs`, each (N, L)."""


@dataclass
class EventTable:
    """Collapsed events of many sessions, flat and in session order.

    Session i owns rows offsets[i]:offsets[i+1]; its events are in `session_events` order.
    """

    offsets: np.ndarray  # (S+1,) int64
    actions: np.ndarray  # (E,) object: 'pageview' | 'detail' | 'add' | 'remove' | 'purchase'
    skus: np.ndarray  # (E,) object: SKU hash or None
    timestamps_ms: np.ndarray  # (E,) int64

    def __post_init__(self) -> None:
        n = len(self.actions)
        assert len(self.skus) == n and len(self.timestamps_ms) == n, (
            f"columns differ in length: {n}, {len(self.skus)}, {len(self.timestamps_ms)}"
        )
        assert self.offsets[0] == 0 and self.offsets[-1] == n, (
            f"offsets must run from 0 to {n}, got {self.offsets[0]}..{self.offsets[-1]}"
        )

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1


@dataclass
class EventTokens:
    """Per-event tokens of an EventTable (same row order), plus its offsets."""

    offsets: np.ndarray  # (S+1,)
    action: np.ndarray  # (E,) int8
    sku: np.ndarray  # (E,) int32
    gap: np.ndarray  # (E,) int8
    log_gap: np.ndarray  # (E,) float32: log1p(gap seconds) / log1p(30 min); 0 for a first event
    price: np.ndarray  # (E,) int8
    category: np.ndarray  # (E,) int16
    move: np.ndarray  # (E,) int8
    stage: np.ndarray  # (E,) int8: funnel stage after the event (see spec.STAGE_*)
    timestamps_ms: np.ndarray  # (E,) int64
    is_oov: np.ndarray  # (E,) bool: a SKU outside the training vocabulary


@dataclass
class ModelInputs:
    """What the model consumes for N prefixes: left-padded token windows and summary counts."""

    action: np.ndarray  # (N, L) int64
    sku: np.ndarray  # (N, L)
    gap: np.ndarray  # (N, L)
    log_gap: np.ndarray  # (N, L) float32: the exact gap, where the bucket is coarse
    price: np.ndarray  # (N, L)
    category: np.ndarray  # (N, L)
    move: np.ndarray  # (N, L)
    stage: np.ndarray  # (N, L)
    counts: np.ndarray  # (N, len(COUNT_FEATURES)) float32, raw counts over the whole prefix
    events_used: np.ndarray  # (N,) int: events inside the window
    oov_skus: np.ndarray  # (N,) int: out-of-vocabulary SKU events inside the window

    def __len__(self) -> int:
        return len(self.action)

    def take(self, rows: np.ndarray) -> ModelInputs:
        return ModelInputs(**{name: getattr(self, name)[rows] for name in _INPUT_FIELDS})

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _INPUT_FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ModelInputs:
        return cls(**{name: np.asarray(arrays[name]) for name in _INPUT_FIELDS})


_INPUT_FIELDS = (*TOKEN_COLUMNS, "log_gap", "counts", "events_used", "oov_skus")

CollapsedEvent = tuple[str, str | None, int]
"""(action, sku, timestamp_ms): one event of `collapse_session`."""


@dataclass(frozen=True)
class Carry:
    """What a session's earlier collapsed events leave to the tokens of its later ones.

    Encoding the later events with this carry gives the tokens and counts that encoding the whole
    session gives them, as long as the model's window holds later events only (`windows` checks).
    The carry holds no token id: the SKU is kept as text, so a reloaded model with another
    vocabulary encodes it right.
    """

    events: int  # how many earlier events
    pageview: int  # of which pageviews
    detail: int
    add: int
    remove: int
    first_ms: int  # the first earlier event's time (the session's duration runs from it)
    last_ms: int  # the last earlier event's time (the next event's gap runs from it)
    first_add: int  # position of the session's first add (0-based), -1 before any
    cart: int  # what the cart holds after them: adds minus removes, never below 0
    last_sku: str | None  # SKU of the last earlier event with one (the category move's reference)

    def extend(self, events: Sequence[CollapsedEvent]) -> Carry:
        """This carry followed by `events` (later in the same session)."""
        return _fold(self, events)

    @staticmethod
    def of(events: Sequence[CollapsedEvent]) -> Carry:
        """The carry of a session's first `events` (at least one, no purchase)."""
        assert events, "a carry needs at least one event"
        return _fold(None, events)

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return (self.pageview, self.detail, self.add, self.remove)


def _fold(carry: Carry | None, events: Sequence[CollapsedEvent]) -> Carry:
    if carry is None:
        first_ms = int(events[0][2])
        n, first_add, cart, last_sku = 0, -1, 0, None
        counts = dict.fromkeys(COUNTED_ACTIONS, 0)
    else:
        first_ms, n, first_add, cart, last_sku = (
            carry.first_ms, carry.events, carry.first_add, carry.cart, carry.last_sku
        )  # fmt: skip
        counts = dict(zip(COUNTED_ACTIONS, carry.counts, strict=True))
    last_ms = carry.last_ms if carry is not None else first_ms
    for action, sku, ts in events:
        if action not in counts:  # a purchase ends the prefix: it is never carried
            raise ValueError(f"cannot carry a {action!r} event; expected {list(counts)}")
        counts[action] += 1
        if action == "add":
            cart += 1
            if first_add < 0:
                first_add = n
        elif action == "remove":
            cart = max(0, cart - 1)
        if sku is not None:
            last_sku = sku
        last_ms = int(ts)
        n += 1
    return Carry(
        n,
        counts["pageview"],
        counts["detail"],
        counts["add"],
        counts["remove"],
        first_ms,
        last_ms,
        first_add,
        cart,
        last_sku,
    )


@dataclass(frozen=True)
class _Carried:
    """Per-session arrays of the carries handed to `tokenize` / `windows` (0s where none)."""

    present: np.ndarray  # (S,) bool
    events: np.ndarray  # (S,) int64
    counts: np.ndarray  # (S, 4) int64: pageview, detail, add, remove
    first_ms: np.ndarray  # (S,) int64
    last_ms: np.ndarray  # (S,) int64
    first_add: np.ndarray  # (S,) int64, -1 before any add
    cart: np.ndarray  # (S,) int64
    last_sku: np.ndarray  # (S,) object: None when no earlier event had a SKU

    @classmethod
    def of(cls, carry: Sequence[Carry | None], n_sessions: int) -> _Carried:
        assert len(carry) == n_sessions, f"{len(carry)} carries for {n_sessions} sessions"
        zero = Carry(0, 0, 0, 0, 0, 0, 0, -1, 0, None)
        filled = [c or zero for c in carry]

        def column(name: str) -> np.ndarray:
            return np.array([getattr(c, name) for c in filled], dtype=np.int64)

        return cls(
            present=np.array([c is not None for c in carry], dtype=bool),
            events=column("events"),
            counts=np.array([c.counts for c in filled], dtype=np.int64).reshape(-1, 4),
            first_ms=column("first_ms"),
            last_ms=column("last_ms"),
            first_add=column("first_add"),
            cart=column("cart"),
            last_sku=np.array([c.last_sku for c in filled] + [None], dtype=object)[:-1],
        )


def collapse_session(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str | None, int]]:
    """Raw browsing events of ONE session -> its collapsed events before the first purchase.

    Mirrors the warehouse's `session_events` (see its SQL): a pageview at the same millisecond as
    a detail of the session is dropped (the pair is one product event); events are ordered by time
    and the funnel rank, ties broken by SKU, URL and the raw columns, exact duplicates kept once;
    then only the events before the first purchase remain (what the intent task sees).
    Returns (action, sku, timestamp_ms) triples.
    """
    normalised = []
    detail_moments = set()
    for row in rows:
        event_type = row["event_type"]
        action = "pageview" if event_type == "pageview" else row["product_action"]
        ts = int(row["server_timestamp_epoch_ms"])
        if action == "detail":
            detail_moments.add(ts)
        normalised.append((action, row.get("product_sku_hash"), ts, row, event_type))
    first_purchase = min((ts for a, _, ts, _, _ in normalised if a == "purchase"), default=None)

    def order(item: tuple[str, str | None, int, Mapping[str, Any], str]) -> tuple[Any, ...]:
        action, sku, ts, row, event_type = item
        url = row.get("hashed_url")
        product_action = row.get("product_action")
        return (
            ts,
            _ACTION_RANK.get(action, 6),
            sku is not None,
            sku or "",
            url is not None,
            url or "",
            event_type,
            product_action is not None,
            product_action or "",
        )

    kept = [x for x in normalised if not (x[0] == "pageview" and x[2] in detail_moments)]
    # Each key computed once, for the sort and the duplicate check (stable on equal keys).
    keyed = sorted(((order(x), x) for x in kept), key=itemgetter(0))
    out: list[tuple[str, str | None, int]] = []
    previous: tuple[Any, ...] | None = None
    for key, item in keyed:
        if key == previous:
            continue
        previous = key
        action, sku, ts = item[0], item[1], item[2]
        if first_purchase is not None and (
            ts > first_purchase or (ts == first_purchase and action == "purchase")
        ):
            continue
        out.append((action, sku, ts))
    return out


def event_table(sessions: Sequence[Sequence[tuple[str, str | None, int]]]) -> EventTable:
    """Build an EventTable from collapsed sessions (lists of (action, sku, timestamp_ms))."""
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = [event for session in sessions for event in session]
    return EventTable(
        offsets=offsets,
        actions=np.array([e[0] for e in flat], dtype=object),
        skus=np.array([e[1] for e in flat], dtype=object),
        timestamps_ms=np.array([e[2] for e in flat], dtype=np.int64),
    )


def tokenize(
    table: EventTable,
    vocab: Vocabulary,
    spec: FeatureSpec,
    carry: Sequence[Carry | None] | None = None,
) -> EventTokens:
    """Per-event tokens: action, SKU id, time-gap bucket, price, top category, category move.

    `carry`: per session, what its earlier events (not in `table`) leave to these (None: the
    session starts in `table`, as in training)."""
    n = len(table.actions)
    action = np.zeros(n, dtype=np.int8)
    for name, token in ACTION_TOKEN.items():
        action[table.actions == name] = token
    unknown = action == 0
    if unknown.any():
        bad = sorted({str(a) for a in table.actions[unknown]})
        raise ValueError(f"unknown action(s) {bad}; expected one of {list(ACTION_TOKEN)}")

    has_sku = np.array([s is not None for s in table.skus], dtype=bool)
    row = vocab.lookup(table.skus)
    found = row >= 0
    sku = np.where(has_sku, SKU_OOV, SKU_NONE).astype(np.int32)
    sku[found] = vocab.sku_token[row[found]]
    is_oov = has_sku & (sku == SKU_OOV)
    price = np.full(n, PRICE_NONE, dtype=np.int8)
    price[found] = vocab.price_token[row[found]]
    category = np.full(n, 1, dtype=np.int16)
    category[found] = vocab.category_token[row[found]]
    leaf = np.full(n, -1, dtype=np.int64)
    leaf[found] = vocab.leaf_code[row[found]]

    starts = np.zeros(n, dtype=bool)
    starts[table.offsets[:-1][table.offsets[:-1] < n]] = True
    gap_s = np.diff(table.timestamps_ms, prepend=table.timestamps_ms[:1]) / 1000.0
    first = starts  # rows whose gap is "the session's first event"
    carried = None if carry is None else _Carried.of(carry, table.n_sessions)
    inherited = None
    if carried is not None:
        # A carried session's first event here follows its carry's last one; its first product
        # event compares its category with the carry's last SKU's.
        lengths = np.diff(table.offsets)
        heads = table.offsets[:-1][carried.present & (lengths > 0)]
        gap_s[heads] = (
            table.timestamps_ms[heads] - carried.last_ms[carried.present & (lengths > 0)]
        ) / 1000.0
        first = starts.copy()
        first[heads] = False
        carried_leaf = np.full(table.n_sessions, -2, dtype=np.int64)  # -2: no earlier product
        with_sku = carried.present & np.array([s is not None for s in carried.last_sku], dtype=bool)
        if with_sku.any():
            carried_row = vocab.lookup(carried.last_sku[with_sku])
            carried_leaf[with_sku] = np.where(
                carried_row >= 0, vocab.leaf_code[np.maximum(carried_row, 0)], -1
            )
        inherited = np.repeat(carried_leaf, lengths)
    gap = np.searchsorted(np.asarray(spec.gap_edges_s), gap_s, side="right") + GAP_FIRST + 1
    gap = np.where(first, GAP_FIRST, gap).astype(np.int8)
    log_gap = np.where(first, 0.0, np.log1p(np.maximum(gap_s, 0.0)) / LOG_SESSION_GAP)

    return EventTokens(
        offsets=table.offsets,
        action=action,
        sku=sku,
        gap=gap,
        log_gap=log_gap.astype(np.float32),
        price=price,
        category=category,
        move=_category_moves(has_sku, leaf, starts, inherited),
        stage=_funnel_stages(action, table.offsets, carried),
        timestamps_ms=table.timestamps_ms,
        is_oov=is_oov,
    )


def _funnel_stages(
    action: np.ndarray, offsets: np.ndarray, carried: _Carried | None = None
) -> np.ndarray:
    """Where the session stands after each event: events since its first add (capped) and
    whether the cart holds anything (adds minus removes so far, per session, never below 0).
    `carried`: sessions continuing earlier events (their positions, first add and cart)."""
    n = len(action)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    n_sessions = len(offsets) - 1
    session = np.repeat(np.arange(n_sessions), np.diff(offsets))  # (E,)
    start = offsets[session]

    def per_session_cumsum(hits: np.ndarray) -> np.ndarray:
        total = np.cumsum(hits)
        before = np.concatenate([[0], total])[start]
        return total - before

    adds = per_session_cumsum(action == ACTION_TOKEN["add"])
    removes = per_session_cumsum(action == ACTION_TOKEN["remove"])
    position = np.arange(n) - start
    base_cart = np.zeros(n_sessions, dtype=np.int64)
    if carried is not None:
        position = position + carried.events[session]
        base_cart = carried.cart
    first_add = np.full(n_sessions, np.iinfo(np.int64).max)
    is_add = action == ACTION_TOKEN["add"]
    np.minimum.at(first_add, session[is_add], position[is_add])
    if carried is not None:
        first_add = np.where(carried.first_add >= 0, carried.first_add, first_add)
    after_add = position >= first_add[session]  # an add so far (this session's, or carried)
    since = np.where(after_add, np.minimum(position - first_add[session], STAGE_MAX_SINCE_ADD), -1)
    # A remove with an empty cart (of something put in before this session) must not cancel a
    # later add: the cart count is c_t = max(0, c_{t-1} + d_t) from c_-1 = the carried cart c0,
    # which is N_t - min(0, min N_<=t) for the running net N = c0 + adds - removes. One
    # accumulate gives each session's running minimum once every session is shifted below all
    # earlier ones (|N| <= n + max c0, so a step of 2 (n + max c0) + 1 suffices).
    net = adds - removes + base_cart[session]
    shift = session * (2 * (n + int(base_cart.max(initial=0))) + 1)
    lowest = np.minimum.accumulate(net - shift) + shift
    in_cart = net - np.minimum(lowest, 0) > 0
    return (STAGE_BEFORE_ADD + (since + 1) * 2 + in_cart).astype(np.int8)


def _category_moves(
    has_sku: np.ndarray, leaf: np.ndarray, starts: np.ndarray, inherited: np.ndarray | None = None
) -> np.ndarray:
    """Each product event's leaf category against the session's previous product event's.
    `inherited`: per row, its session's carried last product leaf (-1 unknown, -2 none)."""
    n = len(has_sku)
    positions = np.arange(n)
    # Index of the latest product event at or before each row, restarting at session starts.
    session_start = np.maximum.accumulate(np.where(starts, positions, 0))
    latest = np.maximum.accumulate(np.where(has_sku, positions, -1))
    previous = np.full(n, -1, dtype=np.int64)  # latest product event strictly before
    previous[1:] = latest[:-1]  # (not concatenate([[-1], ...]): that has one row when n == 0)
    has_previous = has_sku & (previous >= session_start)
    prev_leaf = np.where(has_previous, leaf[np.maximum(previous, 0)], -1)
    if inherited is not None:  # a session's first product event here, after a carried one
        takes = has_sku & ~has_previous & (inherited > -2)
        prev_leaf = np.where(takes, inherited, prev_leaf)
        has_previous = has_previous | takes
    move = np.full(n, MOVE_NA, dtype=np.int8)
    known = has_previous & (leaf >= 0) & (prev_leaf >= 0)
    move[has_previous & ~known] = MOVE_UNKNOWN
    move[known & (leaf == prev_leaf)] = MOVE_SAME
    move[known & (leaf != prev_leaf)] = MOVE_OTHER
    return move


def windows(
    tokens: EventTokens,
    session: np.ndarray,
    prefix_length: np.ndarray,
    spec: FeatureSpec,
    carry: Sequence[Carry | None] | None = None,
) -> ModelInputs:
    """Model inputs for prefixes: the first `prefix_length[i]` events of session `session[i]`.

    The last `spec.max_events` events of each prefix are kept, left-padded with PAD, so the most
    recent event is always in the last column. `carry` (per session of `tokens`, as given to
    `tokenize`): the counts also cover the carried events; a carried prefix must fill the window.
    """
    session = np.asarray(session, dtype=np.int64)
    prefix_length = np.asarray(prefix_length, dtype=np.int64)
    start = tokens.offsets[session]
    available = tokens.offsets[session + 1] - start
    assert (prefix_length >= 1).all() and (prefix_length <= available).all(), (
        f"prefix lengths must be within 1..session length; got {prefix_length.min()}.."
        f"{prefix_length.max()} for sessions of {available.min()}..{available.max()} events"
    )
    end = start + prefix_length  # (N,) exclusive
    width = spec.max_events
    carried = None if carry is None else _Carried.of(carry, len(tokens.offsets) - 1)
    if carried is not None:
        short = carried.present[session] & (prefix_length < width)
        assert not short.any(), (
            f"a carried prefix must fill the window of {width} events; got "
            f"{prefix_length[short].tolist()}"
        )
    idx = end[:, None] - width + np.arange(width)[None, :]  # (N, L)
    valid = idx >= start[:, None]  # (N, L)
    safe = np.where(valid, idx, 0)

    def gather(values: np.ndarray) -> np.ndarray:
        return np.where(valid, values[safe], PAD).astype(np.int64)

    oov_in_window = (tokens.is_oov[safe] & valid).sum(axis=1)
    return ModelInputs(
        **{name: gather(getattr(tokens, name)) for name in TOKEN_COLUMNS},
        log_gap=np.where(valid, tokens.log_gap[safe], 0.0).astype(np.float32),
        counts=_prefix_counts(tokens, start, end, None if carried is None else (carried, session)),
        events_used=valid.sum(axis=1),
        oov_skus=oov_in_window,
    )


def _prefix_counts(
    tokens: EventTokens,
    start: np.ndarray,
    end: np.ndarray,
    carried: tuple[_Carried, np.ndarray] | None = None,
) -> np.ndarray:
    """COUNT_FEATURES over each whole prefix, via cumulative sums (no per-prefix loop); with
    `carried` (the carries and each prefix's session), the carried events count too."""
    columns = [end - start]
    for name in COUNTED_ACTIONS:
        hits = np.concatenate([[0], np.cumsum(tokens.action == ACTION_TOKEN[name])])
        columns.append(hits[end] - hits[start])
    first_ms = tokens.timestamps_ms[start]
    if carried is not None:
        carry, session = carried
        columns[0] = columns[0] + carry.events[session]
        for k in range(4):
            columns[k + 1] = columns[k + 1] + carry.counts[session, k]
        first_ms = np.where(carry.present[session], carry.first_ms[session], first_ms)
    duration = tokens.timestamps_ms[end - 1] - first_ms
    columns.append(duration / 1000.0)
    counts = np.stack(columns, axis=1).astype(np.float32)
    assert counts.shape[1] == len(COUNT_FEATURES), (counts.shape, COUNT_FEATURES)
    return counts


def encode_sessions(
    sessions: Sequence[Sequence[Mapping[str, Any]]], vocab: Vocabulary, spec: FeatureSpec
) -> ModelInputs:
    """Serving's entry point: raw browsing events of each session -> model inputs.

    Each session is collapsed and cut before its first purchase exactly as the warehouse does for
    training; the whole remaining prefix is encoded. An empty prefix (no events, or a purchase
    first) is the caller's to handle: it raises ValueError here.
    """
    return encode_collapsed([collapse_session(rows) for rows in sessions], vocab, spec)


def encode_collapsed(
    collapsed: Sequence[Sequence[tuple[str, str | None, int]]],
    vocab: Vocabulary,
    spec: FeatureSpec,
    carry: Sequence[Carry | None] | None = None,
) -> ModelInputs:
    """Model inputs of sessions already collapsed by `collapse_session` (none of them empty).
    `carry`: per session, its earlier events' `Carry` (None: `collapsed` holds it whole)."""
    empty = [i for i, events in enumerate(collapsed) if not events]
    if empty:
        raise ValueError(f"session(s) {empty} have no events before a purchase")
    table = event_table(collapsed)
    tokens = tokenize(table, vocab, spec, carry)
    lengths = np.diff(table.offsets)
    return windows(tokens, np.arange(len(collapsed)), lengths, spec, carry)

"""Sessions for hits that carry no session id: a client's events cut after 30 idle minutes.

A session's id is derived from what defines it, `sha256(client id, session start ms)`, so the
same events always get the same session id. The tracker keeps, per client, the current session's
start and its last event time; a hit more than `schema.SESSION_GAP_MS` after the last event
starts a new session, as in the Coveo data.

The state survives a restart without a store of its own: every logged record carries its client,
session id and session start, so on open the collector rebuilds the tracker from the log segments
not yet compacted plus the `clients` table, which compaction updates in the same transaction
that marks a segment done (`record_clients`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smallboat.schema import SESSION_GAP_MS

IDLE_EVICT_MS = SESSION_GAP_MS + 5 * 60 * 1000
"""A client not heard from for this long (collector clock) is forgotten: its next event starts a
new session anyway, since event times follow the clock within the accepted skew."""
MAX_CLIENTS = 100_000
"""Default of SMALLBOAT_COLLECT_MAX_CLIENTS (about 45 MB of tracked clients)."""
CLIENTS_KEEP_MS = 24 * 3_600_000
"""Rows of the `clients` table older than this are deleted at compaction."""

_CLIENTS_SCHEMA = """
create table if not exists clients (
    client_id text primary key,
    session_id text not null,
    session_start_ms integer not null,
    last_event_ms integer not null,
    touched_ms integer not null
)
"""


def session_id_for(client_id: str, start_ms: int) -> str:
    """The id of the session of `client_id` that starts at `start_ms`."""
    return hashlib.sha256(f"{client_id}\n{start_ms}".encode()).hexdigest()


@dataclass
class _Client:
    session_id: str
    start_ms: int
    last_ms: int
    touched_ms: int


class SessionTracker:
    """Assigns sessions to client ids (not thread-safe: the collector uses it on its event loop).

    At most `max_clients` clients are tracked (SMALLBOAT_COLLECT_MAX_CLIENTS): past it the least
    recently touched is forgotten, so that a flood of new client ids cannot grow the collector's
    memory (30k clients held 74 MB for 35 minutes); a forgotten client's next hit starts a new
    session, as after an idle gap."""

    def __init__(
        self,
        *,
        gap_ms: int = SESSION_GAP_MS,
        idle_ms: int = IDLE_EVICT_MS,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, not {max_clients}")
        self.gap_ms = gap_ms
        self.idle_ms = idle_ms
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # least recently touched first

    def __len__(self) -> int:
        return len(self._clients)

    def assign(self, client_id: str, event_ms: int, now_ms: int) -> tuple[str, int]:
        """The (session id, session start) of an event of `client_id` at `event_ms`."""
        self._evict(now_ms)
        client = self._clients.get(client_id)
        if client is not None and event_ms < client.start_ms - self.gap_ms:
            # A late event from before the current session, with a gap in between: a session
            # of its own, without disturbing the current one.
            return session_id_for(client_id, event_ms), event_ms
        if client is None or event_ms - client.last_ms > self.gap_ms:
            client = _Client(session_id_for(client_id, event_ms), event_ms, event_ms, now_ms)
            self._clients[client_id] = client
            self._clients.move_to_end(client_id)
            self._cap()
        else:
            client.last_ms = max(client.last_ms, event_ms)
            client.touched_ms = now_ms
        self._clients.move_to_end(client_id)
        return client.session_id, client.start_ms

    def observe(
        self, client_id: str, session_id: str, start_ms: int, event_ms: int, touched_ms: int
    ) -> None:
        """Take in a logged event (rebuilding state): the latest event of a client wins."""
        client = self._clients.get(client_id)
        if client is not None and event_ms < client.last_ms:
            client.touched_ms = max(client.touched_ms, touched_ms)
            return
        self._clients[client_id] = _Client(
            session_id, start_ms, event_ms, max(touched_ms, client.touched_ms if client else 0)
        )

    def observe_records(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Observe every record that was sessioned from a client id; returns how many."""
        n = 0
        for r in records:
            if r.get("client_id") is not None and r.get("session_start_ms") is not None:
                self.observe(
                    r["client_id"],
                    r["session_id_hash"],
                    r["session_start_ms"],
                    r["server_timestamp_epoch_ms"],
                    r["received_at_ms"],
                )
                n += 1
        return n

    def finish_rebuild(self, now_ms: int) -> None:
        """Order clients by last touch and drop the idle ones (after `observe` calls)."""
        ordered = sorted(self._clients.items(), key=lambda kv: kv[1].touched_ms)
        self._clients = OrderedDict(ordered)
        self._evict(now_ms)
        self._cap()

    def _cap(self) -> None:
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)  # the least recently touched

    def _evict(self, now_ms: int) -> None:
        while self._clients:
            client_id, client = next(iter(self._clients.items()))
            if now_ms - client.touched_ms <= self.idle_ms:
                return
            del self._clients[client_id]


def ensure_clients_table(con: sqlite3.Connection) -> None:
    con.execute(_CLIENTS_SCHEMA)


def record_clients(con: sqlite3.Connection, records: Sequence[Mapping[str, Any]]) -> None:
    """Upsert each client's latest session from compacted records (inside compaction's commit)."""
    ensure_clients_table(con)
    latest: dict[str, Mapping[str, Any]] = {}
    for r in records:
        client = r.get("client_id")
        if client is None or r.get("session_start_ms") is None:
            continue
        seen = latest.get(client)
        if seen is None or r["server_timestamp_epoch_ms"] >= seen["server_timestamp_epoch_ms"]:
            latest[client] = r
    con.executemany(
        "insert into clients values (?, ?, ?, ?, ?) on conflict (client_id) do update set "
        "session_id = excluded.session_id, session_start_ms = excluded.session_start_ms, "
        "last_event_ms = excluded.last_event_ms, touched_ms = excluded.touched_ms "
        "where excluded.last_event_ms >= clients.last_event_ms",
        (
            (
                c,
                r["session_id_hash"],
                r["session_start_ms"],
                r["server_timestamp_epoch_ms"],
                r["received_at_ms"],
            )
            for c, r in latest.items()
        ),
    )
    if records:
        newest = max(r["received_at_ms"] for r in records)
        con.execute("delete from clients where touched_ms < ?", (newest - CLIENTS_KEEP_MS,))


def load_clients(con: sqlite3.Connection, tracker: SessionTracker, *, since_ms: int) -> int:
    """Observe the clients the state recorded as touched since `since_ms`; returns how many."""
    ensure_clients_table(con)
    rows = con.execute(
        "select client_id, session_id, session_start_ms, last_event_ms, touched_ms "
        "from clients where touched_ms >= ?",
        (since_ms,),
    ).fetchall()
    for client_id, session_id, start_ms, last_ms, touched_ms in rows:
        tracker.observe(client_id, session_id, start_ms, last_ms, touched_ms)
    return len(rows)

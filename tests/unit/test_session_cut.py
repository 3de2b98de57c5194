"""The 30-minute session cut is measured from a session's LAST event, never from its start.

One fixture decides it: a visitor active every 10 minutes for 50 minutes is one session (each gap
is 10 minutes, though the session is long past 30); 31 idle minutes after the last event cut it.
The collector's tracker (sessions for hits without a session id) and the prediction service's
current visit (`serve.sessions.current_session`) must both say so; a cut measured from the start
would split the first at minute 40.
"""

from __future__ import annotations

import pytest

from smallboat.collect.sessions import SessionTracker, session_id_for
from smallboat.schema import SESSION_GAP_MS
from smallboat.serve.sessions import current_session
from tests.landing_data import browsing_row

MIN = 60_000
NOW = 1_800_000_000_000
ACTIVE_MINUTES = (0, 10, 20, 30, 40, 50)  # one session, active for 50 minutes
CUT_MINUTES = 50 + 31  # 31 idle minutes after the last event


def test_the_fixture_is_longer_than_the_gap() -> None:
    assert SESSION_GAP_MS == 30 * MIN
    assert ACTIVE_MINUTES[-1] * MIN > SESSION_GAP_MS  # the start-based cut would decide here


def test_the_collector_keeps_a_session_active_past_30_minutes() -> None:
    tracker = SessionTracker()
    assigned = [tracker.assign("c", NOW + m * MIN, now_ms=NOW + m * MIN) for m in ACTIVE_MINUTES]
    assert assigned == [(session_id_for("c", NOW), NOW)] * len(ACTIVE_MINUTES)
    later = NOW + CUT_MINUTES * MIN
    assert tracker.assign("c", later, now_ms=later) == (session_id_for("c", later), later)


@pytest.mark.parametrize(("idle_minutes", "cut"), [(30, False), (31, True)])
def test_the_collector_cuts_after_30_idle_minutes_from_the_last_event(
    idle_minutes: int, cut: bool
) -> None:
    tracker = SessionTracker()
    for m in ACTIVE_MINUTES:
        tracker.assign("c", NOW + m * MIN, now_ms=NOW + m * MIN)
    at = NOW + (ACTIVE_MINUTES[-1] + idle_minutes) * MIN
    expected = (session_id_for("c", at), at) if cut else (session_id_for("c", NOW), NOW)
    assert tracker.assign("c", at, now_ms=at) == expected


def test_the_service_keeps_the_same_visit_and_cuts_at_the_same_event() -> None:
    rows = [browsing_row("s", NOW + m * MIN) for m in ACTIVE_MINUTES]
    assert current_session(rows) == rows
    after = browsing_row("s", NOW + CUT_MINUTES * MIN)
    assert current_session([*rows, after]) == [after]

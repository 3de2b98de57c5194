"""`prediction_labels` (real dbt on DuckDB): hand-made sessions and logged predictions, each label
worked out by hand from the definition in the model's SQL header."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from smallboat import schema
from smallboat.config import Settings
from smallboat.data.log.predictions import prediction_row
from smallboat.warehouse.db import connect
from smallboat.warehouse.transform import run_transform
from tests.landing_data import BASE_MS, STEP_MS, SessionSpec, browsing_table, write_landing

pytestmark = pytest.mark.slow
MIN = 60_000
HOUR = 3_600_000

SESSIONS = [
    SessionSpec("buyer", BASE_MS, "d:A a:A pv p:A"),  # add at moment 2, purchase at 4
    SessionSpec("leaver", BASE_MS, "d:A a:A pv"),  # no purchase; idle long before the watermark
    SessionSpec("bought_early", BASE_MS, "a:C p:C pv"),
    SessionSpec("recent", BASE_MS + 2 * HOUR - 10 * MIN, "a:B pv"),  # ends 9 min before as_of
    SessionSpec("late", BASE_MS + 2 * HOUR, "pv"),  # sets the watermark: BASE + 2 h
]


def _prediction(
    pid: str, session: str | None, moment: int, start: int = BASE_MS, **summary: Any
) -> dict[str, Any]:
    event_time = start + (moment - 1) * STEP_MS
    row = prediction_row(
        request_id=f"r-{pid}",
        route="/v1/sessions/{session_id}/events",
        replica="test",
        session_id=session,
        predicted_at_ms=event_time + 5,
        model_version=summary.pop("model_version", "1"),
        probability=summary.pop("probability", 0.4),
        latency_ms=2.0,
        summary={"n_events": moment, "event_time_ms": event_time, "events_after_add": 0, **summary},
    )
    row["prediction_id"] = pid
    return row


PREDICTIONS = [
    _prediction("buyer-k0", "buyer", 2, n_add=1),
    _prediction("buyer-k0-again", "buyer", 2, n_add=1),  # the pageview twin: same prefix length
    _prediction("buyer-k1", "buyer", 3, n_add=1, events_after_add=1),  # not a prediction point
    _prediction("buyer-v2", "buyer", 2, n_add=1, model_version="2"),  # another model: counts
    _prediction("leaver-k0", "leaver", 2, n_add=1),
    _prediction("leaver-no-add", "leaver", 1, events_after_add=None),
    _prediction("early", "bought_early", 3, n_add=1, events_after_add=2),
    _prediction("recent-k0", "recent", 1, start=BASE_MS + 2 * HOUR - 10 * MIN, n_add=1),
    _prediction("ghost", "ghost", 1, n_add=1),
    _prediction("anonymous", None, 1, n_add=1),
    _prediction("empty", "buyer", 1, probability=None),
]

EXPECTED = {  # prediction_id -> (label_status, label, is_evaluation_point)
    "buyer-k0": ("positive", 1, True),
    "buyer-k0-again": ("positive", 1, False),
    "buyer-k1": ("positive", 1, False),
    "buyer-v2": ("positive", 1, True),
    "leaver-k0": ("negative", 0, True),
    "leaver-no-add": ("negative", 0, False),
    "early": ("purchased_before", None, True),
    "recent-k0": ("pending", None, True),
    "ghost": ("unknown_session", None, True),
    "anonymous": ("unknown_session", None, True),
    "empty": ("positive", 1, False),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("labels") / "home")
    settings.ensure_home()
    write_landing(settings, "browsing_events", browsing_table(SESSIONS))
    table = pa.Table.from_pylist(PREDICTIONS, schema=schema.PREDICTIONS.arrow_schema)
    write_landing(settings, "predictions", table, "predictions-test")
    return settings


def _labels(settings: Settings) -> dict[str, tuple[Any, ...]]:
    with connect(settings, read_only=True) as con:
        rows = con.sql(
            "select prediction_id, label_status, label, is_evaluation_point from prediction_labels"
        ).fetchall()
    return {pid: (status, label, point) for pid, status, label, point in rows}


def test_each_prediction_gets_the_label_of_the_definition(home: Settings) -> None:
    run_transform(home)
    assert _labels(home) == EXPECTED


def test_a_later_watermark_turns_pending_into_negative(home: Settings) -> None:
    run_transform(home, vars={"monitor_as_of_ms": BASE_MS + 10 * HOUR})
    labels = _labels(home)
    assert labels["recent-k0"] == ("negative", 0, True)
    assert labels["buyer-k0"] == EXPECTED["buyer-k0"]

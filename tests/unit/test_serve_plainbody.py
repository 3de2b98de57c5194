"""The fast lane of `POST /v1/predict` (`serve.plainbody`): a body it takes must be one the
pydantic models take, with the same rows, ids, form and options; anything it is not sure of is
left to the models (None); and its answer is the response model's JSON, field for field."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from smallboat.serve.models import (
    MAX_BATCH_SESSIONS,
    MAX_ID,
    BatchPredictions,
    NextItem,
    PredictBody,
    Prediction,
)
from smallboat.serve.plainbody import answer_json, plain_predict_body, wire_prediction
from smallboat.serve.scoring import NextItemOptions, Outcome

Parsed = tuple[list[list[dict[str, Any]]], list[str | None], bool, NextItemOptions]


def by_models(raw: bytes) -> Parsed | None:
    """What FastAPI's declared route makes of `raw` (json.loads, then PredictBody): the rows
    it scores, the ids it echoes, the form and the options; None when it refuses the body."""
    try:
        data = json.loads(raw)
        body = PredictBody.model_validate(data)
    except (ValueError, ValidationError):
        return None
    sessions = body.session_list()
    return (
        [s.rows() for s in sessions],
        [s.session_id for s in sessions],
        body.is_batch,
        NextItemOptions(k=body.k, exclude_seen=body.exclude_seen),
    )


def by_lane(raw: bytes) -> Parsed | None:
    plain = plain_predict_body(raw)
    if plain is None:
        return None
    return plain.sessions, plain.session_ids, plain.is_batch, plain.options


def view(ts: Any, **fields: Any) -> dict[str, Any]:
    return {"event_type": "pageview", "server_timestamp_epoch_ms": ts, **fields}


def product(action: str, sku: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "event_product",
        "product_action": action,
        "product_sku_hash": sku,
        "server_timestamp_epoch_ms": ts,
        **fields,
    }


EVENTS = [
    view(1_700_000_000_000, hashed_url="u1"),
    product("detail", "sku-1", 1_700_000_001_000, hashed_url="u2"),
    product("add", "sku-1", 1_700_000_002_000, product_sku_hash="sku-1"),
    view(1_700_000_003_000, product_action=None, product_sku_hash=None, hashed_url=None),
]

TAKEN: list[Any] = [
    {"events": EVENTS},
    {"events": EVENTS, "session_id": "s-1", "k": 3, "exclude_seen": True},
    {"events": []},
    {"sessions": [{"events": EVENTS}, {"events": EVENTS[:2], "session_id": "b"}], "k": 100},
    {"sessions": [{"events": []}]},
    # "" is null in the optional columns and ids
    {"events": [view(5, hashed_url="", product_action="", product_sku_hash="")]},
    {"events": [view(5, session_id_hash="")], "session_id": ""},
    {"sessions": [{"events": EVENTS, "session_id": ""}]},
    # an event's own session id wins over the body's
    {"events": [view(5, session_id_hash="own")], "session_id": "outer"},
    {"events": [view(0), view(2**53)]},  # the timestamp's bounds
    {"events": [view(1, hashed_url="é" * 8_192, session_id_hash="ü" * MAX_ID)]},
    {"events": EVENTS, "session_id": "\u0000 not printable but text"},
    {"sessions": [{"events": [view(1)]}] * MAX_BATCH_SESSIONS},
]

LEFT: list[Any] = [
    # refused by the models
    {"events": [view(2**53 + 1)]},
    {"events": [view(1234567890123456789)]},  # 19 digits
    {"events": [view(12345678901234567890)]},  # past 64 bits: orjson refuses it
    {"events": [view(-1)]},
    {"events": [view(True)]},
    {"events": [view("1700000000000")]},
    {"events": [view(1, extra=1)]},
    {"events": EVENTS, "extra": 1},
    {"sessions": [{"events": EVENTS, "extra": 1}]},
    {"events": [view(1, product_action="detail")]},
    {"events": [product("detail", "", 1)]},
    {"events": [product("view", "sku", 1)]},
    {"events": [{"event_type": "", "server_timestamp_epoch_ms": 1}]},
    {"events": [{"server_timestamp_epoch_ms": 1}]},
    {"events": [view(1, hashed_url="u" * 8_193)]},
    {"events": [view(1)], "session_id": "s" * (MAX_ID + 1)},
    {"events": [view(1)], "session_id": 7},
    {"events": [view(1)], "k": 0},
    {"events": [view(1)], "k": 101},
    {"events": [view(1)], "k": True},
    {"events": [view(1)], "exclude_seen": "true"},
    {"events": [view(1)], "exclude_seen": 1},
    {"events": EVENTS, "sessions": [{"events": EVENTS}]},
    {"sessions": [{"events": EVENTS}], "session_id": "top"},
    {"sessions": []},
    {"sessions": [{"events": [view(1)]}] * (MAX_BATCH_SESSIONS + 1)},
    {"sessions": [{"session_id": "no events"}]},
    {"events": None},
    {},
    [],
    "events",
    None,
    # taken by the models, left to them all the same
    {"events": [view(1)], "k": 3.0},
    {"events": [view(1.0)]},
    {"events": [view(1)], "sessions": None},
    {"sessions": [{"events": [view(1)]}], "session_id": None},
]

RAW_LEFT = [
    b'{"events": [{"event_type": "pageview", "server_timestamp_epoch_ms": NaN}]}',
    b'{"events": [{"event_type": "pageview", "server_timestamp_epoch_ms": 1}], "k": NaN}',
    b'{"events": [], "session_id": "\\ud800"}',  # a lone surrogate
    b'\xef\xbb\xbf{"events": []}',  # a byte order mark
    b'{"events": [}',
    b"",
]


@pytest.mark.parametrize("body", TAKEN, ids=range(len(TAKEN)))
def test_the_lane_takes_valid_bodies_with_the_models_rows(body: Any) -> None:
    raw = orjson.dumps(body)
    assert by_lane(raw) is not None
    assert by_lane(raw) == by_models(raw)


@pytest.mark.parametrize("body", LEFT, ids=range(len(LEFT)))
def test_the_lane_leaves_every_doubtful_body_to_the_models(body: Any) -> None:
    raw = json.dumps(body).encode()
    assert by_lane(raw) is None


@pytest.mark.parametrize("raw", RAW_LEFT, ids=range(len(RAW_LEFT)))
def test_the_lane_leaves_what_orjson_does_not_parse_to_the_models(raw: bytes) -> None:
    assert by_lane(raw) is None


def test_duplicate_keys_read_as_the_models_read_them() -> None:
    raw = b'{"events": [], "k": 200, "k": 5, "session_id": "a", "session_id": "b"}'
    assert by_lane(raw) == by_models(raw) is not None


_values = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(["pageview", "event_product", "detail", "add", "remove", "purchase", "x"]),
    st.text(max_size=5),
    st.text(min_size=MAX_ID, max_size=MAX_ID + 1),
    st.integers(min_value=-2, max_value=2**64),
    st.sampled_from([0, 1, 100, 101, 2**53, 2**53 + 1, 10**18]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
_event_keys = st.sampled_from(
    [
        "session_id_hash",
        "event_type",
        "product_action",
        "product_sku_hash",
        "server_timestamp_epoch_ms",
        "hashed_url",
        "sku",
    ]
)
_events = st.lists(st.dictionaries(_event_keys, _values, max_size=7), max_size=3)
_event_like = st.one_of(
    st.builds(view, st.integers(min_value=0, max_value=2**53)),
    st.builds(
        product,
        st.sampled_from(["detail", "add", "remove", "purchase", ""]),
        st.sampled_from(["sku", "", "s" * (MAX_ID + 1)]),
        st.integers(min_value=0, max_value=2**53),
    ),
)
_top_keys = st.sampled_from(["session_id", "events", "sessions", "k", "exclude_seen", "x"])


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    events = st.one_of(_events, st.lists(_event_like, max_size=4), _values)
    top = draw(st.dictionaries(_top_keys, _values, max_size=5))
    if draw(st.booleans()):
        top["events"] = draw(events)
    elif draw(st.booleans()):
        session = st.fixed_dictionaries(
            {"events": events}, optional={"session_id": _values, "x": _values}
        )
        top["sessions"] = draw(st.lists(session, max_size=3))
    return top


@hsettings(max_examples=600, deadline=None)
@given(bodies())
def test_any_body_the_lane_takes_the_models_take_the_same(body: Any) -> None:
    """Random bodies near the valid ones (wrong types, out of range, extra keys, "" and null
    everywhere): whatever the lane takes, the models take and read the same."""
    raw = json.dumps(body).encode()  # integers past 64 bits too (orjson refuses to parse them)
    lane = by_lane(raw)
    if lane is not None:
        assert lane == by_models(raw)


def _outcome(**fields: Any) -> Outcome:
    base: dict[str, Any] = {
        "purchase_probability": 0.123456789012345,
        "model_version": "7",
        "events_used": 20,
        "events_in_session": 23,
        "oov_skus": 2,
    }
    return Outcome(**(base | fields))


OUTCOMES = [
    _outcome(),
    _outcome(next_items=[("a", 1.5e-7), ("b", -3.0)]),
    _outcome(next_items=[]),
    _outcome(purchase_probability=None, note="nothing to predict from", events_used=0),
    _outcome(purchase_probability=1.0, summary={"n_events": 23}),
]


def _validated(outcome: Outcome, session_id: str | None) -> Prediction:
    """The outcome's answer as pydantic's validation builds it from its values."""
    return Prediction(
        session_id=session_id,
        purchase_probability=outcome.purchase_probability,
        model_version=outcome.model_version,
        events_used=outcome.events_used,
        events_in_session=outcome.events_in_session,
        oov_skus=outcome.oov_skus,
        note=outcome.note,
        next_items=None
        if outcome.next_items is None
        else [NextItem(sku=sku, score=score) for sku, score in outcome.next_items],
    )


@pytest.mark.parametrize("outcome", OUTCOMES, ids=range(len(OUTCOMES)))
def test_a_wire_prediction_is_the_response_models_json(outcome: Outcome) -> None:
    for session_id in (None, "s-1"):
        expected = _validated(outcome, session_id).model_dump(mode="json")
        assert outcome.answer(session_id) == _validated(outcome, session_id)
        wire = wire_prediction(outcome, session_id)
        assert list(wire) == list(expected)  # every field, in the model's order
        assert orjson.loads(orjson.dumps(wire)) == expected


def test_answers_are_what_the_declared_route_serializes() -> None:
    """One session: a `Prediction`; a batch: `BatchPredictions`, in order, ids echoed."""
    response = TypeAdapter(Prediction | BatchPredictions)
    single = plain_predict_body(orjson.dumps({"events": EVENTS, "session_id": "one"}))
    assert single is not None
    outcome = OUTCOMES[1]
    assert orjson.loads(answer_json(single, [outcome], "9")) == response.dump_python(
        outcome.answer("one"), mode="json"
    )
    batch = plain_predict_body(
        orjson.dumps({"sessions": [{"events": EVENTS, "session_id": "x"}, {"events": []}]})
    )
    assert batch is not None
    outcomes = [OUTCOMES[0], OUTCOMES[3]]
    expected = BatchPredictions(
        model_version="7", predictions=[outcomes[0].answer("x"), outcomes[1].answer(None)]
    )
    assert orjson.loads(answer_json(batch, outcomes, "9")) == response.dump_python(
        expected, mode="json"
    )

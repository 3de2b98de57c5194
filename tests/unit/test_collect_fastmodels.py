"""The plain views of Segment messages and Snowplow events (`collect.fastmodels`) against the
pydantic models they stand in for: a view exists only for an event the model accepts, and maps
to the very rows (or the very error) the model does."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from smallboat.collect.events import Hit, TimePolicy
from smallboat.collect.fastmodels import json_views, segment_view, snowplow_view
from smallboat.collect.models import (
    MAX_ID,
    MAX_JSON_EVENTS,
    JsonEvents,
    SegmentMessage,
    SnowplowEvent,
)
from smallboat.collect.protocols import json_hits, segment_message_hits
from smallboat.collect.snowplow import (
    ACTION_SCHEMA,
    CONTEXTS_SCHEMA,
    PRODUCT_SCHEMA,
    UNSTRUCT_SCHEMA,
    _ecommerce_action,
    snowplow_hits,
)

NOW = 1_800_000_000_000
POLICY = TimePolicy.from_days(36500)

# Text near the limits and in the shapes that differ between the two paths: empty, exactly
# MAX_ID, one past it, non-ASCII, a lone surrogate.
TEXT = st.one_of(
    st.sampled_from(["", "a", "x" * MAX_ID, "x" * (MAX_ID + 1), "é", "\ud800", "1.5", "12"]),
    st.text(max_size=8),
    st.text(alphabet="abc-_.", min_size=1, max_size=8),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), TEXT)
ANY = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["id", "x"]), inner)
    ),
    max_leaves=6,
)
RECENT = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2026, 12, 1))
"""Times the event-time policy of these tests accepts (older ones are refused alike)."""
ISO_TIMES = st.one_of(
    RECENT.map(lambda d: d.isoformat()),
    RECENT.map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
    st.from_regex(
        r"\A(19|20|00|99)\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-6]\d:[0-6]\d(\.\d{1,7})?(Z|[+-][0-2]\d:[0-6]\d)?\Z"
    ),
    st.sampled_from(
        [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.123Z",
            "2024-05-01T12:00:00.1234567Z",
            "2024-02-30T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T23:59:60Z",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00-23:59",
            "2024-05-01 12:00:00Z",
            "1714564800",
            "0000-01-01T00:00:00Z",
        ]
    ),
)


GOOD_ID = st.text(alphabet="abc-_.09", min_size=1, max_size=8)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten (so that whole events are often valid), else `bad`."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 9 else good)


def _ids() -> st.SearchStrategy[Any]:
    return _mostly(GOOD_ID, st.one_of(st.none(), TEXT, st.integers(-5, 5), st.floats(), ANY))


def _object(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A dict of some of `fields` (and an extra one), or something that is not a dict."""
    extras = st.dictionaries(st.sampled_from(["extra", "name"]), ANY, max_size=1)
    dicts = st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda d: extras.map(lambda e: {**e, **d})
    )
    return _mostly(dicts, ANY)


PRODUCTS = _mostly(st.lists(_object(product_id=_ids(), sku=_ids()), max_size=3), ANY)
SEGMENT = _object(
    type=_mostly(st.sampled_from(["track", "page", "identify", "screen"]), ANY),
    event=_mostly(
        st.sampled_from(["Product Viewed", "Product Added", "Order Completed", "Other"]), ANY
    ),
    userId=_ids(),
    anonymousId=_ids(),
    messageId=_ids(),
    timestamp=_mostly(ISO_TIMES, ANY),
    properties=_object(
        product_id=_ids(),
        sku=_ids(),
        products=PRODUCTS,
        url=_mostly(TEXT, ANY),
        session_id=_ids(),
    ),
    context=_object(session_id=_ids(), page=_object(url=_mostly(TEXT, ANY))),
)


def _outcome(mapping: Any) -> tuple[str, Any]:
    """What a mapping gives: its rows (random message ids blanked) or its error."""
    try:
        hits, ignored = mapping()
    except Exception as exc:
        return "error", (type(exc), str(exc))
    return "rows", ([_stable(h) for h in hits], ignored)


def _stable(hit: Hit) -> Hit:
    return hit._replace(message_id="~") if ":~" in hit.message_id else hit


def _agrees(raw: Any, view: Any, model_type: Any, mapping: Any) -> None:
    if view is None:
        return  # the model decides, as without the views
    model = model_type.model_validate(raw)  # a view only for what the model accepts
    assert _outcome(lambda: mapping(view)) == _outcome(lambda: mapping(model)), raw


@given(SEGMENT)
@hsettings(max_examples=2000, deadline=None)
def test_a_segment_view_maps_as_the_model_does(raw: Any) -> None:
    def mapping(message: Any) -> Any:
        return segment_message_hits(message, received_ms=NOW, policy=POLICY, at="batch[0].")

    view = segment_view(raw)
    _agrees(raw, view, SegmentMessage, mapping)
    if view is not None:
        model = SegmentMessage.model_validate(raw)
        assert view.timestamp == model.timestamp
        assert (view.timestamp is None) or (
            (view.timestamp.tzinfo is None) == (model.timestamp.tzinfo is None)  # type: ignore[union-attr]
        )


@given(ISO_TIMES)
@hsettings(max_examples=500, deadline=None)
def test_a_segment_time_is_read_as_pydantic_reads_it(text: str) -> None:
    raw = {"type": "page", "anonymousId": "a", "timestamp": text}
    view = segment_view(raw)
    try:
        model = SegmentMessage.model_validate(raw)
    except ValidationError:
        assert view is None, text
        return
    if view is not None:
        assert view.timestamp == model.timestamp, text


def test_the_usual_segment_message_has_a_view() -> None:
    raw = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "anon-1",
        "messageId": "m-1",
        "timestamp": "2024-05-01T12:00:00.123Z",
        "properties": {"products": [{"product_id": "p1"}, {"sku": "s2"}], "url": "https://x/"},
        "context": {"page": {"url": "https://y/"}, "library": {"name": "analytics-python"}},
    }
    view = segment_view(raw)
    assert view is not None
    _agrees(
        raw,
        view,
        SegmentMessage,
        lambda m: segment_message_hits(m, received_ms=NOW, policy=POLICY),
    )


@pytest.mark.parametrize(
    "change",
    [
        {"userId": 42},  # a number id: the model keeps its text
        {"anonymousId": "é"},  # non-ASCII
        {"properties": {"url": "\ud800"}},  # a lone surrogate: the model refuses it
        {"timestamp": "2024-05-01T12:00:00.1234567Z"},  # seven fraction digits
        {"properties": {"products": [None]}},
        {"context": []},
    ],
)
def test_other_segment_shapes_are_left_to_the_model(change: dict[str, Any]) -> None:
    assert segment_view({"type": "page", "anonymousId": "a", **change}) is None


def _json_text(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _mostly(value.map(json.dumps), ANY)


ACTIONS = st.sampled_from(["product_view", "transaction", "list_view", "bogus", None])
UE = st.builds(
    lambda kind, schema: {
        "schema": UNSTRUCT_SCHEMA,
        "data": {"schema": schema, "data": {"type": kind}},
    },
    ACTIONS,
    st.sampled_from([ACTION_SCHEMA + "0-2", "iglu:other/x/jsonschema/1-0-0"]),
)
CO = st.builds(
    lambda skus: {
        "schema": CONTEXTS_SCHEMA,
        "data": [{"schema": PRODUCT_SCHEMA + "0-0", "data": {"id": s}} for s in skus],
    },
    st.lists(_mostly(GOOD_ID, st.one_of(TEXT, st.integers())), max_size=2),
)
TIMES = _mostly(st.sampled_from(["1799999000000", "1799999000000.5", "x", ""]), _ids())
SNOWPLOW = _object(
    e=_mostly(st.sampled_from(["pv", "ue", "pp", "se"]), _ids()),
    eid=_ids(),
    url=_mostly(TEXT, ANY),
    sid=_ids(),
    duid=_ids(),
    nuid=_ids(),
    uid=_ids(),
    dtm=TIMES,
    stm=TIMES,
    ttm=TIMES,
    ue_pr=_json_text(UE),
    ue_px=_mostly(st.just("eyJ4IjoxfQ"), ANY),
    co=_json_text(CO),
    cx=_mostly(st.just("bm90IGpzb24"), ANY),
)


@given(SNOWPLOW)
@hsettings(max_examples=2000, deadline=None)
def test_a_snowplow_view_maps_as_the_model_does(raw: Any) -> None:
    _agrees(
        raw,
        snowplow_view(raw),
        SnowplowEvent,
        lambda event: snowplow_hits(event, received_ms=NOW, policy=POLICY, at="data[0]."),
    )


@given(SNOWPLOW)
@hsettings(max_examples=1000, deadline=None)
def test_a_snowplow_event_maps_alike_from_the_action_cache(raw: Any) -> None:
    """`collect.snowplow` caches what a self-describing JSON text says: mapped again (from
    the cache), at another place of a batch, an event gives the same rows, or the same error
    with that place's prefix."""
    try:
        event = snowplow_view(raw) or SnowplowEvent.model_validate(raw)
    except ValidationError:
        return
    _ecommerce_action.cache_clear()

    def mapping(at: str) -> tuple[str, Any]:
        return _outcome(lambda: snowplow_hits(event, received_ms=NOW, policy=POLICY, at=at))

    first = mapping("data[0].")
    cached = mapping("data[12].")
    if first[0] == "rows":
        assert cached == first
    else:
        kind, text = first[1]
        assert text.startswith("data[0].")
        assert cached == ("error", (kind, "data[12]." + text.removeprefix("data[0].")))


def test_the_usual_snowplow_event_has_a_view() -> None:
    raw = {
        "e": "ue",
        "eid": "e-1",
        "duid": "d-1",
        "ttm": "1799999000000",
        "ue_pr": json.dumps(
            {
                "schema": UNSTRUCT_SCHEMA,
                "data": {"schema": ACTION_SCHEMA + "0-2", "data": {"type": "add_to_cart"}},
            }
        ),
        "co": json.dumps(
            {
                "schema": CONTEXTS_SCHEMA,
                "data": [{"schema": PRODUCT_SCHEMA + "0-0", "data": {"id": "p"}}],
            }
        ),
        "tv": "js-3.0",
    }
    view = snowplow_view(raw)
    assert view is not None

    def mapping(event: Any) -> Any:
        return snowplow_hits(event, received_ms=NOW, policy=POLICY)

    _agrees(raw, view, SnowplowEvent, mapping)
    [hit], _ = mapping(view)
    assert (hit.product_action, hit.product_sku_hash, hit.message_id) == ("add", "p", "sp:e-1")


@pytest.mark.parametrize("change", [{"e": None}, {"ttm": 1799999000000}, {"url": "https://é/"}])
def test_other_snowplow_shapes_are_left_to_the_model(change: dict[str, Any]) -> None:
    assert snowplow_view({"e": "pv", "duid": "d", **change}) is None


JSON_EVENT = _object(
    message_id=_ids(),
    session_id_hash=_ids(),
    client_id=_ids(),
    event_type=_mostly(st.sampled_from(["pageview", "event_product"]), ANY),
    product_action=_mostly(st.sampled_from(["detail", "add", "purchase", None]), ANY),
    product_sku_hash=_ids(),
    hashed_url=_mostly(TEXT, ANY),
    url=_mostly(TEXT, ANY),
    server_timestamp_epoch_ms=_mostly(
        st.integers(NOW - 10**10, NOW + 10**6), st.one_of(st.floats(), st.booleans(), ANY)
    ),
)
JSON_BODY = st.one_of(
    JSON_EVENT, st.lists(JSON_EVENT, max_size=4), st.lists(st.just({}), min_size=501, max_size=501)
)


def _json_mapping(events: Any) -> Any:
    return json_hits(events, received_ms=NOW, policy=POLICY), None


@given(JSON_BODY)
@hsettings(max_examples=2000, deadline=None)
def test_json_views_map_as_the_model_does(data: Any) -> None:
    views = json_views(data)
    if views is None:
        return
    events = JsonEvents.model_validate(data).root
    assert _outcome(lambda: _json_mapping(views)) == _outcome(lambda: _json_mapping(events))


@pytest.mark.parametrize(
    "body",
    [
        {"client_id": "c", "event_type": "pageview", "typo": 1},  # extra="forbid"
        {"client_id": "c", "event_type": "pageview", "product_action": "add"},
        {"event_type": "pageview"},  # no session or client
        {"client_id": "c", "event_type": "pageview", "url": "u", "hashed_url": "h"},
        {"client_id": "c", "event_type": "pageview", "server_timestamp_epoch_ms": 1.0},
        {"client_id": "c", "event_type": ["pageview"]},
        [{"client_id": "c", "event_type": "pageview"}] * (MAX_JSON_EVENTS + 1),
    ],
)
def test_other_json_bodies_are_left_to_the_model(body: Any) -> None:
    assert json_views(body) is None


def test_a_plain_json_list_has_views() -> None:
    body = [
        {"message_id": "m1", "client_id": "c", "event_type": "pageview", "url": "https://x/"},
        {
            "session_id_hash": "s",
            "event_type": "event_product",
            "product_action": "add",
            "product_sku_hash": "p",
            "server_timestamp_epoch_ms": NOW - 1000,
        },
    ]
    views = json_views(body)
    assert views is not None and len(views) == 2
    assert _outcome(lambda: _json_mapping(views)) == _outcome(
        lambda: _json_mapping(JsonEvents.model_validate(body).root)
    )

"""Wire formats -> canonical hits, event-time bounds, and sessions cut from client ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallboat.collect.events import MAX_FUTURE_SKEW_MS, Hit, HitError, TimePolicy, hash_url
from smallboat.collect.ga import ua_hits
from smallboat.collect.models import GaHit, JsonEvent, SegmentMessage
from smallboat.collect.protocols import _epoch_ms, json_hits, segment_hits
from smallboat.collect.sessions import SessionTracker, session_id_for
from smallboat.schema import SESSION_GAP_MS

NOW = 1_800_000_000_000
POLICY = TimePolicy.from_days(7)


def ga(**params: Any) -> list[Hit]:
    hit = GaHit.model_validate({"v": "1", "cid": "c1", **params})
    return ua_hits(hit, received_ms=NOW, policy=POLICY).hits


def rows(hits: list[Hit]) -> list[tuple[Any, ...]]:
    return [(h.message_id, h.event_type, h.product_action, h.product_sku_hash) for h in hits]


def test_ga_pageview_is_one_plain_pageview_at_receive_time() -> None:
    [hit] = ga(t="pageview", z="42", dl="https://shop.example/p/1")
    assert (hit.event_type, hit.product_action, hit.product_sku_hash) == ("pageview", None, None)
    assert hit.timestamp_ms == NOW
    assert hit.hashed_url == hash_url("https://shop.example/p/1")
    assert len(hit.hashed_url) == 64
    assert (hit.message_id, hit.client_id, hit.session_id) == ("ga:c1:42", "c1", None)


def test_ga_product_page_logs_a_pageview_and_a_detail_like_the_release() -> None:
    hits = ga(t="pageview", pa="detail", pr1id="SKU1", z="7", sid="s9")
    assert rows(hits) == [
        ("ga:c1:7", "pageview", None, None),
        ("ga:c1:7#1", "event_product", "detail", "SKU1"),
    ]
    assert {h.timestamp_ms for h in hits} == {NOW}
    assert {h.session_id for h in hits} == {"s9"}


def test_ga_purchase_of_several_products_in_index_order() -> None:
    hits = ga(t="event", pa="purchase", pr2id="B", pr10id="C", pr1id="A", z="1")
    assert rows(hits) == [
        ("ga:c1:1", "event_product", "purchase", "A"),
        ("ga:c1:1#1", "event_product", "purchase", "B"),
        ("ga:c1:1#2", "event_product", "purchase", "C"),
    ]


def test_ga_event_times_from_queue_time_or_explicit_ms() -> None:
    assert ga(t="pageview", qt="1500")[0].timestamp_ms == NOW - 1500
    assert ga(t="pageview", ts_ms=str(NOW - 60_000))[0].timestamp_ms == NOW - 60_000


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"t": "event", "pa": "add"}, "pr1id is required with pa=add: the product's SKU"),
        ({"t": "event", "pa": "add", "pr1id": ""}, "pr1id is empty; expected the product's SKU"),
        ({"t": "event", "pa": "add", "pr201id": "A"}, "pr201id is past the last product index"),
        ({"t": "pageview", "qt": "5", "ts_ms": str(NOW)}, "qt cannot be combined with ts_ms"),
        (
            {"t": "pageview", "ts_ms": str(NOW + MAX_FUTURE_SKEW_MS + 60_000)},
            "ts_ms 1800000360000 is 6.0 minutes after the collector's clock",
        ),
        (
            {"t": "pageview", "ts_ms": "1547510400000"},
            "ts_ms 1547510400000 is 2,922.3 days before the collector's clock; it accepts "
            "event times up to 7.0 days old (SMALLBOAT_COLLECT_MAX_EVENT_AGE_DAYS)",
        ),
    ],
)
def test_bad_ga_hits_name_the_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(HitError) as caught:
        ga(**params)
    assert message in str(caught.value)


def test_ga_without_cache_buster_gets_a_random_unique_id() -> None:
    first, second = ga(t="pageview"), ga(t="pageview")
    assert first[0].message_id.startswith("ga:~")
    assert first[0].message_id != second[0].message_id


def segment(**fields: Any) -> tuple[list[Hit], int]:
    message = SegmentMessage.model_validate({"anonymousId": "anon", "messageId": "m", **fields})
    return segment_hits([message], received_ms=NOW, policy=POLICY)


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("Product Viewed", "detail"),
        ("Product Added", "add"),
        ("Product Removed", "remove"),
    ],
)
def test_segment_ecommerce_events_map_to_actions(event: str, action: str) -> None:
    hits, ignored = segment(type="track", event=event, properties={"product_id": 507})
    assert ignored == 0
    assert rows(hits) == [("seg:m", "event_product", action, "507")]


def test_segment_order_completed_is_one_purchase_per_product() -> None:
    moment = datetime.fromtimestamp((NOW - 60_123) / 1000, tz=UTC)
    hits, _ = segment(
        type="track",
        event="Order Completed",
        timestamp=moment.isoformat(),
        properties={"products": [{"product_id": "A"}, {"sku": "B"}], "session_id": "sess"},
    )
    assert rows(hits) == [
        ("seg:m", "event_product", "purchase", "A"),
        ("seg:m#1", "event_product", "purchase", "B"),
    ]
    assert {h.timestamp_ms for h in hits} == {NOW - 60_123}
    assert {h.session_id for h in hits} == {"sess"}


def test_segment_page_is_a_pageview_with_its_url_hashed() -> None:
    hits, _ = segment(type="page", userId="u1", context={"page": {"url": "https://x.test/a"}})
    assert rows(hits) == [("seg:m", "pageview", None, None)]
    assert hits[0].hashed_url == hash_url("https://x.test/a")
    assert hits[0].client_id == "u1"  # userId wins over anonymousId


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "identify", "traits": {"email": "a@b.c"}},
        {"type": "track", "event": "Checkout Started"},
        {"type": "screen", "name": "Home"},
    ],
)
def test_segment_messages_without_a_browsing_row_are_ignored(fields: dict[str, Any]) -> None:
    assert segment(**fields) == ([], 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "track", "event": "Product Added"}, "batch[0].properties.product_id is required"),
        (
            {"type": "track", "event": "Order Completed", "properties": {"products": []}},
            "batch[0].properties.products is required for 'Order Completed'",
        ),
        ({"type": "track"}, "batch[0].event is required on a track call"),
        ({}, "batch[0].type is required"),
        ({"type": "page", "anonymousId": None}, "batch[0].userId or anonymousId is required"),
    ],
)
def test_bad_segment_messages_name_the_field(fields: dict[str, Any], message: str) -> None:
    data = {"anonymousId": "anon", **fields}
    with pytest.raises(HitError, match=message.replace("[", r"\[").replace("]", r"\]")):
        segment_hits(
            [SegmentMessage.model_validate(data)], received_ms=NOW, policy=POLICY, where="batch"
        )


def test_json_events_keep_hashed_urls_and_hash_plain_ones() -> None:
    events = [
        JsonEvent(session_id_hash="s", event_type="pageview", hashed_url="ab" * 32),
        JsonEvent(client_id="c", event_type="pageview", url="https://x.test/"),
        JsonEvent(
            message_id="m3",
            session_id_hash="s",
            event_type="event_product",
            product_action="add",
            product_sku_hash="K",
            server_timestamp_epoch_ms=NOW - 5,
        ),
    ]
    hits = json_hits(events, received_ms=NOW, policy=POLICY)
    assert [h.hashed_url for h in hits] == ["ab" * 32, hash_url("https://x.test/"), None]
    assert [h.timestamp_ms for h in hits] == [NOW, NOW, NOW - 5]
    assert hits[2].message_id == "json:m3"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event_type": "pageview"}, "needs session_id_hash or client_id"),
        (
            {"client_id": "c", "event_type": "pageview", "product_action": "add"},
            "is a pageview: product_action and product_sku_hash must be null",
        ),
        (
            {"client_id": "c", "event_type": "event_product", "product_action": "add"},
            "product_action and product_sku_hash are required",
        ),
        ({"client_id": "c", "event_type": "pageview", "url": "u", "hashed_url": "h"}, "has both"),
    ],
)
def test_inconsistent_json_events_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JsonEvent.model_validate(fields)


def test_sessions_are_cut_after_thirty_idle_minutes() -> None:
    tracker = SessionTracker()
    t0 = NOW
    first, start = tracker.assign("c", t0, now_ms=t0)
    assert (first, start) == (session_id_for("c", t0), t0)
    assert tracker.assign("c", t0 + SESSION_GAP_MS, now_ms=t0)[0] == first  # exactly 30 min
    later = t0 + 2 * SESSION_GAP_MS + 1
    second, start2 = tracker.assign("c", later, now_ms=t0)  # 30 min + 1 ms after the last
    assert (second, start2) == (session_id_for("c", later), later)
    assert tracker.assign("other", t0, now_ms=t0)[0] != first


def test_a_rebuilt_tracker_continues_the_same_sessions() -> None:
    live = SessionTracker()
    logged = []
    for i, (client, ts) in enumerate([("a", NOW), ("b", NOW + 10), ("a", NOW + 60_000)]):
        session, start = live.assign(client, ts, now_ms=NOW + i)
        logged.append(
            {
                "client_id": client,
                "session_id_hash": session,
                "session_start_ms": start,
                "server_timestamp_epoch_ms": ts,
                "received_at_ms": NOW + i,
            }
        )
    rebuilt = SessionTracker()
    assert rebuilt.observe_records(reversed(logged)) == 3
    rebuilt.finish_rebuild(NOW + 100)
    for client in ("a", "b"):
        assert rebuilt.assign(client, NOW + 120_000, now_ms=NOW + 200) == live.assign(
            client, NOW + 120_000, now_ms=NOW + 200
        )


def test_idle_clients_are_forgotten() -> None:
    tracker = SessionTracker(idle_ms=1_000)
    tracker.assign("a", NOW, now_ms=NOW)
    tracker.assign("b", NOW, now_ms=NOW + 900)
    tracker.assign("c", NOW, now_ms=NOW + 1_500)
    assert len(tracker) == 2  # a was idle for 1.5 s


def test_tracked_clients_are_capped_and_the_least_recently_seen_forgotten() -> None:
    tracker = SessionTracker(max_clients=3)
    sessions = {c: tracker.assign(c, NOW, now_ms=NOW)[0] for c in ("a", "b", "c")}
    tracker.assign("a", NOW + 1_000, now_ms=NOW + 1_000)  # a is now the most recent
    tracker.assign("d", NOW + 2_000, now_ms=NOW + 2_000)  # over the cap: b goes
    assert len(tracker) == 3
    assert tracker.assign("a", NOW + 3_000, now_ms=NOW + 3_000)[0] == sessions["a"]
    assert tracker.assign("c", NOW + 3_000, now_ms=NOW + 3_000)[0] == sessions["c"]
    # b was forgotten: its next hit starts a new session (then d is the one past the cap).
    assert tracker.assign("b", NOW + 4_000, now_ms=NOW + 4_000) == (
        session_id_for("b", NOW + 4_000),
        NOW + 4_000,
    )
    assert len(tracker) == 3
    # A flood of new client ids holds the cap.
    for i in range(1_000):
        tracker.assign(f"flood-{i}", NOW + 5_000, now_ms=NOW + 5_000)
    assert len(tracker) == 3


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.none()  # type: ignore[arg-type]  # the stub allows only naive times
        | st.just(UTC)
        | st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        ),
    )
)
def test_segment_times_are_floored_epoch_milliseconds(moment: datetime) -> None:
    """Exact for any time, before 1970 too (floored, as a division by one millisecond)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    expected = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert _epoch_ms(moment) == expected

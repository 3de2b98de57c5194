"""The REES46 adapter: the real sample (with its cut-off last line) and hand-made defects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from smallboat import schema
from smallboat.data.sources import rees46
from smallboat.data.sources.rees46 import Rees46Source
from smallboat.errors import DataError
from tests.source_files import read_all, write_lines

REES46 = Rees46Source()
HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)
ROWS = [
    "2019-10-01 00:00:00 UTC,view,100,2001,electronics.smartphone,apple,500.00,1,sa",  # line 2
    "2019-10-01 00:00:05 UTC,view,101,2002,,,10.00,1,sa",  # line 3: no category_code, no brand
    "2019-10-01 00:00:09 UTC,cart,100,2001,electronics.smartphone,apple,480.00,1,sa",  # line 4
    "2019-10-01 00:01:00 UTC,remove_from_cart,100,2001,electronics.smartphone,apple,480.00,1,sa",
    "2019-10-01 00:02:00 UTC,purchase,102,2003,kids.toys,,0.00,2,sb",  # line 6: price 0
]
CUT_LINE_MESSAGE = (
    "2019-Oct-head.csv line 17,436: the line has 8 fields; expected 9 (event_time, event_type, "
    "product_id, category_id, category_code, brand, price, user_id, user_session): it is cut off "
    "or has an unquoted comma"
)


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> Path:
    return shared_data / "rees46" / "2019-Oct-head.csv"


def test_sample_cut_off_last_line_fails_with_its_line_number(sample: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_all(REES46, sample)
    assert str(caught.value) == CUT_LINE_MESSAGE


def test_sample_skip_rejects_only_the_cut_off_line(sample: Path) -> None:
    tables, rejected = read_all(REES46, sample, on_bad_rows="skip")
    assert [p.message() for p in rejected] == [CUT_LINE_MESSAGE]
    assert rejected[0].raw is not None and rejected[0].raw.startswith(
        "2019-10-01 02:50:00 UTC,view,"
    )
    events = tables["browsing_events"]
    assert events.num_rows == 17_434
    assert Counter(events.column("product_action").to_pylist()) == {
        "detail": 17_055,
        "add": 165,
        "purchase": 214,
    }
    assert set(events.column("event_type").to_pylist()) == {"event_product"}
    assert events.column("hashed_url").null_count == events.num_rows
    first = events.slice(0, 1).to_pylist()[0]
    assert first["session_id_hash"] == "72d76fde-8bb3-4e00-8c23-a032dfed738c"
    assert first["product_sku_hash"] == "44600062"
    assert first["server_timestamp_epoch_ms"] == 1_569_888_000_000  # 2019-10-01 00:00:00 UTC

    catalog = tables["catalog"]
    assert catalog.num_rows == len(catalog.column("product_sku_hash").unique()) == 6_493
    by_sku = {r["product_sku_hash"]: r for r in catalog.to_pylist()}
    assert by_sku["44600062"]["category_hash"] == "2103807459595387724"  # no code: category_id
    assert by_sku["3900821"]["category_hash"] == "appliances/environment/water_heater"
    buckets = Counter(catalog.column("price_bucket").to_pylist())
    assert set(buckets) - {None} == set(schema.PRICE_BUCKETS)
    assert max(n for b, n in buckets.items() if b) - min(n for b, n in buckets.items() if b) < 20


def test_mapping_and_catalog_of_a_small_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "2019-Oct.csv", HEADER, ROWS)
    tables, rejected = read_all(REES46, path)
    assert rejected == []
    events = tables["browsing_events"].to_pylist()
    assert [e["product_action"] for e in events] == [
        "detail",
        "detail",
        "add",
        "remove",
        "purchase",
    ]
    assert [e["server_timestamp_epoch_ms"] for e in events][:2] == [
        1_569_888_000_000,
        1_569_888_005_000,
    ]
    catalog = {r["product_sku_hash"]: r for r in tables["catalog"].to_pylist()}
    assert catalog["100"]["category_hash"] == "electronics/smartphone"
    assert catalog["101"]["category_hash"] == "2002"
    # Product 100's last price (480) and 101's (10) are the two priced products: deciles 6 and 1.
    assert (catalog["100"]["price_bucket"], catalog["101"]["price_bucket"]) == (6, 1)
    assert catalog["102"]["price_bucket"] is None  # price 0 means no price


DEFECTS = [
    (
        "empty session",
        2,
        "2019-10-01 00:00:05 UTC,view,101,2002,,,10.00,1,",
        "user_session",
        "user_session is empty; every event needs a session",
    ),
    (
        "bad time",
        1,
        "2019-10-01T00:00:05Z,view,101,2002,,,10.00,1,sa",
        "event_time",
        "event_time '2019-10-01T00:00:05Z' is not a time like '2019-10-01 00:00:00 UTC'",
    ),
    (
        "unknown event type",
        4,
        "2019-10-01 00:02:00 UTC,wishlist,102,2003,kids.toys,,0.00,2,sb",
        "event_type",
        "event_type 'wishlist' is not one of view, cart, remove_from_cart, purchase",
    ),
    (
        "bad price",
        1,
        "2019-10-01 00:00:05 UTC,view,101,2002,,,ten,1,sa",
        "price",
        "price 'ten' is not a non-negative number",
    ),
    (
        "empty product",
        1,
        "2019-10-01 00:00:05 UTC,view,,2002,,,10.00,1,sa",
        "product_id",
        "product_id is empty; every event needs a product",
    ),
]


@pytest.mark.parametrize(
    ("index", "bad", "field", "message"), [c[1:] for c in DEFECTS], ids=[c[0] for c in DEFECTS]
)
def test_defects_fail_or_skip(
    tmp_path: Path, index: int, bad: str, field: str, message: str
) -> None:
    rows = list(ROWS)
    rows[index] = bad
    path = write_lines(tmp_path / "2019-Oct.csv", HEADER, rows)
    with pytest.raises(DataError) as caught:
        read_all(REES46, path)
    assert str(caught.value) == f"2019-Oct.csv line {index + 2}: {message}"

    tables, rejected = read_all(REES46, path, on_bad_rows="skip")
    assert [(p.line, p.field, p.raw) for p in rejected] == [(index + 2, field, bad)]
    assert tables["browsing_events"].num_rows == len(ROWS) - 1


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.csv", "event_time,event_type,product_id", ["a,b,c"])
    with pytest.raises(DataError, match=r"^x.csv header is missing column\(s\) category_id, "):
        read_all(REES46, path)


def test_catalog_is_the_same_when_merged_along_the_way(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merging product rows every few blocks (as a big file does) changes nothing."""
    whole, _ = read_all(REES46, sample, on_bad_rows="skip")
    monkeypatch.setattr(rees46, "_COMPACT_ROWS", 500)
    merged, _ = read_all(REES46, sample, on_bad_rows="skip", block_size=64 << 10)
    assert (
        merged["catalog"]
        .sort_by("product_sku_hash")
        .equals(whole["catalog"].sort_by("product_sku_hash"))
    )
    assert merged["browsing_events"].equals(whole["browsing_events"])

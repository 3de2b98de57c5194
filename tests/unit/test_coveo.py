"""The Coveo adapter on hand-made files: exact text formats, every kind of defect, line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallboat import schema
from smallboat.data.sources.coveo import CoveoSource, table_of
from smallboat.errors import DataError
from tests.source_files import (
    BROWSING_HEADER,
    BROWSING_ROWS,
    CATALOG_HEADER,
    CATALOG_ROWS,
    SEARCH_HEADER,
    SEARCH_ROWS,
    read_all,
    vector_text,
    write_lines,
)

COVEO = CoveoSource()
FILES = {
    "browsing_train.csv": (BROWSING_HEADER, BROWSING_ROWS),
    "search_train.csv": (SEARCH_HEADER, SEARCH_ROWS),
    "sku_to_content.csv": (CATALOG_HEADER, CATALOG_ROWS),
}
ACTIONS = "'', detail, add, remove, purchase"
VECTOR = "expected [f1, f2, ...] with 50 numbers"
SKUS = "expected a list of quoted SKUs like ['h1', 'h2']"
BAD_VECTOR = f"{vector_text(3)[:-1]}, x, {vector_text(46)[1:]}"  # 50 items, the 4th is 'x'


def test_browsing_maps_exact_text_formats(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, BROWSING_ROWS)
    tables, rejected = read_all(COVEO, path)
    rows = tables["browsing_events"].to_pylist()
    assert rejected == []
    assert tables["browsing_events"].schema == schema.BROWSING_EVENTS.arrow_schema
    assert rows[1] == {
        "session_id_hash": "s2",
        "event_type": "pageview",
        "product_action": None,  # '' -> NULL
        "product_sku_hash": None,
        "server_timestamp_epoch_ms": 1550000002000,
        "hashed_url": "u1",
    }
    # Row order is kept (the file is not sorted; sorting is the warehouse's job).
    assert [r["server_timestamp_epoch_ms"] for r in rows] == [
        1550000002000,
        1550000002000,
        1550000000500,
        1550000000000,
        1550000009000,
    ]
    assert rows[3]["hashed_url"] is None


def test_search_parses_vectors_and_sku_lists(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "search_train.csv", SEARCH_HEADER, SEARCH_ROWS)
    tables, rejected = read_all(COVEO, path)
    rows = tables["search_events"].to_pylist()
    assert rejected == []
    assert len(rows[0]["query_vector"]) == schema.VECTOR_DIM
    assert rows[0]["query_vector"][:2] == pytest.approx([-0.2, -0.19])
    assert rows[0]["clicked_skus_hash"] is None
    assert rows[0]["product_skus_hash"] == ["k1", "k2"]
    assert rows[1]["query_vector"] is None
    assert rows[1]["clicked_skus_hash"] == ["k2"]
    assert rows[2]["clicked_skus_hash"] == []  # "[]" is an empty list, not NULL


def test_catalog_parses_buckets_and_large_vectors(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "sku_to_content.csv", CATALOG_HEADER, CATALOG_ROWS)
    tables, rejected = read_all(COVEO, path)
    rows = tables["catalog"].to_pylist()
    assert rejected == []
    assert [r["price_bucket"] for r in rows] == [7, None, 10]
    assert rows[0]["image_vector"][0] == pytest.approx(-20.0)
    assert rows[0]["category_hash"] == "c1/c2/c3"
    assert rows[1] == {
        "product_sku_hash": "k2",
        "description_vector": None,
        "category_hash": None,
        "image_vector": None,
        "price_bucket": None,
    }


def test_other_spacing_and_quotes_are_accepted(tmp_path: Path) -> None:
    """Not the release's exact text, but unambiguous: spaces around items, double quotes."""
    spaced = " [ " + ",".join(f" {i / 10} " for i in range(50)) + " ] "
    rows = [
        f's1,"{spaced}","[ \'k1\' ,\'k2\' ]","[""k3""]",1',
        f's2,"{vector_text()}","[]","[\'k4\', \'k5\']",2',
    ]
    path = write_lines(tmp_path / "search_train.csv", SEARCH_HEADER, rows)
    tables, rejected = read_all(COVEO, path)
    assert rejected == []
    first, second = tables["search_events"].to_pylist()
    assert first["query_vector"][:3] == pytest.approx([0.0, 0.1, 0.2])
    assert (first["clicked_skus_hash"], first["product_skus_hash"]) == (["k1", "k2"], ["k3"])
    assert (second["clicked_skus_hash"], second["product_skus_hash"]) == ([], ["k4", "k5"])


def test_table_is_inferred_from_header_when_name_is_unknown(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "part-0001.csv", SEARCH_HEADER, SEARCH_ROWS)
    assert table_of(path) is schema.SEARCH_EVENTS
    odd = write_lines(tmp_path / "odd.csv", "a,b,c", ["1,2,3"])
    with pytest.raises(DataError, match=r"^odd.csv: cannot tell which Coveo table it holds"):
        table_of(odd)


# (case id, file, 0-based index of the row to replace, bad line, field, message after the line)
DEFECTS = [
    (
        "bad event_type",
        "browsing_train.csv",
        1,
        "s2,click,,,1550000002000,u1",
        "event_type",
        "event_type 'click' is not one of pageview, event_product",
    ),
    (
        "bad product_action",
        "browsing_train.csv",
        2,
        "s1,event_product,buy,k1,1550000000500,u1",
        "product_action",
        f"product_action 'buy' is not one of {ACTIONS}",
    ),
    (
        "action on a pageview",
        "browsing_train.csv",
        1,
        "s2,pageview,detail,,1550000002000,u1",
        "product_action",
        "product_action 'detail' must be empty on a pageview row",
    ),
    (
        "no action on a product event",
        "browsing_train.csv",
        0,
        "s2,event_product,,k1,1550000002000,u1",
        "product_action",
        "product_action is empty on an event_product row; expected one of detail, add, remove, "
        "purchase",
    ),
    (
        "non-integer timestamp",
        "browsing_train.csv",
        3,
        "s1,pageview,,,2019-02-01 10:00,",
        "server_timestamp_epoch_ms",
        "server_timestamp_epoch_ms '2019-02-01 10:00' is not an integer (event time, epoch "
        "milliseconds)",
    ),
    (
        "fractional timestamp",
        "browsing_train.csv",
        3,
        "s1,pageview,,,1550000000000.5,",
        "server_timestamp_epoch_ms",
        "server_timestamp_epoch_ms '1550000000000.5' is not an integer (event time, epoch "
        "milliseconds)",
    ),
    (
        "timestamp beyond int64",
        "browsing_train.csv",
        3,
        "s1,pageview,,,99999999999999999999,",
        "server_timestamp_epoch_ms",
        "server_timestamp_epoch_ms '99999999999999999999' is not an integer (event time, epoch "
        "milliseconds)",
    ),
    (
        "empty session id",
        "browsing_train.csv",
        4,
        ",event_product,purchase,k2,1550000009000,u3",
        "session_id_hash",
        "session_id_hash is empty; every row needs one",
    ),
    (
        "empty timestamp",
        "search_train.csv",
        1,
        "s2,,\"['k2']\",\"['k2', 'k3']\",",
        "server_timestamp_epoch_ms",
        "server_timestamp_epoch_ms is empty; every row needs one",
    ),
    (
        "too few fields",
        "browsing_train.csv",
        2,
        "s1,event_product,add,k1,1550000000500",
        None,
        "the line has 5 fields; expected 6 (session_id_hash, event_type, product_action, "
        "product_sku_hash, server_timestamp_epoch_ms, hashed_url): it is cut off or has an "
        "unquoted comma",
    ),
    (
        "too many fields",
        "sku_to_content.csv",
        1,
        "k2,,,,,",
        None,
        "the line has 6 fields; expected 5 (product_sku_hash, description_vector, category_hash, "
        "image_vector, price_bucket): it is cut off or has an unquoted comma",
    ),
    (
        "short vector",
        "search_train.csv",
        0,
        's1,"[0.1, 0.2]",,"[\'k1\']",1550000000100',
        "query_vector",
        f"query_vector '[0.1, 0.2]' has 2 numbers; {VECTOR}",
    ),
    (
        "non-numeric vector item",
        "sku_to_content.csv",
        0,
        f'k1,"{BAD_VECTOR}",c1,,7.0',
        "description_vector",
        f"description_vector '{BAD_VECTOR[:77]}...' has a non-number 'x' at position 4; {VECTOR}",
    ),
    (
        "vector without brackets",
        "sku_to_content.csv",
        2,
        "k3,,c1/c4,0.5,10.0",
        "image_vector",
        f"image_vector '0.5' is not a bracketed list; {VECTOR}",
    ),
    (
        "SKU list without brackets",
        "search_train.csv",
        1,
        "s2,,k2,\"['k2', 'k3']\",1550000001000",
        "clicked_skus_hash",
        f"clicked_skus_hash 'k2' is not a bracketed list; {SKUS}",
    ),
    (
        "unquoted SKU in a list",
        "search_train.csv",
        1,
        "s2,,,\"['k2', k3]\",1550000001000",
        "product_skus_hash",
        f"product_skus_hash '['k2', k3]' has an unquoted or empty item 'k3' at position 2; {SKUS}",
    ),
    (
        "price bucket out of range",
        "sku_to_content.csv",
        2,
        "k3,,c1/c4,,11.0",
        "price_bucket",
        "price_bucket '11.0' is not a whole number from 1 to 10 (price decile, e.g. '7.0')",
    ),
    (
        "price bucket not a number",
        "sku_to_content.csv",
        2,
        "k3,,c1/c4,,cheap",
        "price_bucket",
        "price_bucket 'cheap' is not a whole number from 1 to 10 (price decile, e.g. '7.0')",
    ),
    (
        "fractional price bucket",
        "sku_to_content.csv",
        2,
        "k3,,c1/c4,,7.5",
        "price_bucket",
        "price_bucket '7.5' is not a whole number from 1 to 10 (price decile, e.g. '7.0')",
    ),
]


def _defective_file(tmp_path: Path, name: str, index: int, bad: str) -> tuple[Path, int]:
    header, rows = FILES[name]
    rows = list(rows)
    rows[index] = bad
    return write_lines(tmp_path / name, header, rows), len(rows)


@pytest.mark.parametrize(
    ("name", "index", "bad", "field", "message"),
    [case[1:] for case in DEFECTS],
    ids=[case[0] for case in DEFECTS],
)
def test_defect_fails_with_file_line_field_value(
    tmp_path: Path, name: str, index: int, bad: str, field: str | None, message: str
) -> None:
    path, _ = _defective_file(tmp_path, name, index, bad)
    with pytest.raises(DataError) as caught:
        read_all(COVEO, path)
    assert str(caught.value) == f"{name} line {index + 2:,}: {message}"


@pytest.mark.parametrize(
    ("name", "index", "bad", "field", "message"),
    [case[1:] for case in DEFECTS],
    ids=[case[0] for case in DEFECTS],
)
def test_defect_is_skipped_and_reported(
    tmp_path: Path, name: str, index: int, bad: str, field: str | None, message: str
) -> None:
    path, n_rows = _defective_file(tmp_path, name, index, bad)
    tables, rejected = read_all(COVEO, path, on_bad_rows="skip")
    (table,) = tables.values()
    assert table.num_rows == n_rows - 1
    assert [(p.line, p.field) for p in rejected] == [(index + 2, field)]
    assert rejected[0].message() == f"{name} line {index + 2:,}: {message}"
    if bad:
        assert rejected[0].raw is not None
        assert rejected[0].raw.replace('"', "") == bad.replace('"', "")


def test_invalid_utf8_fails_even_under_skip_with_its_line(tmp_path: Path) -> None:
    """pyarrow cannot parse a block holding bytes that are not UTF-8: the file must be fixed."""
    rows = list(BROWSING_ROWS)
    rows[0] = "s2,event_product,detail,k\udcff1,1550000002000,u1"  # byte 0xff
    rows[1] = "s2,pageview"  # a skipped line before it must not shift the line number
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, rows[1:] + rows[:1])
    for mode in ("fail", "skip"):
        with pytest.raises(DataError) as caught:
            read_all(COVEO, path, on_bad_rows=mode)
        assert str(caught.value) == (
            "browsing_train.csv line 6: the line is not valid UTF-8 text; convert the file to "
            "UTF-8 (e.g. with iconv) and load it again"
        )


def test_unclosed_quote_is_reported_with_the_lines_it_swallows(tmp_path: Path) -> None:
    rows = list(BROWSING_ROWS)
    rows[1] = 's2,pageview,,,"1550000002000,u1'  # the quote runs to the end of the file
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, rows)
    tables, rejected = read_all(COVEO, path, on_bad_rows="skip")
    assert tables["browsing_events"].num_rows == 1
    (problem,) = rejected
    assert problem.line == 3
    assert problem.reason.endswith("; an unclosed quote joins it with the next 3 line(s)")
    assert problem.raw is not None and problem.raw.endswith(rows[-1])  # nothing lost


def test_missing_header_columns_are_named(tmp_path: Path) -> None:
    header = "session_id_hash,event_type,product_sku_hash,server_timestamp_epoch_ms"
    path = write_lines(tmp_path / "browsing_train.csv", header, ["s1,pageview,,1"])
    with pytest.raises(DataError) as caught:
        read_all(COVEO, path)
    assert str(caught.value) == (
        "browsing_train.csv header is missing column(s) product_action, hashed_url; expected "
        "session_id_hash, event_type, product_action, product_sku_hash, "
        "server_timestamp_epoch_ms, hashed_url (found session_id_hash, event_type, "
        "product_sku_hash, server_timestamp_epoch_ms)"
    )


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "browsing_train.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"^browsing_train.csv is empty; expected a header line"):
        read_all(COVEO, path)


def test_line_numbers_stay_exact_across_blocks_and_skipped_lines(tmp_path: Path) -> None:
    """Defects spread over many small blocks, structural ones among them, keep their lines."""
    good = "s{i},pageview,,,{ts},u"
    rows = [good.format(i=i, ts=1550000000000 + i) for i in range(400)]
    bad_lines = {17: "s,pageview,,,,u", 18: "s,click,,,1,u", 150: "s,pageview", 151: "", 399: "x,y"}
    for line, text in bad_lines.items():
        rows[line - 2] = text
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, rows, final_newline=False)
    tables, rejected = read_all(COVEO, path, on_bad_rows="skip", block_size=512)
    assert [p.line for p in rejected] == sorted(set(bad_lines) - {151})  # blank: skipped
    assert [p.field for p in rejected] == ["server_timestamp_epoch_ms", "event_type", None, None]
    assert tables["browsing_events"].num_rows == 400 - len(bad_lines)
    with pytest.raises(DataError, match=r"^browsing_train.csv line 17: "):
        read_all(COVEO, path, block_size=512)


def test_first_defect_in_file_order_is_reported(tmp_path: Path) -> None:
    """A wrong field count (found by the CSV parser) and a bad value (found later, vectorised)
    are reported in line order: the earlier line wins whatever found it."""
    rows = list(BROWSING_ROWS)
    rows[1] = "s2,click,,,1550000002000,u1"  # line 3: bad value
    rows[3] = "s1,pageview"  # line 5: too few fields
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, rows)
    with pytest.raises(DataError, match=r"^browsing_train.csv line 3: event_type 'click'"):
        read_all(COVEO, path)
    rows[1], rows[3] = "s1,pageview", "s2,click,,,1550000002000,u1"
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, rows)
    with pytest.raises(DataError, match=r"^browsing_train.csv line 3: the line has 2 fields"):
        read_all(COVEO, path)


def test_folder_needs_at_least_one_release_file(tmp_path: Path) -> None:
    write_lines(tmp_path / "search_train.csv", SEARCH_HEADER, SEARCH_ROWS)
    assert COVEO.files_in(tmp_path) == [tmp_path / "search_train.csv"]
    with pytest.raises(DataError, match=r"holds none of the Coveo files browsing_train\.csv"):
        COVEO.files_in(tmp_path / "nothing")

"""The OTTO adapter: the real 20-session sample and hand-made bad lines."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from smallboat.data.sources.otto import OttoSource
from smallboat.errors import DataError
from tests.source_files import as_read, read_all, write_lines

OTTO = OttoSource()
LINES = [
    '{"session": 7, "events": [{"aid": 11, "ts": 1659304800025, "type": "clicks"}, '
    '{"aid": 12, "ts": 1659304900000, "type": "carts"}]}',  # line 1
    '{"session": 8, "events": [{"aid": 12, "ts": 1659305000000, "type": "orders"}]}',  # line 2
    # line 3: ts in seconds
    '{"session": 9, "events": [{"aid": 13, "ts": 1659306000, "type": "clicks"}]}',
]


def test_sample_lands_862_events_of_20_sessions(shared_data: Path) -> None:
    path = shared_data / "otto" / "train-20-sessions.jsonl"
    tables, rejected = read_all(OTTO, path)
    events = tables["browsing_events"]
    assert rejected == []
    assert events.num_rows == 862
    assert len(events.column("session_id_hash").unique()) == 20
    assert len(events.column("product_sku_hash").unique()) == 510
    first_line = json.loads(path.read_text().splitlines()[0])
    expected = Counter(e["type"] for e in first_line["events"])
    session0 = [e for e in events.to_pylist() if e["session_id_hash"] == "0"]
    assert Counter(e["product_action"] for e in session0) == {
        "detail": expected["clicks"],
        "add": expected["carts"],
        "purchase": expected["orders"],
    }
    assert session0[0]["product_sku_hash"] == str(first_line["events"][0]["aid"])
    # The sample's ts are already milliseconds (2022-08-01): they are landed unchanged.
    assert session0[0]["server_timestamp_epoch_ms"] == first_line["events"][0]["ts"]


def test_mapping_of_a_small_file(tmp_path: Path) -> None:
    tables, rejected = read_all(OTTO, write_lines(tmp_path / "t.jsonl", "", LINES))
    rows = tables["browsing_events"].to_pylist()
    assert rejected == []
    assert [(r["session_id_hash"], r["product_sku_hash"], r["product_action"]) for r in rows] == [
        ("7", "11", "detail"),
        ("7", "12", "add"),
        ("8", "12", "purchase"),
        ("9", "13", "detail"),
    ]
    assert rows[3]["server_timestamp_epoch_ms"] == 1_659_306_000_000  # seconds -> ms
    assert {r["event_type"] for r in rows} == {"event_product"}
    assert {r["hashed_url"] for r in rows} == {None}


DEFECTS = [
    (
        "bad JSON",
        '{"session": 8, "events": [{"aid": 12, "ts": 1659305000000, "type": "orders"}]',
        None,
        "the line is not valid JSON: Expecting ',' delimiter at column 78",
    ),
    (
        "not an object",
        "[8, []]",
        None,
        'the line is not a JSON object; expected {"session": ..., "events": [...]}',
    ),
    (
        "missing session",
        '{"events": []}',
        "session",
        "session is missing; every line needs a session number",
    ),
    ("missing events", '{"session": 8}', "events", "events is missing; expected a list of events"),
    (
        "missing aid",
        '{"session": 8, "events": [{"aid": 1, "ts": 1, "type": "clicks"}, '
        '{"ts": 1, "type": "clicks"}]}',
        "events[1].aid",
        "events[1].aid is missing",
    ),
    (
        "unknown type",
        '{"session": 8, "events": [{"aid": 12, "ts": 1659305000000, "type": "views"}]}',
        "events[0].type",
        "events[0].type 'views' is not one of clicks, carts, orders",
    ),
    (
        "non-integer aid",
        '{"session": 8, "events": [{"aid": "x12", "ts": 1659305000000, "type": "clicks"}]}',
        "events[0].aid",
        "events[0].aid 'x12' is not an integer",
    ),
    ("blank line", "", None, "the line is blank"),
    (
        "bad UTF-8",
        '{"session": 8, "events": [{"aid": 12, "ts": 1, "type": "cl\udcffcks"}]}',
        None,
        "the line is not valid UTF-8 text",
    ),
]


@pytest.mark.parametrize(
    ("bad", "field", "message"), [c[1:] for c in DEFECTS], ids=[c[0] for c in DEFECTS]
)
def test_bad_line_fails_or_is_skipped(
    tmp_path: Path, bad: str, field: str | None, message: str
) -> None:
    path = write_lines(tmp_path / "t.jsonl", "", [LINES[0], bad, LINES[2]])
    with pytest.raises(DataError) as caught:
        read_all(OTTO, path)
    assert str(caught.value) == f"t.jsonl line 2: {message}"

    tables, rejected = read_all(OTTO, path, on_bad_rows="skip")
    assert [(p.line, p.field, p.raw) for p in rejected] == [(2, field, as_read(bad))]
    assert tables["browsing_events"].column("session_id_hash").to_pylist() == ["7", "7", "9"]


def test_line_numbers_across_blocks(tmp_path: Path) -> None:
    lines = [
        f'{{"session": {i}, "events": [{{"aid": 1, "ts": 1659305000000, "type": "clicks"}}]}}'
        for i in range(300)
    ]
    lines[99] = lines[99].replace("clicks", "views")
    lines[250] = "{oops"
    path = write_lines(tmp_path / "t.jsonl", "", lines, final_newline=False)
    tables, rejected = read_all(OTTO, path, on_bad_rows="skip", block_size=700)
    assert [(p.line, p.field) for p in rejected] == [(100, "events[0].type"), (251, None)]
    assert tables["browsing_events"].num_rows == 298

"""The log's orjson encoder (`wal.frame`) writes exactly the bytes of the stdlib encoder
(`segments.encode_frame`), or takes the stdlib's path: the reader sees the same records, and
what the stdlib refused is still refused. The reader's orjson decoder (`segments.loads_payload`)
gives exactly what `json.loads` gives."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from smallboat.data.log.segments import (
    SEGMENT_MAGIC,
    encode_frame,
    loads_payload,
    payload_frame,
    scan_segment,
)
from smallboat.data.log.wal import frame

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
RECORDS = st.dictionaries(st.text() | st.integers(), VALUES, max_size=12)


def _outcome(encode: Any, record: dict[Any, Any]) -> bytes | type[BaseException]:
    try:
        return bytes(encode(record))
    except (TypeError, ValueError) as exc:
        return type(exc)


@given(RECORDS)
@hsettings(max_examples=500, deadline=None)
def test_frames_are_the_stdlib_bytes_or_the_stdlib_error(record: dict[Any, Any]) -> None:
    assert _outcome(frame, record) == _outcome(encode_frame, record)


FLAT_RECORDS = st.dictionaries(
    st.text(max_size=4),
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    max_size=12,
)


@given(FLAT_RECORDS)
@hsettings(max_examples=1000, deadline=None)
def test_flat_records_with_floats_are_the_stdlib_bytes(record: dict[str, Any]) -> None:
    # a prediction log's row: text, integers, null and floats (tiny, huge, NaN, infinite)
    assert _outcome(frame, record) == _outcome(encode_frame, record)


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 1e-05, 2.5e-07, 5e-324, 0.30000000000000004,
     1e16, 1.2345678901234567e19, 1e300, math.nan, math.inf, -math.inf],
)  # fmt: skip
def test_a_float_next_to_the_orjson_boundary_is_the_stdlib_text(value: float) -> None:
    record = {"probability": value, "latency_ms": 0.5, "route": "/v1/predict", "n": 3}
    assert frame(record) == encode_frame(record)


@pytest.mark.parametrize(
    "record",
    [
        {"message_id": "ga:c:1", "hashed_url": None, "received_at_ms": 1_700_000_000_000},
        {"sku": "Schuh größe 42 €, 𝄞", "control": "\x00\x1f\x7f\u2028", "quote": '"\\/'},
        {"big": 2**64 - 1, "small": -(2**63)},
        {"huge": 10**40, "negative": -(2**63) - 1},  # past orjson's 64 bits: the stdlib writes it
        {"score": math.nan, "limit": math.inf},  # the stdlib's NaN / Infinity, as before
        {"float": 1e16, "flag": True},
        {1: "int key"},  # the stdlib writes it as "1"
    ],
)
def test_the_reader_reads_back_what_the_stdlib_wrote(
    tmp_path: Path, record: dict[Any, Any]
) -> None:
    path = tmp_path / "s.log"
    path.write_bytes(SEGMENT_MAGIC + frame(record) + encode_frame(record))
    first, second = scan_segment(path).records
    assert first == second
    assert frame(record) == encode_frame(record)


def test_a_lone_surrogate_is_refused_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_frame({"a": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        frame({"a": "\ud800"})


def _parsed(loads: Any, payload: bytes) -> str:
    """What a decoder makes of a payload, compared by repr: 1 and 1.0 differ, NaN equals NaN."""
    try:
        return repr(loads(payload))
    except ValueError as exc:
        return f"refused: {type(exc).__name__}"


@given(RECORDS)
@hsettings(max_examples=500, deadline=None)
def test_the_reader_decodes_what_json_decodes(record: dict[Any, Any]) -> None:
    try:
        payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate: the escaped form below still reaches it
        payload = json.dumps(record).encode()
    assert _parsed(loads_payload, payload) == _parsed(json.loads, payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"huge":123456789012345678901234567890,"n":-9223372036854775809}',  # past 64 bits
        b'{"u64":18446744073709551615,"i64":-9223372036854775808}',
        b'{"id":"ab1234567890123456789012cd","n":1}',  # a long digit run inside text
        b'{"score":NaN,"limit":Infinity,"low":-Infinity}',
        b'{"overflow":1e400}',
        b'{"a":"\\ud800"}',  # a lone surrogate, escaped
        b'\xef\xbb\xbf{"bom":1}',
        b'{"a":1,"a":2}',
        b'{"f":0.1,"g":1e16,"h":-0.0,"i":5e-324}',
        b"[1,2]",
        b'{"a":1',
        b"\xff",
    ],
)
def test_the_reader_decodes_edge_payloads_as_json_does(tmp_path: Path, payload: bytes) -> None:
    assert _parsed(loads_payload, payload) == _parsed(json.loads, payload)
    path = tmp_path / "s.log"
    path.write_bytes(SEGMENT_MAGIC + payload_frame(payload))
    scan = scan_segment(path)
    expected = json.loads(payload) if _parsed(json.loads, payload)[:1] == "{" else None
    if expected is None:  # not a JSON object: not a record, never landed
        assert scan.records == []
    else:
        assert repr(scan.records) == repr([expected])

"""`web.jsontext.loads` reads text (the JSON a Snowplow tracker embeds in `ue_pr` and `co`) and
bytes exactly as `json.loads` does: the same value, or a ValueError where it raises one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from smallboat.web.jsontext import loads

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def outcome(parse: Any, text: str | bytes) -> str:
    try:
        return repr(parse(text))  # repr: NaN equals itself
    except ValueError:
        return "refused"


@given(VALUES, st.booleans())
@hsettings(max_examples=500, deadline=None)
def test_text_is_read_as_json_reads_it(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)  # non-ASCII may hold lone surrogates
    assert outcome(loads, text) == outcome(json.loads, text)
    assert outcome(loads, text.encode("utf-8", "surrogatepass")) == outcome(
        json.loads, text.encode("utf-8", "surrogatepass")
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"huge":123456789012345678901234567890,"n":-9223372036854775809}',
        '{"score":NaN,"limit":Infinity}',
        '{"overflow":1e400}',
        '{"a":"\\ud800"}',
        '{"a":"\ud800"}',  # a lone surrogate in the text itself
        '\ufeff{"bom":1}',
        '{"a":1,"a":2}',
        '{"f":0.1,"g":1e16,"h":-0.0,"i":5e-324}',
        '{"a":1',
        "",
    ],
)
def test_edge_texts_are_read_as_json_reads_them(text: str) -> None:
    assert outcome(loads, text) == outcome(json.loads, text)

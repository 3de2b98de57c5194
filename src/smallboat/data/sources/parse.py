"""Vectorised parsers from source text to canonical types, each returning (values, bad-row mask).

The fast path is one pyarrow.compute cast over a whole batch. Only when that cast refuses some
value does a parser look for the culprits (with a regular expression over the batch), so clean data
never pays for error hunting. Bad rows come back as nulls in `values` and true in the mask; text
that is NULL (an empty field) is not bad here: whether a column may be empty is the caller's check.
The `describe_*` functions explain one bad value in words; they run only for rejected rows.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smallboat.data.sources.base import scatter_rows

INTEGER = r"^[+-]?[0-9]+$"
NUMBER = r"(?i)^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$|^[+-]?(nan|inf|infinity)$"
_NUMBER_RE = re.compile(NUMBER)


def _all_true(mask: pa.Array) -> bool:
    """True when no value of `mask` is false (NULLs, the empty fields, do not count)."""
    return bool(pc.all(mask, min_count=0).as_py())


def _split(text: pa.Array, separator: str) -> tuple[pa.Array, pa.Array]:
    """Split each text on `separator`: (offsets, items) such that row i owns items[o[i]:o[i+1]]."""
    parts = pc.split_pattern(text, separator)
    offsets = parts.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    items = parts.values.slice(start, end - start)
    if start:
        offsets = pc.subtract(offsets, pa.scalar(start, pa.int32()))
    return offsets, items


def _rows_of_bad_items(
    length: int, offsets: pa.Array, bad_items: pa.BooleanArray
) -> pa.BooleanArray:
    """Rows owning at least one bad item (only called when some item is bad)."""
    parents = np.repeat(np.arange(length), np.diff(offsets.to_numpy()))
    return scatter_rows(length, parents[bad_items.to_numpy(zero_copy_only=False)])


def cast_or_flag(text: pa.Array, to: pa.DataType, pattern: str) -> tuple[pa.Array, pa.BooleanArray]:
    """Cast text to `to`; values the cast refuses become NULL and are flagged in the mask.

    `pattern` is a regular expression of the text the cast accepts; it only runs when the
    whole-batch cast fails.
    """
    try:
        return pc.cast(text, to), scatter_rows(len(text), [])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = pc.fill_null(pc.match_substring_regex(text, pattern), True)
    cleaned = pc.if_else(ok, text, pa.scalar(None, text.type))
    try:
        return pc.cast(cleaned, to), pc.invert(ok)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # The pattern let through something the cast refuses (an integer too large for int64,
        # say): settle the few remaining values one by one.
        values: list[object] = []
        bad: list[bool] = []
        for item in cleaned:
            try:
                values.append(pc.cast(pa.array([item.as_py()], text.type), to)[0].as_py())
                bad.append(False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values.append(None)
                bad.append(True)
        flagged = pc.or_(pc.invert(ok), pa.array(bad, type=pa.bool_()))
        return pa.array(values, type=to), flagged


def parse_int64(text: pa.Array) -> tuple[pa.Array, pa.BooleanArray]:
    """Integers such as epoch milliseconds; '1.5' or '12:00' are bad."""
    return cast_or_flag(text, pa.int64(), INTEGER)


def parse_float64(text: pa.Array) -> tuple[pa.Array, pa.BooleanArray]:
    """Decimal numbers such as prices; surrounding spaces are allowed."""
    return cast_or_flag(pc.utf8_trim_whitespace(text), pa.float64(), NUMBER)


def parse_vectors(text: pa.Array, dim: int) -> tuple[pa.Array, pa.BooleanArray]:
    """Text "[f1, f2, ...]" of exactly `dim` numbers -> list<float32>."""
    return _vectors_as_released(text, dim) or _vectors_tolerant(text, dim)


def _vectors_as_released(text: pa.Array, dim: int) -> tuple[pa.Array, pa.BooleanArray] | None:
    """The fast path: every vector written as the release does, "[f1, f2, ...]" with ', ' between
    numbers and no other spaces. None when any vector differs (the tolerant path then decides)."""
    if not _all_true(pc.and_(pc.starts_with(text, "["), pc.ends_with(text, "]"))):
        return None
    offsets, items = _split(pc.utf8_slice_codeunits(text, 1, -1), ", ")
    lengths = pc.subtract(offsets[1:], offsets[:-1])
    if not _all_true(pc.or_(pc.is_null(text), pc.equal(lengths, dim))):
        return None
    try:
        numbers = pc.cast(items, pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    vectors = pa.ListArray.from_arrays(
        offsets, numbers, type=pa.list_(pa.float32()), mask=pc.is_null(text)
    )
    return vectors, scatter_rows(len(text), [])


def _vectors_tolerant(text: pa.Array, dim: int) -> tuple[pa.Array, pa.BooleanArray]:
    """Any spacing around brackets and commas; flags what is still not `dim` numbers."""
    trimmed = pc.utf8_trim_whitespace(text)
    bracketed = pc.and_(pc.starts_with(trimmed, "["), pc.ends_with(trimmed, "]"))
    offsets, items = _split(pc.utf8_slice_codeunits(trimmed, 1, -1), ",")
    numbers, bad_numbers = cast_or_flag(pc.utf8_trim_whitespace(items), pa.float32(), NUMBER)
    lengths = pc.subtract(offsets[1:], offsets[:-1])
    bad = pc.or_(pc.invert(bracketed), pc.not_equal(lengths, dim))
    if pc.any(bad_numbers).as_py():
        bad = pc.or_(bad, _rows_of_bad_items(len(text), offsets, bad_numbers))
    bad = pc.fill_null(bad, False)
    vectors = pa.ListArray.from_arrays(
        offsets, numbers, type=pa.list_(pa.float32()), mask=pc.or_(pc.is_null(text), bad)
    )
    return vectors, bad


def describe_vector(value: str | None, dim: int) -> str:
    """Why `value` is not a vector of `dim` numbers."""
    expected = f"expected [f1, f2, ...] with {dim} numbers"
    text = (value or "").strip()
    if not (text.startswith("[") and text.endswith("]")):
        return f"is not a bracketed list; {expected}"
    items = [item.strip() for item in text[1:-1].split(",")]
    for position, item in enumerate(items, start=1):
        if not _NUMBER_RE.match(item):
            return f"has a non-number {quote_short(item)} at position {position}; {expected}"
    return f"has {len(items)} numbers; {expected}"


def parse_sku_lists(text: pa.Array) -> tuple[pa.Array, pa.BooleanArray]:
    """Python-list text "['h1', 'h2']" (or "[]") -> list<string>."""
    return _sku_lists_as_released(text) or _sku_lists_tolerant(text)


def _sku_lists_as_released(text: pa.Array) -> tuple[pa.Array, pa.BooleanArray] | None:
    """The fast path: lists written as the release does (Python's list repr, "['h1', 'h2']"),
    split on "', '" between the outer "['" and "']". None when any list is written differently,
    which shows as a comma outside the "', '" separators or an empty item."""
    empty = pc.equal(text, "[]")
    quoted = pc.and_(pc.starts_with(text, "['"), pc.ends_with(text, "']"))
    if not _all_true(pc.or_(empty, quoted)):
        return None
    # "[]" has no items: leave it out of the split (splitting "" would give one empty item).
    inner = pc.if_else(empty, pa.scalar(None, pa.string()), pc.utf8_slice_codeunits(text, 2, -2))
    offsets, items = _split(inner, "', '")
    if len(_split(inner, ",")[1]) != len(items):  # splitting is faster than counting commas
        return None
    if len(items) and pc.any(pc.equal(pc.binary_length(items), 0)).as_py():
        return None
    skus = pa.ListArray.from_arrays(
        offsets, items, type=pa.list_(pa.string()), mask=pc.is_null(text)
    )
    return skus, scatter_rows(len(text), [])


def _sku_lists_tolerant(text: pa.Array) -> tuple[pa.Array, pa.BooleanArray]:
    """Any spacing, single or double quotes; flags lists with an unquoted or empty item."""
    trimmed = pc.utf8_trim_whitespace(text)
    bracketed = pc.and_(pc.starts_with(trimmed, "["), pc.ends_with(trimmed, "]"))
    inner = pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(trimmed, 1, -1))
    inner = pc.if_else(pc.equal(inner, ""), pa.scalar(None, pa.string()), inner)
    offsets, items = _split(inner, ",")
    items = pc.utf8_trim_whitespace(items)
    single = pc.and_(pc.starts_with(items, "'"), pc.ends_with(items, "'"))
    double = pc.and_(pc.starts_with(items, '"'), pc.ends_with(items, '"'))
    quoted = pc.and_(pc.or_(single, double), pc.greater(pc.utf8_length(items), 2))
    bad = pc.fill_null(pc.invert(bracketed), False)
    bad_items = pc.invert(quoted)
    if pc.any(bad_items).as_py():
        bad = pc.or_(bad, _rows_of_bad_items(len(text), offsets, bad_items))
    skus = pa.ListArray.from_arrays(
        offsets,
        pc.utf8_slice_codeunits(items, 1, -1),
        type=pa.list_(pa.string()),
        mask=pc.or_(pc.is_null(text), bad),
    )
    return skus, bad


def describe_sku_list(value: str | None) -> str:
    """Why `value` is not a list of quoted SKUs."""
    expected = "expected a list of quoted SKUs like ['h1', 'h2']"
    text = (value or "").strip()
    if not (text.startswith("[") and text.endswith("]")):
        return f"is not a bracketed list; {expected}"
    for position, item in enumerate(text[1:-1].split(","), start=1):
        item = item.strip()
        if len(item) <= 2 or item[0] != item[-1] or item[0] not in "'\"":
            shown = quote_short(item)
            return f"has an unquoted or empty item {shown} at position {position}; {expected}"
    return f"is malformed; {expected}"  # pragma: no cover - parse_sku_lists and this agree


def parse_price_bucket(text: pa.Array) -> tuple[pa.Array, pa.BooleanArray]:
    """Text such as '7.0' or '7' -> int8 decile 1..10."""
    numbers, bad = parse_float64(text)
    whole = pc.equal(numbers, pc.floor(numbers))
    in_range = pc.and_(pc.greater_equal(numbers, 1), pc.less_equal(numbers, 10))
    bad = pc.or_(bad, pc.fill_null(pc.invert(pc.and_(whole, in_range)), False))
    buckets = pc.cast(pc.if_else(bad, pa.scalar(None, pa.float64()), numbers), pa.int8())
    return buckets, bad


def describe_price_bucket(value: str | None) -> str:
    """Why `value` is not a price decile."""
    del value  # the same words fit every bad bucket
    return "is not a whole number from 1 to 10 (price decile, e.g. '7.0')"


def quote_short(value: str) -> str:
    """Quote a list item for a message (items are short; a bad one may not be)."""
    return f"'{value[:40]}...'" if len(value) > 40 else f"'{value}'"

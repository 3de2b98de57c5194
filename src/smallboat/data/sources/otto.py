"""OTTO RecSys 2022 sessions (JSON lines) -> canonical browsing events.

Each line is {"session": int, "events": [{"aid": int, "ts": int, "type": clicks|carts|orders}]}.
Every event becomes an `event_product` row: clicks -> detail, carts -> add, orders -> purchase; the
session number and the aid become the (string) session id and SKU; hashed_url is NULL. The
released files carry `ts` in epoch milliseconds (the shared sample does too); some re-exports use
seconds, so a ts below 1e11 (before 1973 in ms, after the year 5000 in s) is taken as seconds.

The file is read in blocks of whole lines, each parsed by pyarrow.json with a fixed schema. A block
that does not parse (bad JSON, a wrong type) is re-read line by line in Python to name the bad
lines; the rest of it goes back through the fast path. A line is the unit of rejection: one bad
event rejects its whole session line, so a session is never landed with a hole in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from smallboat import schema
from smallboat.data.sources.base import Problem, Problems, ReadStats, files_with_suffix, make_batch
from smallboat.schema import Table

ACTIONS: dict[str, str] = {"clicks": "detail", "carts": "add", "orders": "purchase"}
"""OTTO event type -> canonical product_action."""

SECONDS_BELOW = 10**11
"""A ts under this is in seconds, not milliseconds (see the module docstring)."""

_EVENT = pa.struct([("aid", pa.int64()), ("ts", pa.int64()), ("type", pa.string())])
JSON_SCHEMA = pa.schema([("session", pa.int64()), ("events", pa.list_(_EVENT))])
_INT64 = (-(2**63), 2**63 - 1)
_TYPES_TEXT = ", ".join(ACTIONS)
_NO_SESSION = "is missing; every line needs a session number"
_NO_EVENTS = "is missing; expected a list of events"


def _line_chunks(path: Path, block_size: int, stats: ReadStats) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, whole lines) blocks of about `block_size` bytes."""
    line, rest = 1, b""
    with path.open("rb") as f:
        while block := f.read(block_size):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            chunk, rest = data[:cut], data[cut:]
            stats.bytes_read = f.tell() - len(rest)
            yield line, chunk
            line += chunk.count(b"\n")
    if rest:
        stats.bytes_read = stats.bytes_total
        yield line, rest


def _is_int(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
    )


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def check_line(obj: Any) -> tuple[str | None, str | None, str] | None:
    """The first problem of one parsed line as (field, value, reason), or None when it is fine."""
    if not isinstance(obj, dict):
        return (
            None,
            None,
            'the line is not a JSON object; expected {"session": ..., "events": [...]}',
        )
    if "session" not in obj:
        return "session", None, _NO_SESSION
    if not _is_int(obj["session"]):
        return "session", _shown(obj["session"]), "is not an integer"
    events = obj.get("events")
    if not isinstance(events, list):
        value = None if events is None else _shown(events)
        return "events", value, _NO_EVENTS if value is None else "is not a list of events"
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            return f"events[{i}]", _shown(event), "is not an object with aid, ts and type"
        for key in ("aid", "ts"):
            if event.get(key) is None:
                return f"events[{i}].{key}", None, "is missing"
            if not _is_int(event[key]):
                return f"events[{i}].{key}", _shown(event[key]), "is not an integer"
        kind = event.get("type")
        if kind is None:
            return f"events[{i}].type", None, "is missing"
        if kind not in ACTIONS:
            return f"events[{i}].type", _shown(kind), f"is not one of {_TYPES_TEXT}"
    return None


class OttoSource:
    """OTTO session JSON lines (train.jsonl / test.jsonl or a slice of them)."""

    name = "otto"

    def files_in(self, folder: Path) -> list[Path]:
        """Every .jsonl file in `folder`, by name."""
        return files_with_suffix(folder, ".jsonl", "OTTO")

    def tables(self, path: Path) -> tuple[Table, ...]:
        """OTTO has events only."""
        return (schema.BROWSING_EVENTS,)

    def read(
        self, path: Path, *, problems: Problems, stats: ReadStats, block_size: int
    ) -> Iterator[tuple[Table, pa.RecordBatch]]:
        """Stream `path` as browsing-event batches, one block of lines at a time."""
        stats.bytes_total = path.stat().st_size
        for first_line, chunk in _line_chunks(path, block_size, stats):
            n_lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
            stats.rows_read += n_lines
            parsed = _parse_fast(chunk, n_lines)
            if parsed is not None:
                lines = np.arange(first_line, first_line + n_lines)
                early: list[Problem] = []
            else:
                parsed, lines, early = _parse_slow(path.name, first_line, chunk)
            batch, late = _to_events(path.name, parsed, lines, chunk, first_line)
            problems.report_all(early, late)
            yield schema.BROWSING_EVENTS, batch


def _read_json(data: bytes) -> pa.Table:
    """Parse JSON lines against JSON_SCHEMA in one block (unknown keys are ignored)."""
    return pajson.read_json(
        pa.BufferReader(data),
        read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pajson.ParseOptions(
            explicit_schema=JSON_SCHEMA, unexpected_field_behavior="ignore"
        ),
    )


def _parse_fast(chunk: bytes, n_lines: int) -> pa.Table | None:
    """Parse a block with pyarrow.json; None when any line breaks the JSON or the schema."""
    if not chunk.strip():
        return None
    try:
        table = _read_json(chunk)
        table.validate(full=True)  # the JSON reader lets invalid UTF-8 through in strings
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == n_lines else None  # blank lines shift rows: go slow


def _parse_slow(
    file: str, first_line: int, chunk: bytes
) -> tuple[pa.Table, np.ndarray, list[Problem]]:
    """Check a block line by line in Python; the good lines are parsed again by pyarrow.json."""
    good: list[bytes] = []
    numbers: list[int] = []
    found: list[Problem] = []
    lines = chunk.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the empty tail after the last newline is not a line
    for number, line in enumerate(lines, start=first_line):
        text = line.decode("utf-8", errors="replace")
        if not text.strip():
            found.append(Problem(file, number, None, None, "the line is blank", raw=text))
            continue
        try:
            problem = check_line(json.loads(line.decode("utf-8")))
        except UnicodeDecodeError:
            problem = (None, None, "the line is not valid UTF-8 text")
        except json.JSONDecodeError as exc:
            problem = (None, None, f"the line is not valid JSON: {exc.msg} at column {exc.colno}")
        if problem is None:
            good.append(line)
            numbers.append(number)
        else:
            found.append(Problem(file, number, problem[0], problem[1], problem[2], raw=text))
    if good:
        joined = b"\n".join(good) + b"\n"
        table = _read_json(joined)
    else:
        table = JSON_SCHEMA.empty_table()
    return table, np.asarray(numbers, dtype=np.int64), found


def _to_events(
    file: str, parsed: pa.Table, lines: np.ndarray, chunk: bytes, first_line: int
) -> tuple[pa.RecordBatch, list[Problem]]:
    """Flatten sessions into canonical events; lines with a missing key or unknown type are bad."""
    sessions = parsed.column("session").combine_chunks()
    lists = parsed.column("events").combine_chunks()
    offsets = lists.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    # The events' fields, each carrying the NULL of an event that is itself null.
    aid, ts, kind = lists.values.slice(start, end - start).flatten()
    counts = np.diff(offsets.to_numpy())
    parents = np.repeat(np.arange(len(sessions)), counts)
    index = pc.index_in(kind, value_set=pa.array(list(ACTIONS)))
    event_checks = [
        ("aid", pc.is_null(aid).to_numpy(zero_copy_only=False), "is missing"),
        ("ts", pc.is_null(ts).to_numpy(zero_copy_only=False), "is missing"),
        ("type", pc.is_null(index).to_numpy(zero_copy_only=False), f"is not one of {_TYPES_TEXT}"),
    ]
    bad_event = np.logical_or.reduce([mask for _, mask, _ in event_checks])
    bad_line = sessions.is_null().to_numpy(zero_copy_only=False)
    bad_line |= lists.is_null().to_numpy(zero_copy_only=False)
    bad_line[parents[bad_event]] = True

    found: list[Problem] = []
    if bad_line.any():
        texts = chunk.split(b"\n")
        first_event = offsets.to_numpy()[:-1] - start
        for row in np.flatnonzero(bad_line).tolist():
            number = int(lines[row])
            raw = texts[number - first_line].decode("utf-8", errors="replace")
            if not sessions[row].is_valid:
                found.append(Problem(file, number, "session", None, _NO_SESSION, raw))
                continue
            if not lists[row].is_valid:
                found.append(Problem(file, number, "events", None, _NO_EVENTS, raw))
                continue
            # The line's first bad event, and its first bad field.
            i, name, reason = next(
                (i, name, reason)
                for i in range(int(counts[row]))
                for name, mask, reason in event_checks
                if mask[first_event[row] + i]
            )
            value = kind[int(first_event[row]) + i].as_py() if name == "type" else None
            reason = "is missing" if value is None else reason
            found.append(Problem(file, number, f"events[{i}].{name}", value, reason, raw))

    keep = pa.array(~bad_line[parents], type=pa.bool_())
    millis = pc.if_else(pc.less(ts, SECONDS_BELOW), pc.multiply(ts, 1000), ts)
    arrays = [
        pc.cast(pc.take(sessions, pa.array(parents)), pa.string()),
        pa.repeat(pa.scalar("event_product"), len(aid)),
        pc.take(pa.array(list(ACTIONS.values())), index),
        pc.cast(aid, pa.string()),
        millis,
        pa.nulls(len(aid), pa.string()),
    ]
    return make_batch(schema.BROWSING_EVENTS, arrays, keep), found

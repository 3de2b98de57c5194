"""Hand-made source files in the exact text formats of the Coveo release, for adapter tests.

Each `*_ROWS` list holds good lines; tests swap one for a defective line. Rows are deliberately not
sorted by time, fields are left empty where the release leaves them empty, vectors are quoted
"[f1, f2, ...]" text and SKU lists are Python-list text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from smallboat.data.sources.base import Problem, Problems, ReadStats, Source

BROWSING_HEADER = (
    "session_id_hash,event_type,product_action,product_sku_hash,"
    "server_timestamp_epoch_ms,hashed_url"
)
SEARCH_HEADER = (
    "session_id_hash,query_vector,clicked_skus_hash,product_skus_hash,server_timestamp_epoch_ms"
)
CATALOG_HEADER = "product_sku_hash,description_vector,category_hash,image_vector,price_bucket"


def vector_text(n: int = 50, scale: float = 1.0) -> str:
    """A vector as the release writes it: '[-0.2, -0.19, ...]' (Python list repr of floats)."""
    return "[" + ", ".join(repr(round((i - 20) * 0.01 * scale, 6)) for i in range(n)) + "]"


BROWSING_ROWS = [
    "s2,event_product,detail,k1,1550000002000,u1",  # line 2
    "s2,pageview,,,1550000002000,u1",  # line 3: the pageview twin of the detail above
    "s1,event_product,add,k1,1550000000500,u1",  # line 4: earlier than line 2 (unsorted)
    "s1,pageview,,,1550000000000,",  # line 5: no URL
    "s3,event_product,purchase,k2,1550000009000,u3",  # line 6
]
SEARCH_ROWS = [
    f"s1,\"{vector_text()}\",,\"['k1', 'k2']\",1550000000100",  # line 2: no click
    "s2,,\"['k2']\",\"['k2', 'k3']\",1550000001000",  # line 3: no query vector
    f's3,"{vector_text()}","[]","[\'k3\']",1550000009100',  # line 4: an empty list
]
CATALOG_ROWS = [
    f'k1,"{vector_text()}",c1/c2/c3,"{vector_text(scale=100.0)}",7.0',  # line 2
    "k2,,,,",  # line 3: nothing known but the SKU
    f'k3,,c1/c4,"{vector_text(scale=100.0)}",10.0',  # line 4
]


def write_lines(
    path: Path, header: str, rows: Sequence[str], *, final_newline: bool = True
) -> Path:
    """Write a CSV (or JSONL when header is empty) from text lines; a lone surrogate such as
    "\\udcff" becomes the raw (invalid UTF-8) byte 0xff."""
    lines = ([header] if header else []) + list(rows)
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path


def as_read(line: str) -> str:
    """How a line written by `write_lines` reads back (invalid bytes as U+FFFD)."""
    return line.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def read_all(
    source: Source, path: Path, *, on_bad_rows: str = "fail", block_size: int = 1 << 20
) -> tuple[dict[str, pa.Table], list[Problem]]:
    """Run an adapter over a file: its tables (concatenated batches) and the rows it rejected."""
    rejected: list[Problem] = []
    problems = Problems("skip" if on_bad_rows == "skip" else "fail", rejected.append)
    batches: dict[str, list[pa.RecordBatch]] = {}
    tables = {t.name: t for t in source.tables(path)}
    stream = source.read(path, problems=problems, stats=ReadStats(), block_size=block_size)
    for table, batch in stream:
        batches.setdefault(table.name, []).append(batch)
    out = {
        name: pa.Table.from_batches(batches.get(name, []), schema=t.arrow_schema)
        for name, t in tables.items()
    }
    return out, rejected


SAMPLE_NAMES = {
    "browsing_events": "browsing_train_sample.csv",
    "search_events": "search_train_sample.csv",
    "catalog": "sku_to_content_sample.csv",
}
"""The names of the samples published beside the Coveo challenge's starter code."""


def write_release_samples(folder: Path) -> dict[str, Path]:
    """The three published samples' shape: the `_sample` names, the release's columns and text
    formats, and a blank line at the end of each file (the published browsing and search
    samples end so: `...\\n\\n`)."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "browsing_events": (BROWSING_HEADER, BROWSING_ROWS),
        "search_events": (SEARCH_HEADER, SEARCH_ROWS),
        "catalog": (CATALOG_HEADER, CATALOG_ROWS),
    }
    return {
        table: write_lines(folder / SAMPLE_NAMES[table], header, [*rows, ""])
        for table, (header, rows) in contents.items()
    }

"""Atomic landing files: invisible to `*.parquet` readers until committed, gone when aborted."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smallboat import schema
from smallboat.config import Settings
from smallboat.data.land import atomic
from smallboat.data.land.atomic import AtomicJsonLines, LandingWriter


def _catalog_batch(n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "product_sku_hash": [f"k{i}" for i in range(n)],
            "description_vector": pa.nulls(n, pa.list_(pa.float32())),
            "category_hash": pa.nulls(n, pa.string()),
            "image_vector": pa.nulls(n, pa.list_(pa.float32())),
            "price_bucket": pa.array([1 + i % 10 for i in range(n)], pa.int8()),
        },
        schema=schema.CATALOG.arrow_schema,
    )


def test_file_appears_only_on_commit(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "ROW_GROUP_ROWS", 10)  # several row groups from a few batches
    folder = settings.table_landing_dir("catalog")
    writer = LandingWriter(schema.CATALOG, settings=settings)
    for _ in range(5):
        writer.write(_catalog_batch(7))
    writer.close()
    assert list(folder.glob("*.parquet")) == []
    assert writer.temp.exists() and writer.temp.name.startswith(".")
    path = writer.commit("part-1")
    assert [p.name for p in folder.iterdir()] == ["part-1.parquet"]
    assert pq.read_table(path).num_rows == 35
    assert pq.ParquetFile(path).metadata.num_row_groups == 3


def test_abort_leaves_nothing(settings: Settings) -> None:
    writer = LandingWriter(schema.CATALOG, settings=settings)
    writer.write(_catalog_batch(3))
    writer.abort()
    assert list(settings.table_landing_dir("catalog").iterdir()) == []


def test_writer_thread_errors_reach_the_caller(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.pq, "ParquetWriter", broken)
    writer = LandingWriter(schema.CATALOG, settings=settings)
    with pytest.raises(OSError, match="disk full"):
        for _ in range(10):  # more than the queue holds: the producer must not block forever
            writer.write(_catalog_batch(3))
        writer.close()
    writer.abort()
    assert list(settings.table_landing_dir("catalog").iterdir()) == []


def test_json_lines_appear_only_on_commit(settings: Settings) -> None:
    rejects = AtomicJsonLines(settings.rejects_dir)
    assert rejects.commit("nothing") is None  # nothing written: no file
    rejects = AtomicJsonLines(settings.rejects_dir)
    rejects.write({"line": 2})
    assert list(settings.rejects_dir.glob("*.jsonl")) == []
    path = rejects.commit("coveo-0123")
    assert path is not None and path.read_text() == '{"line": 2}\n'

"""`load_path` and `smallboat data load` end to end: landing, manifest, rejects, DuckDB reads."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from smallboat import schema
from smallboat.cli import app
from smallboat.config import Settings
from smallboat.data.land.atomic import land_batches
from smallboat.data.land.load import load_path
from smallboat.data.land.manifest import read_manifest
from smallboat.errors import DataError
from tests.source_files import (
    BROWSING_HEADER,
    BROWSING_ROWS,
    CATALOG_HEADER,
    CATALOG_ROWS,
    SEARCH_HEADER,
    SEARCH_ROWS,
    write_lines,
)

CUT_LINE = 17_436


def _files_under(folder: Path) -> list[str]:
    """Every file below `folder` (hidden temp files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _text(renderable: object) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _count(settings: Settings, table: str) -> int:
    glob = settings.table_landing_dir(table) / "*.parquet"
    ((rows,),) = duckdb.execute(f"select count(*) from read_parquet('{glob}')").fetchall()
    return int(rows)


@pytest.fixture
def coveo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "coveo"
    folder.mkdir()
    write_lines(folder / "browsing_train.csv", BROWSING_HEADER, BROWSING_ROWS)
    write_lines(folder / "search_train.csv", SEARCH_HEADER, SEARCH_ROWS)
    write_lines(folder / "sku_to_content.csv", CATALOG_HEADER, CATALOG_ROWS)
    return folder


def test_coveo_folder_lands_every_table_atomically(settings: Settings, coveo_folder: Path) -> None:
    summary = load_path(coveo_folder, source="coveo", settings=settings)
    assert [f.file.name for f in summary.files] == list(schema.COVEO_FILES.values())
    assert (summary.rows_read, summary.rows_landed, summary.rows_rejected) == (11, 11, 0)
    for table, rows in (("browsing_events", 5), ("search_events", 3), ("catalog", 3)):
        assert _count(settings, table) == rows
        (landed,) = settings.table_landing_dir(table).iterdir()
        assert landed.name.startswith("coveo-") and len(landed.stem) == len("coveo-") + 16
        assert pq.read_schema(landed).equals(schema.TABLES[table].arrow_schema)
    manifest = read_manifest(settings)
    assert {e["table"] for e in manifest} == set(schema.TABLES)
    assert {e["source_path"] for e in manifest} == {
        str((coveo_folder / name).resolve()) for name in schema.COVEO_FILES.values()
    }
    text = _text(summary.render())
    assert "  browsing_events" in text and "sku_to_content.csv" in text


def test_second_load_of_same_content_lands_nothing(
    settings: Settings, coveo_folder: Path, tmp_path: Path
) -> None:
    load_path(coveo_folder, settings=settings)
    landed = _files_under(settings.landing_dir)
    again = load_path(coveo_folder, settings=settings)
    assert [f.already_loaded for f in again.files] == [True, True, True]
    assert again.rows_landed == 0
    copy = tmp_path / "copy.csv"  # same bytes under another name: still the same data
    shutil.copy(coveo_folder / "browsing_train.csv", copy)
    assert load_path(copy, settings=settings).files[0].already_loaded
    assert _files_under(settings.landing_dir) == landed
    assert _count(settings, "browsing_events") == 5
    assert "* already loaded (same sha256): nothing landed again" in _text(again.render())


def test_bad_row_fails_the_whole_folder_and_leaves_nothing(
    settings: Settings, coveo_folder: Path
) -> None:
    rows = list(SEARCH_ROWS)
    rows[2] = "s3,,,\"['k3'\",1550000009100"
    write_lines(coveo_folder / "search_train.csv", SEARCH_HEADER, rows)
    with pytest.raises(DataError) as caught:
        load_path(coveo_folder, settings=settings)
    assert str(caught.value) == (
        "search_train.csv line 4: product_skus_hash '['k3'' is not a bracketed list; expected a "
        "list of quoted SKUs like ['h1', 'h2']"
    )
    # browsing_train.csv loaded fine before the failure, yet nothing of it is left behind.
    assert _files_under(settings.landing_dir) == []
    assert _files_under(settings.rejects_dir) == []


def test_skip_lands_good_rows_and_writes_rejects(settings: Settings, coveo_folder: Path) -> None:
    rows = list(BROWSING_ROWS)
    rows[1] = "s2,pageview,detail,,1550000002000,u1"
    rows[3] = "s1,pageview,,"
    write_lines(coveo_folder / "browsing_train.csv", BROWSING_HEADER, rows)
    summary = load_path(coveo_folder, on_bad_rows="skip", settings=settings)
    browsing = summary.files[0]
    assert (browsing.rows_read, browsing.rows_landed, browsing.rows_rejected) == (5, 3, 2)
    assert summary.rows_rejected == 2
    assert _count(settings, "browsing_events") == 3
    assert (
        browsing.rejects_file is not None and browsing.rejects_file.parent == settings.rejects_dir
    )
    records = [json.loads(line) for line in browsing.rejects_file.read_text().splitlines()]
    assert records == [
        {
            "file": "browsing_train.csv",
            "line": 3,
            "field": "product_action",
            "value": "detail",
            "reason": "must be empty on a pageview row",
            "raw": "s2,pageview,detail,,1550000002000,u1",
        },
        {
            "file": "browsing_train.csv",
            "line": 5,
            "field": None,
            "value": None,
            "reason": "the line has 4 fields; expected 6 (session_id_hash, event_type, "
            "product_action, product_sku_hash, server_timestamp_epoch_ms, hashed_url): it is cut "
            "off or has an unquoted comma",
            "raw": "s1,pageview,,",
        },
    ]
    assert read_manifest(settings)[0]["rows_rejected"] == 2


def test_rees46_sample_fails_on_cut_off_line(settings: Settings, shared_data: Path) -> None:
    with pytest.raises(DataError, match=rf"^2019-Oct-head.csv line {CUT_LINE:,}: the line has 8"):
        load_path(shared_data / "rees46", source="rees46", settings=settings)
    assert _files_under(settings.landing_dir) == []


def test_rees46_sample_skip_lands_the_rest(settings: Settings, shared_data: Path) -> None:
    summary = load_path(
        shared_data / "rees46", source="rees46", on_bad_rows="skip", settings=settings
    )
    (loaded,) = summary.files
    assert (loaded.rows_read, loaded.rows_rejected) == (17_435, 1)
    assert summary.landed("browsing_events") == _count(settings, "browsing_events") == 17_434
    assert summary.landed("catalog") == _count(settings, "catalog") == 6_493
    assert loaded.rejects_file is not None
    (record,) = [json.loads(line) for line in loaded.rejects_file.read_text().splitlines()]
    assert record["line"] == CUT_LINE
    assert record["raw"] == (
        "2019-10-01 02:50:00 UTC,view,10900305,2053013555069845885,appliances.kitchen.mixer,"
        "elenberg,25.71,52040330"
    )


def test_content_loaded_before_is_not_failed_again(settings: Settings, shared_data: Path) -> None:
    """Loaded once with skip, the sample is "already loaded" under fail: its bad line is known."""
    load_path(shared_data / "rees46", source="rees46", on_bad_rows="skip", settings=settings)
    again = load_path(shared_data / "rees46", source="rees46", settings=settings)
    assert [f.already_loaded for f in again.files] == [True]
    assert [t.table for t in again.files[0].tables] == ["browsing_events", "catalog"]


def test_identical_files_in_one_folder_land_once(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "months"
    folder.mkdir()
    header = "event_time,event_type,product_id,category_id,category_code,price,user_session"
    row = "2019-10-01 00:00:00 UTC,view,100,2001,a.b,5.00,s1"
    write_lines(folder / "a.csv", header, [row])
    write_lines(folder / "b.csv", header, [row])
    summary = load_path(folder, source="rees46", settings=settings)
    assert [f.already_loaded for f in summary.files] == [False, True]
    assert _count(settings, "browsing_events") == 1


def test_otto_sample_lands_862_events(settings: Settings, shared_data: Path) -> None:
    summary = load_path(
        shared_data / "otto" / "train-20-sessions.jsonl", source="otto", settings=settings
    )
    assert (summary.rows_read, summary.rows_landed) == (20, 862)
    assert _count(settings, "browsing_events") == 862


def test_unknown_path_and_format_are_errors(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"does not exist; expected a folder of coveo files or one file$"
    ):
        load_path(tmp_path / "missing", settings=settings)
    with pytest.raises(
        DataError, match=r"^source format 'parquet' is not one of coveo, rees46, otto$"
    ):
        load_path(tmp_path, source="parquet", settings=settings)


def test_land_batches_is_atomic_and_conforms(settings: Settings) -> None:
    batch = pa.record_batch(
        {
            "server_timestamp_epoch_ms": pa.array([2, 1], pa.int32()),  # cast to int64
            "session_id_hash": ["a", "b"],
            "event_type": ["pageview", "pageview"],
            "product_action": pa.nulls(2, pa.string()),
            "product_sku_hash": pa.nulls(2, pa.string()),
            "hashed_url": ["u", None],
            "extra": [1, 2],  # dropped
        }
    )
    path = land_batches(schema.BROWSING_EVENTS, [batch], settings=settings, name="collect-0001")
    assert path == settings.table_landing_dir("browsing_events") / "collect-0001.parquet"
    assert pq.read_table(path).schema.equals(schema.BROWSING_EVENTS.arrow_schema)
    assert _files_under(settings.landing_dir) == ["browsing_events/collect-0001.parquet"]

    no_session = batch.set_column(1, "session_id_hash", pa.array([None, "b"], pa.string()))
    with pytest.raises(DataError, match="have 1 empty session_id_hash values"):
        land_batches(
            schema.BROWSING_EVENTS, [batch, no_session], settings=settings, name="collect-0002"
        )
    assert _files_under(settings.landing_dir) == ["browsing_events/collect-0001.parquet"]


def test_cli_load_success_prints_summary(settings: Settings, coveo_folder: Path) -> None:
    result = CliRunner().invoke(app, ["data", "load", str(coveo_folder), "--format", "coveo"])
    assert result.exit_code == 0, result.output
    assert "browsing_train.csv" in result.stdout
    assert "total" in result.stdout
    assert _count(settings, "catalog") == 3


def test_cli_load_failure_is_one_line(settings: Settings, shared_data: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "load", str(shared_data / "rees46"), "--format", "rees46"]
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: 2019-Oct-head.csv line {CUT_LINE:,}: the line has 8 fields")
    assert "Traceback" not in result.output


def test_a_torn_last_manifest_line_is_cut_with_a_warning(
    settings: Settings, coveo_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load_path(coveo_folder, settings=settings)
    manifest = settings.landing_dir / "_manifest.jsonl"
    whole = manifest.read_bytes()
    torn = json.dumps({"sha256": "ab" * 32, "table": "catalog"})[:40]
    manifest.write_bytes(whole + torn.encode())  # a load killed while appending

    again = load_path(coveo_folder, settings=settings)
    assert [f.already_loaded for f in again.files] == [True, True, True]
    assert manifest.read_bytes() == whole
    assert f"{manifest}: removed a torn last line (40 bytes" in caplog.text


def test_a_bad_manifest_line_in_the_middle_is_a_one_line_error(
    settings: Settings, coveo_folder: Path
) -> None:
    load_path(coveo_folder, settings=settings)
    manifest = settings.landing_dir / "_manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    damaged = b"".join([lines[0], b'{"sha256": "x", "tab\n', *lines[1:]])
    manifest.write_bytes(damaged)

    result = CliRunner().invoke(app, ["data", "load", str(coveo_folder)], terminal_width=400)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert f"{manifest} line 2 is not a JSON object" in line
    assert manifest.read_bytes() == damaged  # corruption is reported, never "repaired"


def test_a_dead_loads_temp_file_is_removed_and_a_live_ones_is_kept(
    settings: Settings, coveo_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = settings.table_landing_dir("browsing_events")
    folder.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale = folder / f".browsing_events.tmp-{dead.pid}-0badf00d"
        stale.write_bytes(b"\0" * 172_000)
        running = folder / f".browsing_events.tmp-{live.pid}-00c0ffee"
        running.write_bytes(b"\0" * 1_000)

        load_path(coveo_folder, settings=settings)
        assert not stale.exists()
        assert running.read_bytes() == b"\0" * 1_000
        assert f"removed {stale} (172,000 bytes), left by process {dead.pid}" in caplog.text
    finally:
        live.kill()
        live.wait()

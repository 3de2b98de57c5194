"""The Coveo release as published: the samples' `_sample` names and trailing blank line, blank
lines anywhere (skipped and counted, never rows), gzipped files, the README's `event` spelling of
`event_product`, the release zip, and a folder that names what it used and what it ignored."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from smallboat import schema
from smallboat.config import Settings
from smallboat.data.land.load import load_path
from smallboat.data.sources.base import Problems, ReadStats
from smallboat.data.sources.coveo import CoveoSource, release_table
from smallboat.errors import DataError
from tests.source_files import (
    BROWSING_HEADER,
    BROWSING_ROWS,
    SAMPLE_NAMES,
    read_all,
    write_lines,
    write_release_samples,
)

COVEO = CoveoSource()


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("browsing_train.csv", "browsing_events"),
        ("browsing_train_sample.csv", "browsing_events"),
        ("search_train_sample.csv.gz", "search_events"),
        ("sku_to_content.csv.gz", "catalog"),
        ("browsing_train.txt", None),
        ("train_sample.csv", None),
    ],
)
def test_release_names_and_their_sample_and_gzip_forms(name: str, table: str | None) -> None:
    assert release_table(name) == table


def test_the_published_samples_load_with_the_default_options(settings: Settings) -> None:
    folder = settings.home_dir.parent / "samples"
    write_release_samples(folder)
    (folder / "README.md").write_text("the challenge's notes")
    (folder / "starter.py").write_text("print('hi')")
    summary = load_path(folder, settings=settings)
    assert [f.file.name for f in summary.files] == list(SAMPLE_NAMES.values())
    assert [(f.rows_read, f.blank_lines, f.rows_rejected) for f in summary.files] == [
        (5, 1, 0),
        (3, 1, 0),
        (3, 1, 0),
    ]
    assert summary.ignored == ["README.md", "starter.py"]
    assert (summary.landed("browsing_events"), summary.landed("catalog")) == (5, 3)
    caption = str(summary.render().caption)
    assert "browsing_train_sample.csv: 1 blank line(s) skipped" in caption
    assert "ignored (not coveo files): README.md, starter.py" in caption
    manifest = [
        json.loads(line)
        for line in (settings.landing_dir / "_manifest.jsonl").read_text().splitlines()
    ]
    assert {e["blank_lines"] for e in manifest} == {1}


def test_blank_lines_anywhere_are_skipped_counted_and_keep_line_numbers(tmp_path: Path) -> None:
    rows = [BROWSING_ROWS[0], "", "", BROWSING_ROWS[1], "s9,pageview,buy,,1,u", ""]
    path = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, rows)
    with pytest.raises(DataError) as caught:  # the bad row keeps its own line number
        read_all(COVEO, path)
    assert str(caught.value).startswith("browsing_train.csv line 6: product_action 'buy'")
    rows[4] = BROWSING_ROWS[2]
    write_lines(path, BROWSING_HEADER, rows)
    stats = ReadStats()
    batches = list(COVEO.read(path, problems=Problems("fail"), stats=stats, block_size=1 << 20))
    assert sum(b.num_rows for _, b in batches) == 3
    assert (stats.rows_read, stats.blank_lines) == (3, 3)


def test_event_is_read_as_event_product(tmp_path: Path) -> None:
    rows = [r.replace("event_product", "event") for r in BROWSING_ROWS]
    path = write_lines(tmp_path / "browsing_train_sample.csv", BROWSING_HEADER, rows)
    tables, rejected = read_all(COVEO, path)
    assert rejected == []
    types = tables["browsing_events"].column("event_type").to_pylist()
    assert types == ["event_product", "pageview", "event_product", "pageview", "event_product"]
    bad = write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, ["s1,click,,,1,u"])
    with pytest.raises(DataError, match="event_type 'click' is not one of pageview, event_product"):
        read_all(COVEO, bad)


def test_gzipped_files_load_and_match_the_plain_ones(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    plain = write_lines(tmp_path / "plain" / "browsing_train.csv", BROWSING_HEADER, BROWSING_ROWS)
    (tmp_path / "gz").mkdir()
    zipped = tmp_path / "gz" / "browsing_train.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert COVEO.files_in(tmp_path / "gz") == [zipped]
    assert read_all(COVEO, zipped)[0] == read_all(COVEO, plain)[0]
    broken = tmp_path / "gz" / "search_train.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"^search_train.csv.gz cannot be read as gzip"):
        read_all(COVEO, broken)


def test_the_release_zip_loads_as_its_folder(settings: Settings, tmp_path: Path) -> None:
    files = write_release_samples(tmp_path / "samples")
    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for path in files.values():
            out.write(path, f"sigir-2021/{path.name}")
        out.writestr("__MACOSX/sigir-2021/._browsing_train_sample.csv", b"\x00\x05")
        out.writestr("sigir-2021/LICENSE.txt", "terms")
    summary = load_path(archive, settings=settings)
    assert summary.rows_landed == 11 and summary.ignored == ["LICENSE.txt"]
    manifest = (settings.landing_dir / "_manifest.jsonl").read_text()
    assert f"{archive.resolve()}!sigir-2021/browsing_train_sample.csv" in manifest
    assert list((settings.home_dir / "tmp").iterdir()) == []  # unpacked files are gone
    again = load_path(tmp_path / "samples", settings=settings)  # the same bytes: loaded once
    assert all(f.already_loaded for f in again.files)


def test_a_zip_over_the_budget_is_refused(tmp_path: Path, settings: Settings) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("browsing_train.csv", BROWSING_HEADER + "\n" + "\n" * 5000)
    small = settings.model_copy(update={"load_max_unzipped_bytes": 1000})
    with pytest.raises(DataError, match=r"unpacks to more than 1,000 bytes \(SMALLBOAT_LOAD_MAX"):
        load_path(archive, settings=small)
    assert not any(settings.landing_dir.rglob("*.parquet"))


def test_a_zip_in_a_compression_zipfile_cannot_read_is_a_one_line_error(
    tmp_path: Path, settings: Settings
) -> None:
    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("browsing_train.csv", BROWSING_HEADER + "\n")
    raw = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local, central
        at = raw.find(signature) + offset
        raw[at : at + 2] = (99).to_bytes(2, "little")  # a method no zip reader here knows
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"release.zip: .*not supported; unpack it"):
        load_path(archive, settings=settings)
    assert not any(settings.landing_dir.rglob("*.parquet"))


def test_two_files_of_one_table_are_refused(tmp_path: Path) -> None:
    write_lines(tmp_path / "browsing_train.csv", BROWSING_HEADER, BROWSING_ROWS)
    write_lines(tmp_path / "browsing_train_sample.csv", BROWSING_HEADER, BROWSING_ROWS)
    with pytest.raises(
        DataError,
        match=r"holds browsing_train.csv and browsing_train_sample.csv, both browsing_events",
    ):
        COVEO.files_in(tmp_path)
    assert set(schema.COVEO_FILES) == set(SAMPLE_NAMES)

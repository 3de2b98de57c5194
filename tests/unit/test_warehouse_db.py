"""Opening the live warehouse: a file without a build record is read with a warning, a file another
process writes is a one-line error, and one transform runs per home (no dbt run: these stop before
it)."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from typer.testing import CliRunner

from smallboat.cli import app
from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.warehouse.db import build_lock, build_warnings, connect, live_build
from smallboat.warehouse.transform import run_transform


def _summary(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("SMALLBOAT_HOME", str(settings.home_dir))
    out = CliRunner().invoke(app, ["warehouse", "summary"], terminal_width=400)
    return out.exit_code, out.output


def test_a_warehouse_without_a_build_record_is_read_with_a_warning(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with duckdb.connect(str(settings.warehouse_path)) as con:  # as an older smallboat left it
        con.execute("create table sku_features as select 'A' as product_sku_hash")
    with connect(settings, read_only=True) as con:
        [line] = build_warnings(settings, con)
    assert "holds no record of a finished `smallboat transform`" in line
    assert live_build(settings) is None
    code, output = _summary(settings, monkeypatch)
    assert code == 0, output
    squeezed = "".join(output.split())  # rich wraps long paths anywhere
    assert "".join(f"warning: {line}".split()) in squeezed


def test_summary_while_another_process_writes_the_file_is_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(settings.warehouse_path)!r})\n"
            "con.execute('create table _smallboat_build as select 1 as n')\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        code, output = _summary(settings, monkeypatch)
    finally:
        writer.kill()
        writer.wait()
    assert code == 1
    [line] = output.splitlines()
    assert line.startswith(
        f"error: the warehouse at {settings.warehouse_path} is locked for writing by another "
        f"process (PID {writer.pid}, "
    )
    assert "Traceback" not in output


def test_a_second_transform_of_the_same_home_is_refused(settings: Settings) -> None:
    refused = pytest.raises(SmallboatError, match=r"another `smallboat transform` \(pid \d+")
    with build_lock(settings), refused:
        run_transform(settings)
    assert not (settings.home_dir / "warehouse.building.duckdb").exists()

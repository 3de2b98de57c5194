"""A transform is one visible unit: readers see the last whole build or a refusal, never a mix.

Each test gets its own copy of a small warehouse built once (the *old* build), lands more sessions
in it, and then lets a real `smallboat transform` subprocess build the *new* one: stopped
mid-build (SIGSTOP, a writer holding its file), killed mid-build (SIGKILL), or failing its
quality gate. The readers are the real ones: `smallboat warehouse summary` (a subprocess),
TrainFlow's `prepare_intent_data` and the monitor's `read_predictions`. "Mid-build" is when dbt's
log says `session_events` was created: the marts after it (sessions, intent_examples, ...) are not
built yet, so a build written in place would show new session events beside old sessions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from smallboat.config import Settings
from smallboat.errors import QualityGateError
from smallboat.features import FeatureSpec
from smallboat.model.prepare import prepare_intent_data
from smallboat.monitor.live import read_predictions
from smallboat.pipeline import train_steps
from smallboat.warehouse.db import connect
from smallboat.warehouse.transform import run_transform
from tests.landing_data import BASE_MS, SessionSpec, browsing_table, write_landing
from tests.synthetic_home import copy_home

pytestmark = pytest.mark.slow

HOUR_MS = 3_600_000
SMALLBOAT = str(Path(sys.executable).parent / "smallboat")
MARTS = ("session_events", "sessions", "intent_examples", "next_item_examples", "sku_features")
MID_BUILD = "OK created sql table model main.session_events"


def _sessions(prefix: str, first_hour: int, n: int) -> list[SessionSpec]:
    """n sessions an hour apart, each with an add, buying and abandoning in turn (so every split,
    the last 10% and the 10% before it, has intent examples of both labels)."""
    moments = ("pv d:A a:A pv p:A pv", "pv d:C a:C r:C pv pv pv")
    return [
        SessionSpec(f"{prefix}{i:02d}", BASE_MS + (first_hour + i) * HOUR_MS, moments[i % 2])
        for i in range(n)
    ]


OLD = _sessions("old_", 0, 20)
NEW = _sessions("new_", 100, 10)


def _counts(settings: Settings) -> dict[str, Any]:
    """Each mart's row count and the build record's start (which identifies a build)."""
    with connect(settings, read_only=True) as con:
        counts: dict[str, Any] = {
            m: con.sql(f"select count(*) from main.{m}").fetchall()[0][0] for m in MARTS
        }
        tables = {
            t for (t,) in con.sql("select table_name from information_schema.tables").fetchall()
        }
        if "_smallboat_build" in tables:
            counts["build"] = con.sql("select started_at from main._smallboat_build").fetchall()
    return counts


@pytest.fixture(scope="module")
def old_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    """A home with the old build (OLD landed, transformed), built once and copied by each test;
    its counts."""
    settings = Settings(home=tmp_path_factory.mktemp("old_build") / "home")
    settings.ensure_home()
    write_landing(settings, "browsing_events", browsing_table(OLD), "part-old")
    run_transform(settings)
    return settings, _counts(settings)


@pytest.fixture
def home(
    old_build: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> tuple[Settings, dict[str, Any]]:
    """This test's copy of the old build, with NEW landed on top, not yet built."""
    source, old = old_build
    copy_home(source, tmp_path / "home")
    settings = Settings(home=tmp_path / "home")
    assert _counts(settings) == old  # the copy holds the old build, whole
    write_landing(settings, "browsing_events", browsing_table(NEW), "part-new")
    return settings, old


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "SMALLBOAT_HOME": str(settings.home_dir),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "COLUMNS": "200",
    }


def _transform_until_mid_build(settings: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Start `smallboat transform` in its own process group; stop it (SIGSTOP) as soon as dbt has
    created session_events, and return it stopped."""
    log = settings.dbt_target_dir / "logs" / "dbt.log"
    seen = log.stat().st_size if log.exists() else 0
    out = (tmp_path / "transform.out").open("wb")
    proc = subprocess.Popen(
        [SMALLBOAT, "transform"],
        env=_env(settings),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and MID_BUILD in log.read_bytes()[seen:].decode(errors="replace"):
            os.killpg(proc.pid, signal.SIGSTOP)
            return proc
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise AssertionError(f"transform never reached {MID_BUILD!r} (exit {proc.returncode})")


def _summary(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMALLBOAT, "warehouse", "summary"],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())


def _n_examples(settings: Settings) -> int:
    data = prepare_intent_data(settings, FeatureSpec())
    return sum(len(ex) for ex in data.splits.values())


def test_a_killed_transform_leaves_the_last_build_whole_and_readable(
    home: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, old = home
    proc = _transform_until_mid_build(settings, tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL  # killed mid-build, not finished

    assert _counts(settings) == old  # every mart and the build record: the old build, whole
    assert _n_examples(settings) == old["intent_examples"]
    assert read_predictions(settings).empty  # the monitor's read opens the old build
    run = _summary(settings)
    assert run.returncode == 0, run.stderr
    text = _flat(run.stdout)
    assert f"session_events {old['session_events']:,}" in text
    assert f"sessions {old['sessions']:,}" in text
    assert "did not finish (killed?)" in text
    assert (settings.home_dir / "warehouse.building.duckdb").exists()  # what the kill left

    result = run_transform(settings)  # the next build cleans up and swaps in the new data
    assert result.success
    assert not (settings.home_dir / "warehouse.building.duckdb").exists()
    new = _counts(settings)
    assert new["sessions"] == old["sessions"] + len(NEW)
    assert new["intent_examples"] > old["intent_examples"]
    assert "did not finish" not in _flat(_summary(settings).stdout)


def test_summary_during_a_transform_reads_the_last_build(
    home: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, old = home
    proc = _transform_until_mid_build(settings, tmp_path)
    try:
        run = _summary(settings)  # the writer is alive, mid-build, holding its file
        assert run.returncode == 0, run.stderr
        text = _flat(run.stdout)
        assert f"session_events {old['session_events']:,}" in text
        assert f"sessions {old['sessions']:,}" in text
        assert f"a transform (pid {proc.pid}) is building a new warehouse" in text
        assert _n_examples(settings) == old["intent_examples"]
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=180) == 0, (tmp_path / "transform.out").read_text()
    new = _counts(settings)
    assert new["sessions"] == old["sessions"] + len(NEW)
    text = _flat(_summary(settings).stdout)
    assert f"sessions {new['sessions']:,}" in text
    assert "warning" not in text


def test_a_failed_gate_leaves_the_last_build_live_and_says_so(
    home: tuple[Settings, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, old = home
    # Half the sessions buy: armed for 30 rows, the purchase share check (at most 30%) fails on
    # `sessions` after session_events and sessions were built; intent_examples is skipped.
    with pytest.raises(QualityGateError, match="sessions_purchase_share_within_bounds"):
        run_transform(settings, vars={"distribution_min_rows": 1})

    assert _counts(settings) == old
    assert _n_examples(settings) == old["intent_examples"]
    assert not (settings.home_dir / "warehouse.building.duckdb").exists()
    run = _summary(settings)
    assert run.returncode == 0, run.stderr
    text = _flat(run.stdout)
    assert f"sessions {old['sessions']:,}" in text
    assert "the last transform (started at" in text and ") failed;" in text
    # TrainFlow --skip-transform: the card gets the live build's quality record, which passed
    monkeypatch.setenv("SMALLBOAT_HOME", str(settings.home_dir))
    recorded = train_steps.transform(skip=True, dbt_vars="{}")
    assert recorded["invocation"]["success"] is True
    assert recorded["invocation"]["vars"] == {}  # not the failed attempt's

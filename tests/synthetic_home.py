"""A state home holding loaded synthetic data, for integration tests that need a real warehouse."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from smallboat.config import Settings
from smallboat.data.land.load import load_path
from smallboat.data.synth.generate import SynthConfig, synthesize
from tests.landing_data import browsing_row


@contextmanager
def synthetic_home(root: Path, *, sessions: int, seed: int) -> Iterator[tuple[Settings, Path]]:
    """`sessions` synthetic sessions written to `root/data` and loaded into the home `root/home`
    (not yet transformed); SMALLBOAT_HOME points at that home while the context is open, so
    subprocesses (dbt, Metaflow, servers) use it too. Yields its settings and the data folder."""
    data = root / "data"
    synthesize(SynthConfig(sessions=sessions, seed=seed), data)
    mp = pytest.MonkeyPatch()
    mp.setenv("SMALLBOAT_HOME", str(root / "home"))
    mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    try:
        settings = Settings()
        settings.ensure_home()
        load_path(data, source="coveo", on_bad_rows="fail", settings=settings, progress=False)
        yield settings, data
    finally:
        mp.undo()


def copy_home(source: Settings, target: Path) -> None:
    """A copy of the home `source` at `target`, its warehouse's views re-pointed at the copy's own
    landing files: dbt-duckdb writes each staging view with the absolute landing path, so without
    this the copy would read the source's landing until dbt's next build rewrote them."""
    shutil.copytree(source.home_dir, target, symlinks=True)

    def moved(path: Path) -> str:
        return str(target / path.relative_to(source.home_dir))

    with duckdb.connect(moved(source.warehouse_path)) as con:
        views = con.sql("select view_name, sql from duckdb_views() where not internal").fetchall()
        for name, sql in views:
            fixed = sql.replace(f"'{source.landing_dir}/", f"'{moved(source.landing_dir)}/")
            assert str(source.home_dir) not in fixed, f"view {name} still reads the source: {sql}"
            con.execute(f'drop view "{name}"')
            con.execute(fixed)


def raw_rows(events: Any, session: int, session_id: str) -> list[dict[str, Any]]:
    """A collapsed session of an EventTable back as raw browsing rows under `session_id`
    (collapsing them again is the identity)."""
    start, end = events.offsets[session], events.offsets[session + 1]
    rows = []
    for action, sku, ts in zip(
        events.actions[start:end],
        events.skus[start:end],
        events.timestamps_ms[start:end],
        strict=True,
    ):
        rows.append(
            browsing_row(
                session_id,
                int(ts),
                None if action == "pageview" else str(action),
                None if sku is None else str(sku),
            )
        )
    return rows

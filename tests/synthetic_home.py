"""A state home holding loaded synthetic data, for integration tests that need a real warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

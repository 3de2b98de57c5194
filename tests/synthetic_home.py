"""A state home holding loaded synthetic data, for integration tests that need a real warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from smallboat.config import Settings
from smallboat.data.land import load_path
from smallboat.data.synth import SynthConfig, synthesize


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

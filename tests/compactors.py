"""Compactors at once, as the replica tests run them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from smallboat.collect.compaction import compact_events
from smallboat.config import Settings


def compact_beside_another(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`smallboat collect compact` (the CLI, which rolls every running replica) while one more
    compaction runs in this process; returns the CLI's run once both are done."""
    other = threading.Thread(target=compact_events, args=(settings,))
    other.start()
    cli = subprocess.run(
        [sys.executable, "-m", "smallboat.cli", "collect", "compact"],
        env={**os.environ, "SMALLBOAT_HOME": str(settings.home_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    other.join(60)
    return cli

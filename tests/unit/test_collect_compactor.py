"""The running collector's background compaction runs in a child process of its own, at a lower
CPU priority, lands what the collector logged, stops with the store, and never outlives its
collector (`collect.compactor`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from smallboat.collect.compactor import COMPACTOR_NAME, COMPACTOR_NICE
from smallboat.collect.events import Hit
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.schema import BROWSING_EVENTS


def landed(settings: Settings) -> Counter[str]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    return Counter(
        str(row["product_sku_hash"])
        for path in folder.glob("collect-*.parquet")
        for row in pq.read_table(path).to_pylist()
    )


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"  # ended, not yet reaped by its parent


def test_background_compaction_lands_the_log_from_a_lower_priority_child(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"collect_compact_seconds": 0.2})
    store = EventStore.open(settings)
    try:
        compactor = store.compactor
        assert compactor is not None
        assert compactor.pid != os.getpid()
        wait_until(
            lambda: Path(f"/proc/{compactor.pid}/comm").read_text().strip() == COMPACTOR_NAME,
            30,
            "the compactor names itself",
        )
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, compactor.pid) == min(mine + COMPACTOR_NICE, 19)
        now = int(time.time() * 1000)
        hits = [
            Hit(f"m{i}", "event_product", "add", f"sku-{i}", now, None, "s1", None, "json")
            for i in range(50)
        ]
        asyncio.run(store.log(hits, now))
        store.wal.roll().result(10)
        expected = Counter(f"sku-{i}" for i in range(50))
        wait_until(lambda: landed(settings) == expected, 60, "the logged hits land once")
        assert compactor.alive()
    finally:
        store.close()
    assert store.compactor is None
    assert gone(compactor.pid), "the compactor outlived the store's close()"


CHILD = """
import sys, time
from pathlib import Path
from smallboat.collect.store import EventStore
from smallboat.config import Settings
store = EventStore.open(Settings(home=Path(sys.argv[1]), collect_compact_seconds=3600))
print(store.compactor.pid, flush=True)
time.sleep(600)
"""


def test_the_compactor_ends_when_its_collector_is_killed(tmp_path: Path) -> None:
    collector = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "home")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert collector.stdout is not None
        pid = int(collector.stdout.readline())
        assert not gone(pid)
        os.kill(collector.pid, signal.SIGKILL)
        collector.wait(10)
        wait_until(lambda: gone(pid), 10, "the compactor ends after its collector died")
    finally:
        collector.kill()
        collector.wait()


def test_a_compactor_that_dies_is_started_again_and_lands_the_log(settings: Settings) -> None:
    settings = settings.model_copy(update={"collect_compact_seconds": 0.2})
    store = EventStore.open(settings)
    try:
        first = store.compactor
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: not first.alive(), 10, "the killed compactor is seen dead")
        now = int(time.time() * 1000)
        hits = [
            Hit(f"m{i}", "event_product", "add", f"sku-{i}", now, None, "s1", None, "json")
            for i in range(20)
        ]
        asyncio.run(store.log(hits, now))
        store.wal.roll().result(10)
        ready = store.ready()  # looks at the compactor every time
        second = store.compactor
        assert second is not None and second.pid != first.pid and second.alive()
        assert ready.compactor_restarts == 1 == store.compactor_restarts
        assert first.returncode == -signal.SIGKILL
        expected = Counter(f"sku-{i}" for i in range(20))
        wait_until(lambda: landed(settings) == expected, 60, "the new compactor lands the log")
        assert store.ready().compactor_restarts == 1, "a live compactor is not restarted"
    finally:
        store.close()
    assert gone(second.pid)

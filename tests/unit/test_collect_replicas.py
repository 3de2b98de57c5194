"""Collector replicas on one home: each writes its own log, and any number of compactors running
at once land every replica's events exactly once, also an event two replicas both logged (a
client that retried to the other replica)."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from smallboat.collect.compaction import compact_events, log_dir, replicas
from smallboat.collect.control import Control, collector_status, roll_replica, write_control
from smallboat.collect.events import EventRecord
from smallboat.config import Settings
from smallboat.data.log.segments import Segment, claim_worker_slot
from smallboat.data.log.wal import WriteAheadLog
from smallboat.durable import process_start
from smallboat.errors import SmallboatError
from smallboat.schema import BROWSING_EVENTS


def record(message_id: str, n: int) -> EventRecord:
    return EventRecord(
        message_id=message_id,
        session_id_hash=f"s{n % 5}",
        event_type="event_product",
        product_action="add",
        product_sku_hash=f"sku-{message_id}",
        server_timestamp_epoch_ms=1_700_000_000_000 + n,
        hashed_url=None,
        received_at_ms=1_700_000_000_000 + n,
        client_id=None,
        session_start_ms=None,
        source="json",
    )


def write_replica(settings: Settings, replica: str, ids: list[str], per_segment: int) -> None:
    """`ids` into `replica`'s log, `per_segment` records per closed segment."""
    with WriteAheadLog.open(log_dir(settings, replica)) as wal:
        for start in range(0, len(ids), per_segment):
            wal.write([record(m, i) for i, m in enumerate(ids[start : start + per_segment])])
            wal.roll().result()


def landed_ids(settings: Settings) -> Counter[str]:
    folder = settings.table_landing_dir(BROWSING_EVENTS.name)
    rows = [r for p in folder.glob("collect-*.parquet") for r in pq.read_table(p).to_pylist()]
    return Counter(str(r["product_sku_hash"]).removeprefix("sku-") for r in rows)


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_home()
    return settings


def test_every_replica_lands_once_with_concurrent_compactors(home: Settings) -> None:
    # Replica a and b share 100 ids (retries that both acknowledged), the default log has its own.
    shared = [f"shared-{i}" for i in range(100)]
    write_replica(home, "a", [f"a-{i}" for i in range(300)] + shared, per_segment=40)
    write_replica(home, "b", shared + [f"b-{i}" for i in range(300)], per_segment=40)
    write_replica(home, "", [f"d-{i}" for i in range(50)], per_segment=20)
    assert replicas(home) == ["", "a", "b"]

    errors: list[BaseException] = []

    def run() -> None:
        try:
            compact_events(home)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    expected = {f"a-{i}" for i in range(300)} | {f"b-{i}" for i in range(300)}
    expected |= set(shared) | {f"d-{i}" for i in range(50)}
    landed = landed_ids(home)
    assert set(landed) == expected
    assert max(landed.values()) == 1, [k for k, n in landed.items() if n > 1][:5]
    status = collector_status(home)
    assert status.rows_landed == len(expected)
    assert status.duplicates == len(shared)
    assert [r.name for r in status.replicas] == ["", "a", "b"]
    assert status.pending_segments == 0


def test_a_compactor_waits_for_one_landing_the_same_key(home: Settings) -> None:
    """Compactor 1 has read replica a's segment (holding key k) and not committed it yet when
    compactor 2 starts on replica b's (holding k too): 2 must wait, or both land k."""
    write_replica(home, "a", ["k", "a-1"], per_segment=2)
    write_replica(home, "b", ["k", "b-1"], per_segment=2)
    paused, go = threading.Event(), threading.Event()

    def hold_after_read(step: str, segment: Segment) -> None:
        if step == "read":
            paused.set()
            go.wait(10)

    first = threading.Thread(target=lambda: compact_events(home, replica="a", hook=hold_after_read))
    first.start()
    assert paused.wait(10)
    second = threading.Thread(target=lambda: compact_events(home, replica="b"))
    second.start()
    second.join(1.0)
    assert second.is_alive(), "the second compactor ran while the first held key k uncommitted"
    go.set()
    first.join(10)
    second.join(10)
    assert landed_ids(home) == Counter({"k": 1, "a-1": 1, "b-1": 1})


def test_worker_slots_are_claimed_once_per_process(tmp_path: Path) -> None:
    folder = tmp_path / "slots"
    assert claim_worker_slot(folder, "main", 2) == "main-w0"
    assert claim_worker_slot(folder, "main", 2) == "main-w1"  # w0's claim is held open
    with pytest.raises(SmallboatError, match=r"every worker slot main-w0\.\.w1 in .* is held"):
        claim_worker_slot(folder, "main", 2)


@pytest.mark.parametrize("bad", ["a/b", "..", ".hidden", "x" * 65, "a b"])
def test_a_replica_id_that_is_not_a_folder_name_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="collect_replica"):
        Settings(collect_replica=bad)


def test_status_lists_every_replica(home: Settings) -> None:
    write_replica(home, "a", ["x", "y"], per_segment=2)
    write_replica(home, "b", ["z"], per_segment=1)
    lines = collector_status(home).lines()
    assert lines[:5] == [
        "replica a: not running",
        f"replica a log: {_segments(home, 'a')}",
        "replica b: not running",
        f"replica b log: {_segments(home, 'b')}",
        "all replicas: pending compaction: 2 segment(s), "
        f"{_pending_bytes(home, 'a') + _pending_bytes(home, 'b'):,} bytes",
    ]


def _bytes(settings: Settings, replica: str) -> int:
    return sum(p.stat().st_size for p in log_dir(settings, replica).glob("*.wal"))


def _pending_bytes(settings: Settings, replica: str) -> int:
    sizes = [p.stat().st_size for p in log_dir(settings, replica).glob("*.wal")]
    return sum(size for size in sizes if size > 8)


def _segments(settings: Settings, replica: str) -> str:
    files = list(log_dir(settings, replica).glob("*.wal"))
    pending = [p for p in files if p.stat().st_size > 8]
    size = _bytes(settings, replica)
    return (
        f"{len(files)} segment(s), {size:,} bytes; pending compaction: {len(pending)} "
        f"segment(s), {sum(p.stat().st_size for p in pending):,} bytes"
    )


def test_a_reused_pid_is_never_signalled(home: Settings) -> None:
    """A dead collector's control file names a pid the system gave to another process since: the
    roll request must not reach it (SIGUSR1 ends a process that does not handle it)."""
    settings = home.model_copy(update={"collect_replica": "a"})
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        started = process_start(bystander.pid)
        assert started is not None
        # the collector that wrote this file had the bystander's pid but started earlier
        write_control(
            settings, Control(bystander.pid, "http://127.0.0.1:9", "t", started=started - 1)
        )
        with WriteAheadLog.open(log_dir(settings, "a")) as wal:
            wal.write([record("m1", 1)])  # an acknowledged event in the active segment
            with pytest.raises(SmallboatError, match="published no running pid"):
                roll_replica(settings, "a", timeout=0.5)
        assert bystander.poll() is None, "the bystander was signalled"
        # the same file naming the bystander as it is (its real start time) is signalled
        write_control(settings, Control(bystander.pid, "http://127.0.0.1:9", "t", started=started))
        with WriteAheadLog.open(log_dir(settings, "a")) as wal:
            wal.write([record("m2", 2)])
            with pytest.raises(SmallboatError, match="did not close its active segment"):
                roll_replica(settings, "a", timeout=0.5)
        assert bystander.wait(timeout=5) == -signal.SIGUSR1
    finally:
        bystander.kill()
        bystander.wait()

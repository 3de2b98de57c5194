"""The write-ahead log: framing, torn tails, group commit, fsync before acknowledgement, rolling."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smallboat.data.log import wal as wal_module
from smallboat.data.log.segments import (
    SEGMENT_MAGIC,
    closed_segments,
    encode_frame,
    list_segments,
    scan_segment,
    writer_is_live,
)
from smallboat.data.log.wal import LogWriteError, WriteAheadLog
from smallboat.errors import DataError, SmallboatError


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"i": i, "text": f"event {i} é"} for i in range(start, start + n)]


def all_records(folder: Path) -> list[dict[str, Any]]:
    return [r for s in list_segments(folder) for r in scan_segment(s.path).records]


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[WriteAheadLog]:
    log = WriteAheadLog.open(tmp_path / "log")
    yield log
    log.close()


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    with WriteAheadLog.open(folder) as wal:
        first = wal.write(records(3))
        closed = wal.roll().result()
        assert closed is not None and closed.id == first
        second = wal.write(records(2, start=3))
        assert second > first
        assert wal.closed_segments() == [closed]
    assert all_records(folder) == records(5)
    assert [s.id for s in list_segments(folder)] == [first, second]


def test_a_closed_log_starts_a_new_segment_on_every_open(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    for n in range(3):
        with WriteAheadLog.open(folder) as wal:
            wal.write(records(1, start=n))
    assert len(list_segments(folder)) == 3
    assert all_records(folder) == records(3)


def _cut_mid_frame(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-7])


def _append_garbage(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"\x13\x37 not a frame at all")


def _append_zero_blocks(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"\x00" * 4096)


def _flip_a_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55
    path.write_bytes(bytes(data))


def _half_a_header(path: Path) -> None:
    with path.open("ab") as f:
        f.write(encode_frame({"i": 99})[:5])


@pytest.mark.parametrize(
    "damage",
    [_cut_mid_frame, _append_garbage, _append_zero_blocks, _flip_a_payload_byte, _half_a_header],
)
def test_a_torn_tail_is_truncated_on_open_and_intact_records_kept(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    folder = tmp_path / "log"
    with WriteAheadLog.open(folder) as wal:
        wal.write(records(4))
        segment = wal.active
    assert segment is not None
    intact = segment.path.stat().st_size
    damage(segment.path)
    # The last frame is lost when the damage is inside it, never more than that.
    expected = records(3) if damage in (_cut_mid_frame, _flip_a_payload_byte) else records(4)
    assert scan_segment(segment.path).records == expected

    with WriteAheadLog.open(folder) as wal:
        assert wal.recovered_bytes > 0
        wal.write(records(1, start=10))
    assert scan_segment(segment.path).torn_bytes == 0
    assert segment.path.stat().st_size <= intact
    assert all_records(folder) == [*expected, *records(1, start=10)]


def test_a_file_that_is_not_a_segment_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000001-abcdef01.wal"
    path.write_bytes(b"PAR1" + b"\x00" * 20)
    with pytest.raises(DataError, match="is not a smallboat log segment"):
        scan_segment(path)


def test_an_empty_or_header_only_segment_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.wal"
    path.write_bytes(SEGMENT_MAGIC[:3])
    assert scan_segment(path).records == []
    path.write_bytes(SEGMENT_MAGIC)
    assert scan_segment(path).records == []


class SlowSync:
    """fdatasync that takes `seconds` and counts its calls (to make grouping observable)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self._real = os.fdatasync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        time.sleep(self.seconds)
        self._real(fd)


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = SlowSync(0.003)
    monkeypatch.setattr(os, "fdatasync", sync)
    folder = tmp_path / "log"
    threads, per_thread = 8, 60
    with WriteAheadLog.open(folder) as wal:

        def send(t: int) -> None:
            for i in range(per_thread):
                wal.write([{"thread": t, "i": i}])

        workers = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stats = wal.stats
    assert stats.appends == stats.records == threads * per_thread
    assert stats.groups == sync.calls
    assert stats.groups < stats.appends / 3, f"{stats.groups} fsyncs for {stats.appends} appends"
    logged = all_records(folder)
    assert len(logged) == threads * per_thread
    for t in range(threads):  # each thread's records in its own order
        assert [r["i"] for r in logged if r["thread"] == t] == list(range(per_thread))


def test_an_append_resolves_only_after_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    entered = threading.Event()
    real = os.fdatasync

    def gated(fd: int) -> None:
        entered.set()
        release.wait(5)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", gated)
    with WriteAheadLog.open(tmp_path / "log") as wal:
        future = wal.append(records(1))
        assert entered.wait(5)
        time.sleep(0.05)
        assert not future.done(), "acknowledged before fsync returned"
        release.set()
        assert future.result(5) == wal.active.id  # type: ignore[union-attr]


def test_a_failed_fsync_fails_the_append_and_every_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with WriteAheadLog.open(tmp_path / "log", recover_seconds=60) as wal:
        wal.write(records(1))
        monkeypatch.setattr(os, "fdatasync", broken)
        with pytest.raises(LogWriteError, match="Input/output error"):
            wal.write(records(1))
        monkeypatch.undo()
        # Refused at once, until the writer's next recovery try (60 s away here).
        with pytest.raises(LogWriteError, match="nothing is accepted until a probe write"):
            wal.write(records(1))
        assert wal.readiness_problem(0) is not None


def test_a_failed_write_recovers_by_itself_keeping_every_acknowledged_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC at the fsync (a full disk): the failed append is refused, the log stays refusing
    while the disk stays full, then, once fsync works again, closes the poisoned segment at its
    acknowledged prefix and takes appends in a new segment, with no restart."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    folder = tmp_path / "log"
    with WriteAheadLog.open(folder, recover_seconds=0.05) as wal:
        wal.write(records(3))
        poisoned = wal.active
        assert poisoned is not None
        acknowledged = poisoned.path.stat().st_size
        monkeypatch.setattr(os, "fdatasync", full)
        monkeypatch.setattr(os, "fsync", full)  # the recovery's own fsyncs fail too
        with pytest.raises(LogWriteError, match="No space left"):
            wal.write(records(1, start=3))  # written to the page cache, never acknowledged
        time.sleep(0.3)  # several recovery tries, all failing
        assert wal.refusal() is not None
        assert wal.active == poisoned
        monkeypatch.undo()
        deadline = time.monotonic() + 5
        while wal.refusal() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert wal.refusal() is None, "the log did not recover once the disk took writes"
        assert wal.recoveries == 1
        assert wal.active is not None and wal.active.id > poisoned.id
        # The poisoned segment ends exactly at its acknowledged prefix: clean, not torn.
        assert poisoned.path.stat().st_size == acknowledged
        assert scan_segment(poisoned.path).torn_bytes == 0
        wal.write(records(2, start=10))
    assert all_records(folder) == [*records(3), *records(2, start=10)]
    assert not (folder / wal_module.PROBE_FILE).exists()


def test_segments_roll_by_size(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    frame = len(encode_frame(records(1)[0]))
    with WriteAheadLog.open(folder, segment_bytes=len(SEGMENT_MAGIC) + 3 * frame) as wal:
        for r in records(10):
            wal.write([r])
        assert len(wal.closed_segments()) == 3  # 3 + 3 + 3 closed, 1 in the active one
    assert all_records(folder) == records(10)


def test_segments_roll_by_age(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path / "log", segment_seconds=0.2) as wal:
        first = wal.active
        time.sleep(0.3)
        assert wal.active == first, "an empty segment does not roll"
        wal.write(records(1))
        deadline = time.monotonic() + 5
        while wal.active == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert wal.closed_segments() == [first]


def test_one_writer_per_folder_and_its_active_segment_is_not_closed(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    with WriteAheadLog.open(folder) as wal:
        wal.write(records(1))
        wal.roll().result()
        wal.write(records(1, start=1))
        assert writer_is_live(folder)
        assert closed_segments(folder) == wal.closed_segments()
        assert len(closed_segments(folder)) == 1
        with pytest.raises(
            SmallboatError, match=f"already open for writing by process {os.getpid()}"
        ):
            WriteAheadLog.open(folder)
    assert not writer_is_live(folder)
    assert len(closed_segments(folder)) == 2


def test_unserialisable_records_are_refused_before_anything_is_queued(wal: WriteAheadLog) -> None:
    with pytest.raises(TypeError):
        wal.append([{"ok": 1}, {"bad": object()}])
    wal.write(records(1))
    assert wal.stats.records == 1


@pytest.mark.parametrize("when", ["before the scan", "after the scan"])
def test_a_tail_segment_compacted_away_while_opening_is_nothing_to_truncate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    # `collect compact` holds only the compaction lock, so it may delete the last segment of a
    # stopped writer between the new writer's listing and its truncation of a torn tail.
    folder = tmp_path / "log"
    with WriteAheadLog.open(folder) as wal:
        wal.write(records(2))
        segment = wal.active
    assert segment is not None
    _half_a_header(segment.path)
    real_scan = wal_module.scan_segment

    def compacted_meanwhile(path: Path) -> Any:
        if when == "before the scan":
            path.unlink()
            return real_scan(path)
        scan = real_scan(path)
        path.unlink()
        return scan

    monkeypatch.setattr(wal_module, "scan_segment", compacted_meanwhile)
    with WriteAheadLog.open(folder) as wal:
        assert wal.recovered_bytes == 0
        wal.write(records(1, start=5))
    assert not segment.path.exists()
    assert all_records(folder) == records(1, start=5)


def test_cancelled_appends_are_dropped_and_the_writer_keeps_going(wal: WriteAheadLog) -> None:
    futures = [wal.append([r]) for r in records(200)]
    cancelled = {i for i, future in enumerate(futures) if future.cancel()}
    assert wal.write(records(1, start=1000), timeout=5) == wal.active.id  # type: ignore[union-attr]
    # A cancel succeeds only while the writer has not taken the append: then it is not written.
    # One that fails (the writer took it) is written and resolved as usual.
    for i, future in enumerate(futures):
        if i not in cancelled:
            assert future.result(5) == wal.active.id  # type: ignore[union-attr]
    written = [r["i"] for r in all_records(wal.folder)]
    assert written == [*(i for i in range(200) if i not in cancelled), 1000]


def test_cancelling_the_task_awaiting_append_async_leaves_the_log_usable(
    wal: WriteAheadLog,
) -> None:
    async def main() -> int:
        task = asyncio.ensure_future(wal.append_async(records(2000)))
        await asyncio.sleep(0)  # the task queues its append and awaits it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.wait_for(wal.append_async(records(1, start=5000)), 5)

    assert asyncio.run(main()) == wal.active.id  # type: ignore[union-attr]
    assert all_records(wal.folder)[-1] == records(1, start=5000)[0]


def test_a_group_of_coroutine_appends_wakes_their_loop_once(
    wal: WriteAheadLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coroutines whose appends share a group commit are resolved by one callback on their
    loop, not one wake-up each."""
    first_commit = threading.Event()
    fdatasync = os.fdatasync

    def slow_first(fd: int) -> None:
        if not first_commit.is_set():
            first_commit.set()
            time.sleep(0.3)  # the appends below queue up meanwhile: the next group takes them all
        fdatasync(fd)

    settled: list[int] = []
    settle = wal_module._settle_waiters

    def counting(waiters: Any) -> None:
        settled.append(len(waiters))
        settle(waiters)

    monkeypatch.setattr(wal_module.os, "fdatasync", slow_first)
    monkeypatch.setattr(wal_module, "_settle_waiters", counting)

    async def main() -> list[int]:
        first = asyncio.ensure_future(wal.append_async(records(1)))
        while not first_commit.is_set():
            await asyncio.sleep(0.001)
        rest = [wal.append_async(records(1, start=i)) for i in range(1, 51)]
        return await asyncio.gather(first, *rest)

    assert set(asyncio.run(main())) == {wal.active.id}  # type: ignore[union-attr]
    assert settled == [1, 50]
    assert [r["i"] for r in all_records(wal.folder)] == list(range(51))


def test_a_dead_writer_thread_fails_appends_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoWriter(WriteAheadLog):
        def _run(self) -> None:
            return  # the thread ends at once: as if it had died

    with NoWriter.open(tmp_path / "a") as wal:
        assert wal._thread is not None
        wal._thread.join(5)
        with pytest.raises(LogWriteError, match="has no running writer thread"):
            wal.write(records(1), timeout=5)
        with pytest.raises(LogWriteError, match="has no running writer thread"):
            wal.roll().result(5)

    def bug(group: Any) -> None:
        raise RuntimeError("a bug in the writer")

    with WriteAheadLog.open(tmp_path / "b") as wal:
        monkeypatch.setattr(wal, "_commit", bug)
        with pytest.raises(LogWriteError, match="a bug in the writer"):
            wal.write(records(1), timeout=5)  # the append the thread died on
        with pytest.raises(LogWriteError, match="nothing is accepted until the process restarts"):
            wal.write(records(1), timeout=5)

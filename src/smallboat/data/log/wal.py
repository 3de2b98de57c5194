"""A durable append-only log of JSON records: segmented files, CRC-framed, group-committed.

The write-ahead log sits in front of the landing folder for anything that arrives one record at a
time and must not be lost once acknowledged: the event collector's hits and, later, the serving
layer's prediction log. `smallboat.data.log.compact` turns its closed segments into landing Parquet.

The segments' format, listing and locks live in `smallboat.data.log.segments`; this module is
the writer.

Durability: `append` hands its records to one writer thread, which takes every append pending at
that moment, writes them in one call, calls fsync ONCE, and only then resolves each append's
future (group commit): a caller that waits for its future knows its records are on disk, and many
concurrent callers share one fsync. Coroutines (`append_async`) wait on an asyncio future of their
own loop, which the writer resolves with ONE callback per loop and group: a group of 64 hits wakes
the serving event loop once, not 64 times through `asyncio.wrap_future`'s chain of callbacks.

A failed write or fsync (ENOSPC, EIO) poisons the log: the group being written and every append
queued behind it fail (none was acknowledged), and later appends are refused at once (the
collector answers 503, readiness says not ready). The writer thread then tries to recover every
`recover_seconds`, without restarting and without risking an acknowledged record:

1. The poisoned segment is never written again. Its acknowledged prefix (`_active_bytes`: every
   byte up to the last fsync that SUCCEEDED) was on disk when that fsync returned, and the log
   only appends, so nothing rewrote it. The bytes after it belong to appends that failed. They
   are never fsync'd again and never trusted: after a failed fsync Linux may mark the dirty pages
   clean while they still sit in the page cache, unwritten, so a second fsync can "succeed"
   without the data being on disk (PostgreSQL's "fsyncgate"), and a read would show bytes the disk
   does not have. So the recovery does not retry them: it truncates the segment to the
   acknowledged prefix and fsyncs the truncation. The segment is then closed and clean (a torn
   tail in a closed segment would read as corruption).
2. A probe write of `_PROBE_BYTES` to a scratch file, with fsync, must succeed: the disk takes
   writes again.
3. Only then a NEW segment is started (created and fsync'd with its folder) and appends are
   accepted again. A step that fails leaves the log refusing; the next try starts over at 1.

The one thing this cannot repair is a device that damaged bytes it had already written (an EIO
on a block shared by the acknowledged prefix and a failed write): the frames' CRCs show it at
compaction, which sets the segment aside as corrupt (`smallboat.data.log.segments`). A failure
that is not an OSError (a bug in the writer thread) is not recovered from: restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import math
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from smallboat.data.log.segments import (
    SEGMENT_MAGIC,
    SEGMENT_SUFFIX,
    WRITER_LOCK,
    Segment,
    describe_ranges,
    encode_frame,
    list_segments,
    payload_frame,
    scan_segment,
)
from smallboat.durable import fsync_dir
from smallboat.errors import SmallboatError

log = logging.getLogger(__name__)

_GROUP_MAX_BYTES = 8 << 20
"""Most bytes one group commit writes: bounds the writer's memory under a burst."""
_PROBE_BYTES = 64 << 10
"""What a recovery probe writes and fsyncs before the log takes appends again."""
PROBE_FILE = ".probe"


_FLAT = frozenset({str, int, bool, type(None)})
"""Value types whose orjson text is always byte for byte `encode_frame`'s."""
_FLAT_OR_FLOAT = _FLAT | {float}
_FLOAT_TEXT_SAME = 1e-4
"""orjson writes a float as the stdlib does (its shortest repr) when it is 0 or finite with
|x| >= 1e-4: below, the stdlib writes `1e-05` and orjson `0.00001` or `1e-7`; NaN and infinity
are the stdlib's `NaN` / `Infinity` and orjson's `null` (tests/unit/test_wal_frames.py)."""
_INF = math.inf


def frame(record: Mapping[str, Any]) -> bytes:
    """`encode_frame(record)`, the same bytes, with orjson (~7x faster) when every value is text,
    an integer, a boolean, null (what the collector logs) or a float orjson writes as the
    stdlib does (a prediction log's row: see `_FLOAT_TEXT_SAME`). Anything else, and what
    orjson refuses (an integer past 64 bits, a lone surrogate, a key that is not text), takes
    the stdlib's path: it writes or raises exactly as before."""
    values = record.values()
    if _FLAT.issuperset(map(type, values)) or (  # 2x `all(...)`: no generator
        _FLAT_OR_FLOAT.issuperset(map(type, values))
        and all([x == 0.0 or _FLOAT_TEXT_SAME <= abs(x) < _INF for x in values if type(x) is float])
    ):
        try:
            return payload_frame(orjson.dumps(record))
        except TypeError:  # orjson.JSONEncodeError
            pass
    return encode_frame(record)


class LogWriteError(SmallboatError):
    """The log could not make records durable (a failed write or fsync); it refuses appends
    until it recovers (see the module docstring)."""


@dataclass(frozen=True)
class LogStats:
    """Counters of one open log since it was opened."""

    appends: int
    records: int
    groups: int
    bytes: int
    active: Segment | None


@dataclass
class _Append:
    data: bytes
    records: int
    future: Future[int] | None = None
    """A blocking caller's (`append`, `write`), resolved by the writer thread."""
    waiter: asyncio.Future[int] | None = None
    """A coroutine's (`append_async`), resolved on its own event loop (`_settle`)."""

    def take(self) -> bool:
        """Mark it taken for writing; False when its caller gave up (cancelled) before: then it
        is dropped unwritten. A coroutine that gives up later gets no answer, but its records
        are written all the same (the `append_async` contract)."""
        if self.waiter is not None:
            return not self.waiter.cancelled()
        assert self.future is not None
        return self.future.set_running_or_notify_cancel()

    def unsettled(self) -> bool:
        """(When the writer thread died.) Whether it still needs an answer: then a blocking
        caller's future is marked running, ready for its exception."""
        if self.waiter is not None:
            return not self.waiter.done()  # `_settle_waiters` checks again, on the loop
        assert self.future is not None
        if self.future.done():
            return False
        return self.future.running() or self.future.set_running_or_notify_cancel()


def _encode(records: Sequence[Mapping[str, Any]]) -> bytes:
    """The frames of `records`, on the caller's thread (TypeError/ValueError for a record that
    is not JSON-serialisable: nothing of the call is queued)."""
    return b"".join([frame(r) for r in records])


def _settle(appends: Sequence[_Append], outcomes: Sequence[int | BaseException]) -> None:
    """Resolve taken appends with their outcomes (a segment id or an error): each blocking
    caller's future at once, the coroutines' waiters with one callback per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Any]]] = {}
    for append, outcome in zip(appends, outcomes, strict=True):
        if append.waiter is not None:
            by_loop.setdefault(append.waiter.get_loop(), []).append((append.waiter, outcome))
        elif isinstance(outcome, BaseException):
            assert append.future is not None
            append.future.set_exception(outcome)
        else:
            assert append.future is not None
            append.future.set_result(outcome)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these now
            loop.call_soon_threadsafe(_settle_waiters, waiters)


def _settle_waiters(waiters: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    """(On the waiters' loop.) A waiter cancelled meanwhile is skipped."""
    for waiter, outcome in waiters:
        if waiter.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


class WriteAheadLog:
    """The writing end of a log folder; open it with `WriteAheadLog.open(folder)`.

    `append(records)` returns a future that resolves, once the records are fsync'd, to the id of
    the segment holding them; `append_async` awaits the same from a coroutine and `write` blocks.
    Segments roll when the active one holds more than `segment_bytes`, or holds records older
    than `segment_seconds`, or on `roll()`.
    """

    def __init__(
        self,
        folder: Path,
        *,
        segment_bytes: int = 16 << 20,
        segment_seconds: float = 30.0,
        durable: bool = True,
        recover_seconds: float = 1.0,
    ) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.recover_seconds = recover_seconds
        self.recovered_bytes = 0
        """Torn-tail bytes truncated from the previous writer's last segment on open."""
        self.recoveries = 0
        """How often the log recovered from a failed write since it was opened."""
        self._recoverable = False
        self._durable = durable
        # SimpleQueue: put and get in C, a fifteenth of `queue.Queue`'s cost (every append
        # puts once, and the writer thread takes every item).
        self._queue: queue.SimpleQueue[_Append | Future[Segment | None] | None] = (
            queue.SimpleQueue()
        )
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._active: Segment | None = None
        self._active_bytes = 0
        self._active_first_write: float | None = None
        self._failed: BaseException | None = None
        self._closing = False
        self._state_lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._appends = self._records = self._groups = self._bytes = 0
        self._thread: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        folder: Path,
        *,
        segment_bytes: int = 16 << 20,
        segment_seconds: float = 30.0,
        durable: bool = True,
        recover_seconds: float = 1.0,
    ) -> WriteAheadLog:
        """Take the writer lock, truncate a torn tail, start a new segment and the writer thread.

        Raises SmallboatError when another process holds the folder's writer lock.
        """
        wal = cls(
            folder,
            segment_bytes=segment_bytes,
            segment_seconds=segment_seconds,
            durable=durable,
            recover_seconds=recover_seconds,
        )
        wal._open()
        return wal

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SmallboatError(
                f"the log at {self.folder} is already open for writing by process {holder}; "
                "stop that collector first (one writer per log folder)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        try:
            segments = list_segments(self.folder)
            if segments:
                self.recovered_bytes = self._truncate_torn_tail(segments[-1])
            self._start_segment(segments[-1].id if segments else 0)
        except BaseException:
            self._release_lock()
            raise
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def _truncate_torn_tail(self, segment: Segment) -> int:
        # Outside the compaction lock: a concurrent `collect compact` may delete the segment
        # (compacting its intact records) at any point here; then there is nothing to truncate.
        try:
            scan = scan_segment(segment.path)
            if scan.corrupt:
                # A valid frame follows bad bytes: corruption, not a torn write. Never truncate
                # it; it is closed now, and compaction lands its valid frames and sets it aside.
                log.error(
                    "%s is corrupt at %s; left as it is for compaction to quarantine",
                    segment.path,
                    describe_ranges(scan.bad_ranges(tail_is_torn=False)),
                )
                return 0
            if scan.torn_bytes == 0:
                return 0
            log.warning(
                "%s: truncating a torn tail of %d bytes after %d intact records",
                segment.path,
                scan.torn_bytes,
                len(scan.records),
            )
            with segment.path.open("r+b") as f:
                f.truncate(scan.valid_bytes)
                os.fsync(f.fileno())
        except FileNotFoundError:
            return 0
        return scan.torn_bytes

    def _start_segment(self, previous_id: int) -> Segment:
        """Create the next segment (durably) and make it the active one."""
        segment_id = max(previous_id + 1, time.time_ns() // 1000)
        name = f"{segment_id:020d}-{secrets.token_hex(4)}"
        path = self.folder / f"{name}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            if os.write(fd, SEGMENT_MAGIC) != len(SEGMENT_MAGIC):
                raise OSError(errno.ENOSPC, "short write of a segment header", str(path))
            if self._durable:
                os.fsync(fd)
                fsync_dir(self.folder)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)  # never leave a half-made segment behind
            raise
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        segment = Segment(segment_id, name, path)
        with self._state_lock:
            self._active = segment
        self._active_bytes = len(SEGMENT_MAGIC)
        self._active_first_write = None
        return segment

    # -- the caller's side ------------------------------------------------------------------

    def append(self, records: Sequence[Mapping[str, Any]]) -> Future[int]:
        """Queue records for the next group commit; the future resolves once they are on disk.

        Encoding happens here, on the caller's thread; a record that is not JSON-serialisable
        raises TypeError/ValueError at once and nothing of this call is queued.
        """
        return self.append_frames(_encode(records), len(records))

    def append_frames(self, frames: bytes, records: int) -> Future[int]:
        """`append` of records already encoded (`frame`'s bytes, `records` of them end to end):
        a caller that encodes as it goes hands the writer its bytes with no encoding here."""
        future: Future[int] = Future()
        refused = self._queue_append(_Append(frames, records, future=future))
        if refused is not None:
            future.set_exception(refused)
        return future

    def _queue_append(self, append: _Append) -> LogWriteError | None:
        """Queue `append`; the reason when it is refused (then nothing was queued)."""
        if self._failed is not None:
            return self._failure()
        with self._put_lock:  # nothing is queued behind close()'s sentinel
            refused = self._refusal()
            if refused is None:
                self._queue.put(append)
            return refused

    def write(self, records: Sequence[Mapping[str, Any]], timeout: float | None = None) -> int:
        """Append and wait until durable; returns the segment id holding the records."""
        return self.append(records).result(timeout)

    async def append_async(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Append from a coroutine; returns once the records are durable.

        Cancelling the awaiting task drops the records if the writer has not taken them yet;
        once it has, they are written all the same (either way the caller got no answer).
        Encoding happens here, as in `append`.
        """
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        refused = self._queue_append(_Append(_encode(records), len(records), waiter=waiter))
        if refused is not None:
            raise refused
        return await waiter

    def roll(self) -> Future[Segment | None]:
        """Close the active segment if it holds records; resolves to it (None when empty)."""
        future: Future[Segment | None] = Future()
        if self._failed is not None:
            future.set_exception(self._failure())
        else:
            with self._put_lock:
                refused = self._refusal()
                if refused is not None:
                    future.set_exception(refused)
                else:
                    self._queue.put(future)
        return future

    @property
    def active(self) -> Segment | None:
        with self._state_lock:
            return self._active

    def closed_segments(self) -> list[Segment]:
        """The segments older than the active one: complete and immutable."""
        active = self.active
        return [s for s in list_segments(self.folder) if active is None or s.id < active.id]

    @property
    def stats(self) -> LogStats:
        with self._state_lock:
            return LogStats(self._appends, self._records, self._groups, self._bytes, self._active)

    def refusal(self) -> LogWriteError | None:
        """Why an append would be refused now; None when the log is open and writable."""
        with self._put_lock:
            return self._refusal()

    def readiness_problem(self, min_free_bytes: int) -> LogWriteError | None:
        """Why this log is not ready to take records: a refusal (a failed write, a closed log),
        or a disk with fewer than `min_free_bytes` free; None when ready."""
        refused = self.refusal()
        if refused is not None or min_free_bytes <= 0:
            return refused
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError as exc:
            return LogWriteError(f"the disk of the log at {self.folder} cannot be read: {exc}")
        if free < min_free_bytes:
            return LogWriteError(
                f"the disk holding the log at {self.folder} has {free:,} bytes free, fewer than "
                f"SMALLBOAT_LOG_MIN_FREE_BYTES ({min_free_bytes:,}): free some space"
            )
        return None

    def close(self) -> None:
        """Write what is queued, stop the writer thread, release the writer lock."""
        if self._thread is None:
            return
        with self._put_lock:
            self._closing = True
            self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._release_lock()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _refusal(self) -> LogWriteError | None:
        """Why nothing can be queued now (None when it can); call under _put_lock."""
        if self._closing or self._thread is None:
            return LogWriteError(f"the log at {self.folder} is closed")
        if self._failed is not None:
            return self._failure()
        if not self._thread.is_alive():
            return LogWriteError(
                f"the log at {self.folder} has no running writer thread; nothing is accepted "
                "until the process restarts"
            )
        return None

    def _failure(self) -> LogWriteError:
        if self._recoverable:
            until = f"until a probe write succeeds (tried every {self.recover_seconds:g} s)"
        else:
            until = "until the process restarts"
        return LogWriteError(
            f"the log at {self.folder} failed to write ({self._failed}); nothing is accepted "
            f"{until}"
        )

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        taken: list[_Append | Future[Any]] = []  # the appends and rolls being handled
        try:
            self._loop(taken)
        except BaseException as exc:
            # A bug, not an I/O error (those poison the log in _commit): fail what was taken
            # and queued, and everything after, rather than leave callers waiting forever.
            log.exception("the writer thread of the log at %s died", self.folder)
            with self._put_lock:
                self._recoverable = False
                if self._failed is None:
                    self._failed = exc
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    taken.append(item)
            appends = [a for a in taken if isinstance(a, _Append)]
            failed = [a for a in appends if a.unsettled()]
            _settle(failed, [self._failure() for _ in failed])
            for future in taken:
                if isinstance(future, _Append):
                    continue
                # Only this thread moves a future to running or done; a waiter may cancel one
                # still pending, which set_running_or_notify_cancel then reports.
                if future.done():
                    continue
                if future.running() or future.set_running_or_notify_cancel():
                    future.set_exception(self._failure())

    def _loop(self, taken: list[_Append | Future[Any]]) -> None:
        while True:
            taken.clear()
            try:
                item = self._queue.get(timeout=self._wait_seconds())
            except queue.Empty:
                if self._failed is not None and self._recoverable:
                    self._try_recover()  # recover_seconds after the failure or the last try
                elif self._due_for_age_roll():
                    self._roll_now(None)
                continue
            group, rolls, stop = self._drain(item)
            taken.extend(group)
            taken.extend(rolls)
            self._commit(group)
            for future in rolls:
                self._roll_now(future)
            if self._due_for_age_roll():
                self._roll_now(None)
            if stop:
                return

    def _drain(
        self, item: _Append | Future[Segment | None] | None
    ) -> tuple[list[_Append], list[Future[Segment | None]], bool]:
        """`item` and everything queued behind it (up to _GROUP_MAX_BYTES): one group."""
        group: list[_Append] = []
        rolls: list[Future[Segment | None]] = []
        stop = False
        size = 0
        while True:
            if item is None:
                stop = True
            elif isinstance(item, _Append):
                group.append(item)
                size += len(item.data)
            else:
                rolls.append(item)
            if size >= _GROUP_MAX_BYTES:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return group, rolls, stop

    def _wait_seconds(self) -> float | None:
        if self._failed is not None and self._recoverable:
            return self.recover_seconds
        if self._active_first_write is None:
            return None
        return max(0.0, self._active_first_write + self.segment_seconds - time.monotonic())

    def _due_for_age_roll(self) -> bool:
        first = self._active_first_write
        return (
            self._failed is None
            and first is not None
            and time.monotonic() - first >= self.segment_seconds
        )

    def _fail(self, exc: BaseException, what: str) -> None:
        """Poison the log (the writer thread only); an OSError can be recovered from."""
        if self._failed is None:
            log.error("the log at %s failed to %s (%s); refusing appends", self.folder, what, exc)
            with self._put_lock:
                self._recoverable = isinstance(exc, OSError)
                self._failed = exc

    def _try_recover(self) -> None:
        """Close the poisoned segment at its acknowledged prefix, probe, start a new segment
        (the module docstring says why in this order); on failure stay poisoned."""
        assert self._fd is not None and self._active is not None
        try:
            os.ftruncate(self._fd, self._active_bytes)
            if self._durable:
                os.fsync(self._fd)
            self._probe()
            self._start_segment(self._active.id)
        except OSError as exc:
            log.debug("the log at %s is still failing: %s", self.folder, exc)
            return
        with self._put_lock:
            cause, self._failed = self._failed, None
        self.recoveries += 1
        log.warning("the log at %s writes again (it had failed: %s)", self.folder, cause)

    def _probe(self) -> None:
        path = self.folder / PROBE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(bytes(_PROBE_BYTES))
            while view:
                view = view[os.write(fd, view) :]
            if self._durable:
                os.fsync(fd)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def _commit(self, group: list[_Append]) -> None:
        """Write a group with one fsync, then resolve its futures (or fail them all).

        An append whose caller gave up before (`_Append.take`) is dropped unwritten.
        """
        group = [a for a in group if a.take()]
        if not group:
            return
        if self._failed is not None:
            _settle(group, [self._failure() for _ in group])
            return
        data = b"".join(a.data for a in group)
        if (
            self._active_bytes + len(data) > self.segment_bytes
            and self._active_first_write is not None
        ):
            self._roll_now(None)
        try:
            if self._failed is not None:
                raise self._failed
            assert self._fd is not None and self._active is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self._durable:
                os.fdatasync(self._fd)
        except BaseException as exc:
            self._fail(exc, "write")
            _settle(group, [self._failure() for _ in group])
            return
        segment_id = self._active.id
        self._active_bytes += len(data)
        if self._active_first_write is None:
            self._active_first_write = time.monotonic()
        with self._state_lock:
            self._appends += len(group)
            self._records += sum(a.records for a in group)
            self._groups += 1
            self._bytes += len(data)
        _settle(group, [segment_id] * len(group))

    def _roll_now(self, future: Future[Segment | None] | None) -> None:
        closed = self._active if self._active_first_write is not None else None
        try:
            if closed is not None and self._failed is None:
                self._start_segment(closed.id)
        except BaseException as exc:
            self._fail(exc, "start a new segment")
        if future is None or not future.set_running_or_notify_cancel():
            return
        if self._failed is not None:
            future.set_exception(self._failure())
        else:
            future.set_result(closed)

"""A write-ahead log's segments on disk: their format, listing, reading, and the folder's locks.

This is all a reader needs (`smallboat.data.log.compact`, a state rebuild);
`smallboat.data.log.wal` is the writer that fills the segments.

On disk, a log is a folder of segments named `<id:020d>-<token>.wal`, ordered by id. A segment
starts with an 8-byte header (SEGMENT_MAGIC) and holds frames:

    magic (2 bytes) | payload length (u32 LE) | CRC32 of length + payload (u32 LE) | payload

where the payload is one record as compact UTF-8 JSON.

Torn tail or corruption: a frame that is cut short, fails its CRC or lacks the magic is bad. The
reader then scans forward for the next valid frame (magic, a plausible length, a matching CRC, a
JSON object). When one follows, the bytes in between are CORRUPTION (a bad sector, a bit flip):
no crash can put a valid frame after a torn write, since a writer appends in order. When none
follows, the bad bytes are a tail (`SegmentScan.tail_start`); only the last segment of a log
whose writer is not running can legitimately have one (a torn write, or the zero-filled blocks a
file system may leave after a power loss): `WriteAheadLog.open` truncates it there. A tail in any
other segment is corruption too. A corrupt segment is never truncated or deleted: compaction lands
every valid frame of it and then sets it aside in `quarantine/` (see `quarantine_segment`).

Segments: only the process holding the folder's writer lock (`writer.lock`, flock) appends, and
only to the segment it created; every `open` starts a new segment, and the writer rolls to a new
one when the active one exceeds a size or an age. A segment that is not the live writer's active
one is closed and never changes again, which is what lets compaction read it more than once and
get the same records each time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallboat.durable import fsync_dir
from smallboat.errors import DataError, SmallboatError
from smallboat.web.jsontext import loads

SEGMENT_MAGIC = b"SBWAL\x00\x01\n"
"""The first 8 bytes of every segment: names the format and its version."""
FRAME_MAGIC = b"\xb5\x0b"
"""The first 2 bytes of every frame: zero-filled or foreign bytes never look like a frame."""
_FRAME_HEADER = struct.Struct("<2sII")
_LENGTH = struct.Struct("<I")
MAX_RECORD_BYTES = 16 << 20
"""A frame announcing a longer payload is treated as torn, not allocated."""
SEGMENT_SUFFIX = ".wal"
WRITER_LOCK = "writer.lock"
COMPACT_LOCK = "compact.lock"
QUARANTINE_DIR = "quarantine"
"""Where compaction sets corrupt segments aside (in the log folder), each with a `.json` note."""
_SEGMENT_NAME = re.compile(r"^(\d{20})-([0-9a-f]{8})\.wal$")


@dataclass(frozen=True, order=True)
class Segment:
    """One segment file of a log; `name` (the file's stem) is unique for the log's lifetime."""

    id: int
    name: str
    path: Path


@dataclass(frozen=True)
class SegmentScan:
    """What a segment holds: its valid records in order, its bad byte ranges, its size.

    `corrupt` lists the [start, end) ranges of bad bytes that a valid frame follows (always
    corruption); `tail_start` is where bad bytes that no valid frame follows begin (`size` when
    the segment ends cleanly): a torn tail in a log's last segment, corruption anywhere else.
    """

    records: list[dict[str, Any]]
    tail_start: int
    size: int
    corrupt: tuple[tuple[int, int], ...] = ()

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last valid frame that no valid frame follows (0 when clean)."""
        return self.size - self.tail_start

    @property
    def valid_bytes(self) -> int:
        """Where the tail starts: what the segment is truncated to when the tail is torn."""
        return self.tail_start

    def bad_ranges(self, *, tail_is_torn: bool) -> list[tuple[int, int]]:
        """The corrupt byte ranges, including the tail unless it may be a torn write."""
        ranges = list(self.corrupt)
        if self.torn_bytes and not tail_is_torn:
            ranges.append((self.tail_start, self.size))
        return ranges


def encode_frame(record: Mapping[str, Any]) -> bytes:
    """One record as a frame (compact JSON payload)."""
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return payload_frame(payload)


def payload_frame(payload: bytes) -> bytes:
    """A frame around a record's JSON payload (`encode_frame`'s bytes)."""
    length = _LENGTH.pack(len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length))
    return _FRAME_HEADER.pack(FRAME_MAGIC, len(payload), crc) + payload


def _parse_segment_name(path: Path) -> Segment | None:
    match = _SEGMENT_NAME.match(path.name)
    if match is None:
        return None
    return Segment(int(match.group(1)), path.name[: -len(SEGMENT_SUFFIX)], path)


def list_segments(folder: Path) -> list[Segment]:
    """Every segment in `folder`, oldest first (an empty list when the folder does not exist)."""
    if not folder.is_dir():
        return []
    segments = [s for p in folder.iterdir() if (s := _parse_segment_name(p)) is not None]
    return sorted(segments)


def scan_segment(path: Path) -> SegmentScan:
    """Read a segment: every valid frame's record, the corrupt ranges between them, the tail.

    A file shorter than the header (a crash right after it was created) holds no records. A file
    whose header is not SEGMENT_MAGIC is not a segment of this format: a DataError.
    """
    data = path.read_bytes()
    if len(data) < len(SEGMENT_MAGIC):
        if SEGMENT_MAGIC.startswith(data):
            return SegmentScan([], 0, len(data))
        raise DataError(f"{path} is not a smallboat log segment (its header is {data[:8]!r})")
    if not data.startswith(SEGMENT_MAGIC):
        raise DataError(
            f"{path} is not a smallboat log segment: it starts with {data[:8]!r}, "
            f"expected {SEGMENT_MAGIC!r}"
        )
    records: list[dict[str, Any]] = []
    corrupt: list[tuple[int, int]] = []
    pos = len(SEGMENT_MAGIC)
    end = len(data)
    while pos < end:
        frame = _frame_at(data, pos)
        if frame is not None:
            record, pos = frame
            records.append(record)
            continue
        resync = _next_frame(data, pos + 1)
        if resync is None:
            break  # a tail: no valid frame follows the bad bytes
        corrupt.append((pos, resync))
        pos = resync
    return SegmentScan(records, pos, end, tuple(corrupt))


def _frame_at(data: bytes, pos: int) -> tuple[dict[str, Any], int] | None:
    """The record of a valid frame starting at `pos` and where the next frame starts, or None.

    Valid means: the magic, a length within MAX_RECORD_BYTES and the file, a CRC over length and
    payload that matches, and a payload that is a JSON object. The CRC alone decides a payload
    whose bytes changed but still parse (a flipped digit).
    """
    header = _FRAME_HEADER.size
    if pos + header > len(data):
        return None
    magic, length, crc = _FRAME_HEADER.unpack_from(data, pos)
    if magic != FRAME_MAGIC or length > MAX_RECORD_BYTES or pos + header + length > len(data):
        return None
    payload = data[pos + header : pos + header + length]
    if zlib.crc32(payload, zlib.crc32(_LENGTH.pack(length))) != crc:
        return None
    try:
        record = loads_payload(payload)
    except ValueError:
        return None  # a CRC collision on garbage: as bad as a bad CRC
    if not isinstance(record, dict):
        return None
    return record, pos + header + length


def loads_payload(payload: bytes) -> Any:
    """`json.loads(payload)`, the same value or the same ValueError, with orjson where the two
    agree (a third less CPU per record of `scan_segment`; `web.jsontext`)."""
    return loads(payload)


def _next_frame(data: bytes, start: int) -> int | None:
    """The offset of the first valid frame at or after `start`, or None (a tail)."""
    pos = data.find(FRAME_MAGIC, start)
    while pos != -1:
        if _frame_at(data, pos) is not None:
            return pos
        pos = data.find(FRAME_MAGIC, pos + 1)
    return None


def writer_is_live(folder: Path) -> bool:
    """Whether a process holds `folder`'s writer lock (and so may be appending to its last
    segment). Works across processes and within the writer's own process."""
    lock_path = folder / WRITER_LOCK
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def closed_segments(folder: Path) -> list[Segment]:
    """The segments that will never change again: all but a live writer's active (last) one.

    The listing comes before the lock check: a writer that starts in between creates a NEWER
    segment, so at worst a closed segment is held back until the next call.
    """
    segments = list_segments(folder)
    if segments and writer_is_live(folder):
        segments = segments[:-1]
    return segments


@contextlib.contextmanager
def compaction_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s compaction lock: one compactor (or state rebuild) at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / COMPACT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def state_lock(state_path: Path) -> Iterator[None]:
    """Hold the lock of a compaction state database (`<state>.lock`): one landing pass at a time
    over every log that shares it, so a key two logs hold is checked and recorded atomically."""
    state_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_path.with_name(state_path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_slot_claims: list[int] = []
"""Descriptors of the worker slots this process claimed: held open (locked) until it exits."""


def claim_worker_slot(folder: Path, replica: str, workers: int) -> str:
    """The first free slot of `<replica>-w0` .. `<replica>-w<workers-1>` for this process.

    Worker processes sharing one port each need a log of their own: a worker claims its slot with
    an exclusive lock on `<folder>/<slot>.claim`, held while the process lives, so a restarted
    worker takes the one its predecessor left. Raises SmallboatError when every slot is held.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(workers):
        slot = f"{replica}-w{i}"
        claim = os.open(folder / f"{slot}.claim", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(claim)
            continue
        _slot_claims.append(claim)
        return slot
    raise SmallboatError(
        f"every worker slot {replica}-w0..w{workers - 1} in {folder} is held by a live process"
    )


@dataclass(frozen=True)
class QuarantinedSegment:
    """A corrupt segment set aside: where it is now, its bad byte ranges, the records it gave."""

    path: Path
    ranges: tuple[tuple[int, int], ...]
    records: int

    def describe(self) -> str:
        """One line: the file, its bad byte ranges, what was recovered."""
        return (
            f"{self.path}: corrupt at {describe_ranges(self.ranges)}; "
            f"{self.records:,} intact record(s) recovered"
        )


def describe_ranges(ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> str:
    """`bytes 120-124` (end exclusive), `bytes 120-124, 900-1000`, at most three then a count."""
    shown = ", ".join(f"{start}-{end}" for start, end in ranges[:3])
    more = f" and {len(ranges) - 3} more range(s)" if len(ranges) > 3 else ""
    return f"bytes {shown}{more}"


def quarantine_segment(
    segment: Segment, ranges: list[tuple[int, int]], records: int
) -> QuarantinedSegment:
    """Move a corrupt segment, whole and unchanged, to the log's `quarantine/` folder.

    A note `<name>.json` (its byte ranges, the records recovered) is written first, then the
    segment is renamed beside it; both folders are fsync'd. Nothing is truncated or deleted.
    """
    folder = segment.path.parent / QUARANTINE_DIR
    folder.mkdir(exist_ok=True)
    note = folder / f"{segment.name}.json"
    temp = folder / f".{segment.name}.json.tmp"
    body = {
        "segment": segment.path.name,
        "ranges": [list(r) for r in ranges],
        "records_recovered": records,
        "quarantined_at_ms": int(time.time() * 1000),
    }
    with temp.open("w", encoding="utf-8") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, note)
    target = folder / segment.path.name
    os.replace(segment.path, target)
    fsync_dir(folder)
    fsync_dir(segment.path.parent)
    return QuarantinedSegment(target, tuple(ranges), records)


def quarantined_segments(folder: Path) -> list[QuarantinedSegment]:
    """The segments set aside in `folder`'s quarantine, oldest first, with their notes."""
    quarantine = folder / QUARANTINE_DIR
    if not quarantine.is_dir():
        return []
    found: list[QuarantinedSegment] = []
    for path in sorted(quarantine.glob(f"*{SEGMENT_SUFFIX}")):
        ranges: tuple[tuple[int, int], ...] = ()
        records = 0
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            note = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            ranges = tuple((int(a), int(b)) for a, b in note["ranges"])
            records = int(note["records_recovered"])
        found.append(QuarantinedSegment(path, ranges, records))
    return found

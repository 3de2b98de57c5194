"""A write-ahead log's segments on disk: their format, listing, reading, and the folder's locks.

This is all a reader needs (`smallboat.data.log.compact`, a state rebuild);
`smallboat.data.log.wal` is the writer that fills the segments.

On disk, a log is a folder of segments named `<id:020d>-<token>.wal`, ordered by id. A segment
starts with an 8-byte header (SEGMENT_MAGIC) and holds frames:

    magic (2 bytes) | payload length (u32 LE) | CRC32 of length + payload (u32 LE) | payload

where the payload is one record as compact UTF-8 JSON. A frame that is cut short, fails its CRC or
lacks the magic (a torn write, or the zero-filled blocks a file system may leave after a power
loss) ends the segment's valid prefix: readers stop there, and `WriteAheadLog.open` truncates the
last segment to it.

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
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallboat.errors import DataError

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
_SEGMENT_NAME = re.compile(r"^(\d{20})-([0-9a-f]{8})\.wal$")


@dataclass(frozen=True, order=True)
class Segment:
    """One segment file of a log; `name` (the file's stem) is unique for the log's lifetime."""

    id: int
    name: str
    path: Path


@dataclass(frozen=True)
class SegmentScan:
    """What a segment holds: its records in order, where its valid prefix ends, its size."""

    records: list[dict[str, Any]]
    valid_bytes: int
    size: int

    @property
    def torn_bytes(self) -> int:
        """Bytes after the valid prefix (a torn tail; 0 for a cleanly written segment)."""
        return self.size - self.valid_bytes


def encode_frame(record: Mapping[str, Any]) -> bytes:
    """One record as a frame (compact JSON payload)."""
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
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
    """Read a segment's valid prefix: its records up to the first torn or corrupt frame.

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
    pos = len(SEGMENT_MAGIC)
    end = len(data)
    header = _FRAME_HEADER.size
    while pos + header <= end:
        magic, length, crc = _FRAME_HEADER.unpack_from(data, pos)
        if magic != FRAME_MAGIC or length > MAX_RECORD_BYTES or pos + header + length > end:
            break
        payload = data[pos + header : pos + header + length]
        if zlib.crc32(payload, zlib.crc32(_LENGTH.pack(length))) != crc:
            break
        try:
            record = json.loads(payload)
        except ValueError:
            break  # a CRC collision on garbage: as torn as a bad CRC
        if not isinstance(record, dict):
            break
        records.append(record)
        pos += header + length
    return SegmentScan(records, pos, end)


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

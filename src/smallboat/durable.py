"""Small OS facts every part needs when it writes state durably: fsync by path, and whether the
process that left a file behind still runs."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by its path (a file whose writer closed it, a folder's entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename, creation or deletion in `folder` durable by fsyncing the folder itself."""
    fsync_path(folder)


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux's /proc/<pid>/stat field 22),
    or None where that is unknown (no such process, or no /proc). A pid and its start time name
    one process: a later process given the same pid starts later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None

"""The running collector's background compaction, in a process of its own.

A compaction pass reads segments, builds Arrow tables and writes Parquet: CPU-heavy Python that,
on a thread of the collector's process, held the GIL for most of a pass and so took the request
path's core (at a paced 1,000 hits/s the collector burned a whole core while it landed an
earlier burst; the pass after 300,000 batched events took 20 s). So `EventStore.open` starts this
child process instead (`python -m smallboat.collect.compactor`: a fresh interpreter, so neither a
fork of a process that runs threads nor multiprocessing's re-import of the caller's main
module), at a lower CPU priority (`COMPACTOR_NICE`), so that on a busy machine the request path
comes first and compaction takes the CPU that is left; it catches up when traffic falls. It
shows as `collect-compact` in `ps` and `top`.

Exactly-once does not depend on which process compacts: every pass holds the state's lock and
the log's compaction lock, and a pass cut short anywhere is repaired by the next
(`smallboat.data.log.compact`). The child reads its settings from its stdin, then waits on it:
it stops after its current pass when the store closes that pipe, and likewise when the
collector's process dies (the kernel closes the pipe), so no compactor outlives its collector.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from smallboat.collect.compaction import compact_events
from smallboat.config import Settings
from smallboat.data.log.compact import CorruptSegmentError

log = logging.getLogger(__name__)

COMPACTOR_NICE = 10
"""How much lower the compactor's CPU priority is than the collector's: under Linux's scheduler
a nice-10 process gets about a tenth of a core that a nice-0 one also wants, and all of an idle
one."""
COMPACTOR_NAME = "collect-compact"
"""The child's process name (`/proc/<pid>/comm`, at most 15 characters): `ps`, `top` and the
benchmark tell the compactor from the collector by it."""
STOP_SECONDS = 60.0
"""How long closing the store waits for the current pass; then the child is killed (safe: the
next pass repairs a pass cut short)."""


class BackgroundCompactor:
    """A child process that compacts every replica's closed segments every
    `collect_compact_seconds` (`start`), until `stop`."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @classmethod
    def start(cls, settings: Settings) -> BackgroundCompactor:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, close_fds=True
        )
        assert process.stdin is not None
        try:
            process.stdin.write(pickle.dumps(settings))
            process.stdin.flush()
        except BaseException:
            process.kill()
            process.wait()
            raise
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it ended (negative: the signal that ended it)."""
        return self._process.returncode

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Ask the child to stop after its current pass; kill it if that takes over `timeout`."""
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):  # it is gone already (a broken pipe on the flush)
            self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("background compaction did not stop within %g s; killing it", timeout)
            self._process.kill()
            self._process.wait()


def run(settings: Settings, parent: IO[bytes]) -> None:
    """The child's loop: a pass every `collect_compact_seconds`, until `parent` (its stdin)
    closes: the store stopped it, or the collector died."""
    while True:
        readable, _, _ = select.select([parent], [], [], settings.collect_compact_seconds)
        if readable:
            return  # end of file: nothing else is ever written
        compact_once(settings)


def compact_once(settings: Settings) -> None:
    """One pass over every replica's closed segments (a replica that died is landed by the
    others); failures are logged, and the next pass tries again."""
    try:
        report = compact_events(settings)
    except CorruptSegmentError as exc:
        log.error("%s", exc)  # the rest of the log was compacted
        return
    except Exception:
        log.exception("background compaction failed; retrying in the next pass")
        return
    if report.segments:
        log.info("%s", report.render())


def main() -> None:
    """The child process: settings from stdin (pickled by `BackgroundCompactor.start`)."""
    with contextlib.suppress(OSError):  # not Linux: the name is only a convenience
        Path("/proc/self/comm").write_text(COMPACTOR_NAME)
    os.nice(COMPACTOR_NICE)
    # Ctrl-C reaches the whole process group: the collector stops the compactor itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    settings = pickle.load(stdin)  # written by our parent, through a private pipe
    if not isinstance(settings, Settings):
        raise SystemExit(f"{__name__}: expected pickled Settings on stdin, got {type(settings)}")
    run(settings, stdin)


if __name__ == "__main__":
    main()

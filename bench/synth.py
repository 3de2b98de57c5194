"""Benchmark of the synthetic generator at small scale: seconds to synthesize N sessions in process.

The figure the unit tests used to assert (1,000 sessions in under 2.5 s) lives here, where a slow
shared machine makes a slow run, not a failed test. One warm-up run (imports, caches), then
`--repeat` timed runs with different seeds; prints each run, the median and sessions per second
beside the target.

    .venv/bin/python bench/synth.py
    .venv/bin/python bench/synth.py --sessions 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TARGET_SECONDS_PER_1000 = 2.5
"""About a second on a laptop core; the target leaves room for a busy machine."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from smallboat.data.synth.generate import SynthConfig, synthesize

    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        root = Path(tmp)
        synthesize(SynthConfig(sessions=args.sessions, seed=0), root / "warm")
        seconds = []
        for i in range(args.repeat):
            start = time.perf_counter()
            synthesize(SynthConfig(sessions=args.sessions, seed=1 + i), root / f"run-{i}")
            seconds.append(time.perf_counter() - start)
            print(f"run {i + 1}: {seconds[-1]:.3f} s", flush=True)
    median = statistics.median(seconds)
    target = TARGET_SECONDS_PER_1000 * args.sessions / 1_000
    verdict = "within" if median < target else "OVER"
    print(
        f"synthesize {args.sessions:,} sessions: median {median:.3f} s over {args.repeat} runs "
        f"({args.sessions / median:,.0f} sessions/s); target < {target:.2f} s: {verdict}"
    )


if __name__ == "__main__":
    main()

"""Full-scale benchmark of the Foundation path: synth -> load -> transform, one stage at a time.

Each stage runs as its own child process (the real CLI), so its wall time and peak RSS are its own.
Prints a table of seconds, peak RSS and rows/s beside the targets of issue 2.

    .venv/bin/python bench/pipeline.py --sessions 4934699 --workdir bench/out/full
    .venv/bin/python bench/pipeline.py --sessions 200000 --stages synth,load
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass
class StageResult:
    name: str
    seconds: float
    peak_rss_mb: float
    rows: int | None = None

    @property
    def rows_per_s(self) -> float | None:
        return None if self.rows is None else self.rows / self.seconds


def run_stage(name: str, argv: list[str], env: dict[str, str]) -> StageResult:
    """Run one CLI command as a child and measure its wall time and peak RSS (os.wait4)."""
    print(f"-> {name}: {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"stage {name} failed with exit status {os.waitstatus_to_exitcode(status)}"
        )
    return StageResult(name, seconds, usage.ru_maxrss / 1024)


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=4_934_699, help="sessions to synthesize")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/pipeline"))
    parser.add_argument("--stages", default="synth,load,transform", help="comma-separated subset")
    parser.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    args = parser.parse_args()
    stages = set(args.stages.split(","))

    data, home = args.workdir / "data", args.workdir / "home"
    env = {**os.environ, "SMALLBOAT_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    results: list[StageResult] = []
    smallboat = str(BIN / "smallboat")
    if "synth" in stages:
        shutil.rmtree(data, ignore_errors=True)
        res = run_stage(
            "synth",
            [
                smallboat,
                "data",
                "synth",
                "--sessions",
                str(args.sessions),
                "--seed",
                str(args.seed),
                "--out",
                str(data),
            ],
            env,
        )
        res.rows = count_lines(data / "browsing_train.csv")
        results.append(res)
    if "load" in stages:
        shutil.rmtree(home, ignore_errors=True)
        res = run_stage("load", [smallboat, "data", "load", str(data), "--format", "coveo"], env)
        res.rows = sum(count_lines(p) for p in data.glob("*.csv"))
        results.append(res)
    if "transform" in stages:
        results.append(run_stage("transform", [smallboat, "transform"], env))
        results.append(run_stage("summary", [smallboat, "warehouse", "summary"], env))

    targets = {
        "synth": "<= 600 s, <= 4096 MB",
        "load": ">= 1,000,000 rows/s, <= 4096 MB",
        "transform": "<= 180 s",
        "summary": "",
    }
    print(f"\nsessions: {args.sessions:,}   cores: {os.cpu_count()}")
    print(f"{'stage':<10} {'seconds':>9} {'peak RSS MB':>12} {'rows':>13} {'rows/s':>12}   target")
    for r in results:
        rows = f"{r.rows:,}" if r.rows is not None else ""
        rate = f"{r.rows_per_s:,.0f}" if r.rows_per_s is not None else ""
        line = f"{r.name:<10} {r.seconds:>9.1f} {r.peak_rss_mb:>12.0f} {rows:>13} {rate:>12}"
        print(f"{line}   {targets[r.name]}")
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

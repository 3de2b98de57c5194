"""Benchmark `smallboat data load` on Coveo-format CSVs, against the reference's pandas approach.

1. Gets a folder of Coveo CSVs: --data, or generates one with the synthetic generator
   (`smallboat.data.synth.generate`; a plain browsing-only generator below stands in if it is
   missing).
2. Loads the whole folder with `load_path` in a child process: rows/s and peak RSS (the child's
   own rusage from os.wait4, i.e. getrusage(RUSAGE_CHILDREN) of a parent with that one child).
3. On the first --compare-rows rows of browsing_train.csv (2,000,000 by default), times the same
   load and the reference's way: whole-file `pd.read_csv`, sort by session and time, a Python
   loop over rows building each session's list of actions; prints the speed ratio.

Targets at full scale (36M browsing rows, 2 cores): >= 1,000,000 rows/s, peak RSS <= 4 GB.

    .venv/bin/python bench/load.py --sessions 30000           # ~220k browsing rows, a few seconds
    .venv/bin/python bench/load.py --data /path/to/coveo --workdir /tmp/bench-load
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BROWSING = "browsing_train.csv"
RSS_TARGET_MB = 4096
RATE_TARGET = 1_000_000


@dataclass
class Run:
    """One measured child process."""

    name: str
    rows: int
    seconds: float
    peak_rss_mb: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# --- children: each runs in a fresh interpreter so its peak RSS is its own ----------------------


def child_load(data: Path, home: Path) -> dict[str, float]:
    """Load `data` into a fresh smallboat home; the timed part is `load_path` alone."""
    from smallboat.config import Settings
    from smallboat.data.land.load import load_path

    settings = Settings(home=home)
    start = time.perf_counter()
    summary = load_path(data, source="coveo", on_bad_rows="fail", settings=settings)
    return {"rows": summary.rows_read, "seconds": time.perf_counter() - start}


def child_pandas(data: Path) -> dict[str, float]:
    """The reference: read everything, sort, then walk the rows in Python into sessions."""
    import pandas as pd

    start = time.perf_counter()
    frame = pd.read_csv(data / BROWSING)
    frame = frame.sort_values(["session_id_hash", "server_timestamp_epoch_ms"])
    sessions: dict[str, list[str]] = {}
    for row in frame.itertuples(index=False):
        action = row.product_action if isinstance(row.product_action, str) else row.event_type
        sessions.setdefault(row.session_id_hash, []).append(action)
    return {"rows": len(frame), "seconds": time.perf_counter() - start}


def run_load(name: str, data: Path, home: Path) -> Run:
    """Load `data` into a fresh home (an old one would answer "already loaded")."""
    shutil.rmtree(home, ignore_errors=True)
    return run_child(name, ["load", str(data), str(home)])


def run_child(name: str, args: list[str]) -> Run:
    """Run this script as a child in `--child` mode; time and peak RSS come from the child.

    Linux copies a parent's peak RSS into a forked child, so the parent must stay small: all the
    heavy work (generating included) happens in children.
    """
    argv = [sys.executable, __file__, "--child", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)})")
    result = json.loads(out.strip().splitlines()[-1])
    return Run(name, int(result["rows"]), float(result["seconds"]), usage.ru_maxrss / 1024)


# --- data -----------------------------------------------------------------------------------------


def generate(out: Path, sessions: int) -> None:
    """Coveo-format CSVs from the synthetic generator, or a browsing file alone without it."""
    try:
        from smallboat.data.synth.generate import SynthConfig, synthesize
    except ImportError:
        write_plain_browsing(out / BROWSING, rows=sessions * 7)
        return
    synthesize(SynthConfig(sessions=sessions, seed=0), out)


def write_plain_browsing(path: Path, *, rows: int, seed: int = 0) -> None:
    """A browsing_train.csv with the release's columns and text formats (no behaviour model)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)

    def hashes(pool: int, n: int) -> pa.Array:
        ids = np.array([rng.bytes(32).hex() for _ in range(pool)], dtype=object)
        return pa.array(ids[rng.integers(0, pool, n)], pa.string())

    product = pa.array(rng.random(rows) < 0.29)
    actions = pa.array(["detail", "add", "remove", "purchase"])
    action = actions.take(pa.array(rng.choice(4, rows, p=[0.93, 0.032, 0.03, 0.008])))
    nothing = pa.scalar(None, pa.string())
    table = pa.table(
        {
            "session_id_hash": hashes(max(rows // 7, 1), rows),
            "event_type": pc.if_else(product, "event_product", "pageview"),
            "product_action": pc.if_else(product, action, nothing),
            "product_sku_hash": pc.if_else(product, hashes(57_483, rows), nothing),
            "server_timestamp_epoch_ms": 1_547_510_400_000 + rng.integers(0, 90 * 86_400_000, rows),
            "hashed_url": hashes(max(rows // 3, 1), rows),
        }
    )
    with path.open("wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def head_rows(source: Path, target: Path, rows: int) -> int:
    """Copy the header and the first `rows` data lines of `source`; returns the lines copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with source.open("rb") as src, target.open("wb") as dst:
        dst.write(src.readline())
        for line in src:
            if copied == rows:
                break
            dst.write(line)
            copied += 1
    return copied


def report(runs: list[Run], *, compared: bool) -> None:
    """Print the runs, the verdict against the targets and the ratio to pandas."""
    print(f"\n{'run':<34}{'rows':>12}{'seconds':>10}{'rows/s':>13}{'peak RSS MB':>13}")
    for run in runs:
        figures = f"{run.rows:>12,}{run.seconds:>10.2f}{run.rows_per_s:>13,.0f}"
        print(f"{run.name:<34}{figures}{run.peak_rss_mb:>13,.0f}")
    full = runs[0]
    fast, lean = full.rows_per_s >= RATE_TARGET, full.peak_rss_mb <= RSS_TARGET_MB
    print(
        f"\ntarget at full scale: >= {RATE_TARGET:,} rows/s ({'met' if fast else 'not met'} here), "
        f"<= {RSS_TARGET_MB:,} MB peak RSS ({'met' if lean else 'not met'} here); small runs pay "
        "a fixed start-up cost (~0.2 s per process) that weighs on their rate"
    )
    if compared:
        ours, pandas = runs[1], runs[2]
        print(f"speed-up over pandas on the same rows: {pandas.seconds / ours.seconds:.1f}x")


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder of Coveo CSVs (default: generate one)")
    parser.add_argument("--sessions", type=int, default=30_000, help="sessions to generate")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument(
        "--compare-rows", type=int, default=2_000_000, help="browsing rows for the pandas race"
    )
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas comparison")
    parser.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # a measured child: print one JSON line and exit
        kind, *rest = args.child
        if kind == "load":
            result = child_load(Path(rest[0]), Path(rest[1]))
        elif kind == "pandas":
            result = child_pandas(Path(rest[0]))
        else:
            start = time.perf_counter()
            generate(Path(rest[0]), int(rest[1]))
            result = {"rows": int(rest[1]), "seconds": time.perf_counter() - start}
        print(json.dumps(result))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = args.data
        if data is None:
            data = workdir / "data"
            made = run_child("generate", ["synth", str(data), str(args.sessions)])
            print(f"generated {args.sessions:,} sessions in {made.seconds:.1f} s: {data}")
        sizes = {p.name: p.stat().st_size for p in sorted(data.glob("*.csv"))}
        print("files:", ", ".join(f"{name} {size / 1e6:,.1f} MB" for name, size in sizes.items()))

        runs = [run_load("load (all files)", data, workdir / "home-all")]
        if not args.no_pandas:
            head = workdir / "head"
            n = head_rows(data / BROWSING, head / BROWSING, args.compare_rows)
            runs.append(run_load(f"load ({n:,} browsing rows)", head, workdir / "home-head"))
            runs.append(run_child(f"pandas ({n:,} browsing rows)", ["pandas", str(head)]))
        report(runs, compared=not args.no_pandas)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The learning curve: test ROC-AUC of the trained model, the Bayes-optimal oracle and the count
baseline at several synthetic data sizes (issue 18's targets: gap to the oracle <= 0.05 at 20k
sessions, <= 0.015 at 50k, <= 0.006 at 500k, <= 0.003 at full scale; never below the count
baseline).

For each size: synthesize -> load -> transform (reused when the work folder has them), then the
whole TrainFlow through the Runner (default grid, the oracle scored on the same test split), with
session-bootstrap 95% intervals. Prints a Markdown table, writes the rows as JSON (--out) and
each point into the curve file every TrainFlow card reads (`smallboat.model.curve`; run each size
as its own invocation, the file merges them by size).

    for n in 20000 50000 200000 500000; do
        flock /tmp/smallboat-bench.lock .venv/bin/python bench/learning_curve.py --sizes $n
    done
    flock /tmp/smallboat-bench.lock .venv/bin/python bench/learning_curve.py \\
        --sizes 20000,50000,200000,500000,4934699

Each size has its own home (a fresh MLflow registry), so the gate never compares across sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

TARGET_GAP = {20_000: 0.05, 50_000: 0.015, 500_000: 0.006, 4_934_699: 0.003}


def run_size(sessions: int, args: argparse.Namespace) -> dict[str, Any]:
    """One point of the curve: its own work folder and home, the whole TrainFlow."""
    work = Path(args.work) / f"curve-{sessions}-{args.seed}"
    os.environ["SMALLBOAT_HOME"] = str(work / "home")
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    from smallboat.config import Settings
    from smallboat.data.land.load import load_path
    from smallboat.data.synth.generate import SynthConfig, synthesize
    from smallboat.pipeline.runner import run_train
    from smallboat.warehouse.transform import run_transform

    settings = Settings()
    settings.ensure_home()
    data = work / "data"
    if not (data / "browsing_train.csv").exists():
        synthesize(SynthConfig(sessions=sessions, seed=args.seed), data)
    if not settings.warehouse_path.exists():
        load_path(data, source="coveo", on_bad_rows="fail", settings=settings)
        run_transform(settings)
    started = time.perf_counter()
    params: dict[str, Any] = {"grid": args.grid} if args.grid else {}
    outcome = run_train(
        settings,
        show_output=args.verbose,
        skip_transform=True,
        oracle=str(data),
        seed=args.seed,
        bootstrap=args.bootstrap,
        threads=settings.threads,
        **params,
    )
    s = outcome.summary or {}
    from metaflow import Run, namespace

    namespace(None)
    evaluate = Run(outcome.pathspec)["evaluate"].task
    assert evaluate is not None, f"{outcome.pathspec} has no evaluate task"
    report = evaluate.data.report

    def point(prefix: str) -> dict[str, float]:
        return {
            "roc_auc": s[f"{prefix}roc_auc"],
            "low": s[f"{prefix}roc_auc_ci_low"],
            "high": s[f"{prefix}roc_auc_ci_high"],
        }

    return {
        "sessions": sessions,
        "seed": args.seed,
        "test_examples": int(s.get("n", 0)),
        "train_examples": int(report["row_counts"]["train"]["examples"]),
        "chosen": report["best"]["name"],
        "sweep": {e["name"]: round(e["best_valid_auc"], 4) for e in report["sweep"]},
        "model": point(""),
        "oracle": point("oracle_"),
        "count_baseline": point("count_baseline_"),
        "gap": s["oracle_roc_auc"] - s["roc_auc"],
        "target_gap": TARGET_GAP.get(sessions),
        "best": (outcome.registration or {}).get("bundle_dir"),
        "seconds": time.perf_counter() - started,
        "run": outcome.pathspec,
    }


def curve_point(r: dict[str, Any]) -> dict[str, Any]:
    """A row as the curve file keeps it (`smallboat.model.curve`)."""
    return {
        "sessions": r["sessions"],
        "seed": r["seed"],
        "train_examples": r["train_examples"],
        "test_examples": r["test_examples"],
        "model_auc": round(r["model"]["roc_auc"], 4),
        "model_ci": [round(r["model"]["low"], 4), round(r["model"]["high"], 4)],
        "oracle_auc": round(r["oracle"]["roc_auc"], 4),
        "count_baseline_auc": round(r["count_baseline"]["roc_auc"], 4),
        "gap": round(r["gap"], 4),
        "target_gap": r["target_gap"],
        "chosen": r["chosen"],
        "measured_on": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def table(rows: list[dict[str, Any]]) -> str:
    def ci(p: dict[str, float]) -> str:
        return f"{p['roc_auc']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"

    lines = [
        "| sessions | test examples | model AUC [95% CI] | oracle AUC | gap (target) "
        "| count baseline AUC | TrainFlow min |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = "" if r["target_gap"] is None else f" (<= {r['target_gap']:g})"
        met = (
            ""
            if r["target_gap"] is None
            else (" met" if r["gap"] <= r["target_gap"] else " NOT met")
        )
        lines.append(
            f"| {r['sessions']:,} | {r['test_examples']:,} | {ci(r['model'])} | {ci(r['oracle'])} "
            f"| {r['gap']:.3f}{target}{met} | {ci(r['count_baseline'])} | {r['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="20000,50000,200000,500000", help="Sessions, comma-separated."
    )
    parser.add_argument("--seed", type=int, default=5, help="Generator and training seed.")
    parser.add_argument("--grid", default="", help="TrainFlow --grid (default: the flow's).")
    parser.add_argument("--bootstrap", type=int, default=200, help="Session bootstrap resamples.")
    parser.add_argument("--work", default="/tmp/smallboat-bench", help="Work folder root.")
    parser.add_argument("--out", default="", help="Write the rows as JSON here too.")
    parser.add_argument("--verbose", action="store_true", help="Show the flows' output.")
    parser.add_argument(
        "--no-curve",
        action="store_true",
        help="Do not write the points into the curve file the training card reads "
        "(src/smallboat/model/learning_curve.json); a custom --grid never does.",
    )
    args = parser.parse_args()
    from smallboat.model.curve import write_point

    rows = []
    for size in (int(x) for x in args.sizes.split(",") if x.strip()):
        rows.append(run_size(size, args))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        print(f"chosen {rows[-1]['chosen']}; validation AUC {rows[-1]['sweep']}", flush=True)
        if not args.no_curve and not args.grid:
            write_point(curve_point(rows[-1]))
    print()
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

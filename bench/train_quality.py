"""Training quality and speed against the oracle (issue 3's targets), and the REES46 sample.

Synthetic: synthesize -> load -> transform (reused when the work folder has them), then TrainFlow
through the Runner, and a table of the model's test metrics beside the oracle's and the baselines'.

    .venv/bin/python bench/train_quality.py --sessions 500000
    .venv/bin/python bench/train_quality.py --sessions 4934699 --grid '[{"name": "gru64"}]'

REES46 (real, small: 17k events, ~180 intent examples): the time split leaves ~5 test examples,
so this mode evaluates by grouped 5-fold cross-validation over sessions instead, pooling the
out-of-fold predictions of the model and of the count baseline, with session-bootstrap CIs.

    .venv/bin/python bench/train_quality.py --rees46
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REES46 = REPO.parent / "shared" / "data" / "rees46"
TARGET_AUC_GAP = 0.01
TARGET_CHALLENGE_GAP = 0.01
TARGET_TRAIN_MINUTES = 30.0
DEFAULT_GRID = json.dumps([{"name": "gru32"}])


def _home(work: Path) -> None:
    os.environ["SMALLBOAT_HOME"] = str(work / "home")
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"


def synthetic(args: argparse.Namespace) -> None:
    from smallboat.config import Settings
    from smallboat.data.land.load import load_path
    from smallboat.data.synth.generate import SynthConfig, synthesize
    from smallboat.model.report import LABELS, MODELS, summary_prefix
    from smallboat.pipeline.runner import run_train
    from smallboat.warehouse.transform import run_transform

    work = Path(args.work or f"/tmp/smallboat-bench/train-{args.sessions}-{args.seed}")
    data = work / "data"
    _home(work)
    settings = Settings()
    settings.ensure_home()
    timings: dict[str, float] = {}
    if not (data / "browsing_train.csv").exists():
        t0 = time.perf_counter()
        synthesize(SynthConfig(sessions=args.sessions, seed=args.seed), data, progress=True)
        timings["synthesize"] = time.perf_counter() - t0
    if not settings.warehouse_path.exists():
        t0 = time.perf_counter()
        load_path(data, source="coveo", on_bad_rows="fail", settings=settings, progress=True)
        timings["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_transform(settings, progress=True)
        timings["transform"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    outcome = run_train(
        settings,
        max_workers=args.max_workers,
        show_output=args.verbose,
        grid=args.grid,
        skip_transform=True,
        oracle=str(data),
        seed=args.seed,
        bootstrap=args.bootstrap,
        threads=max(1, settings.threads // args.max_workers),
    )
    timings["TrainFlow (whole run)"] = time.perf_counter() - t0
    s = outcome.summary or {}
    auc_gap = s["oracle_roc_auc"] - s["roc_auc"]
    ch_gap = s["oracle_gap_challenge_relative"]
    minutes = s["train_train_seconds"] / 60
    print(
        f"\nTrainFlow/{outcome.run_id} on {args.sessions:,} synthetic sessions (seed {args.seed})"
    )
    print(f"{'model':<40}{'ROC-AUC':>9}{'95% CI':>18}{'Challenge':>11}{'PR-AUC':>9}{'logloss':>9}")
    for name in MODELS:
        prefix, label = summary_prefix(name), LABELS[name]
        ci = ""
        if f"{prefix}roc_auc_ci_low" in s:
            ci = f"[{s[prefix + 'roc_auc_ci_low']:.4f}, {s[prefix + 'roc_auc_ci_high']:.4f}]"
        print(
            f"{label:<40}{s.get(prefix + 'roc_auc', float('nan')):>9.4f}{ci:>18}"
            f"{s[prefix + 'challenge_score']:>11.4f}{s.get(prefix + 'pr_auc', float('nan')):>9.4f}"
            f"{s.get(prefix + 'log_loss', float('nan')):>9.4f}"
        )
    print()
    checks = [
        (
            "ROC-AUC gap to the oracle",
            f"{auc_gap:.4f}",
            f"<= {TARGET_AUC_GAP}",
            auc_gap <= TARGET_AUC_GAP,
        ),
        (
            "Challenge-score gap to the oracle",
            f"{100 * ch_gap:.2f}%",
            f"<= {100 * TARGET_CHALLENGE_GAP:.0f}%",
            ch_gap <= TARGET_CHALLENGE_GAP,
        ),
        (
            "above the count baseline (AUC)",
            f"+{s['roc_auc'] - s['count_baseline_roc_auc']:.4f}",
            "> 0",
            s["roc_auc"] > s["count_baseline_roc_auc"],
        ),
        (
            "best configuration's training wall time",
            f"{minutes:.1f} min",
            f"<= {TARGET_TRAIN_MINUTES:.0f} min",
            minutes <= TARGET_TRAIN_MINUTES,
        ),
    ]
    for name, value, target, ok in checks:
        print(f"{name:<42}{value:>12}   target {target:<10} {'met' if ok else 'NOT MET'}")
    print(
        f"training: {s['train_sequences_per_s']:,.0f} sequences/s, "
        f"{s['train_epochs']:.0f} epochs (best {s['train_best_epoch']:.0f})"
    )
    for name, seconds in timings.items():
        print(f"{name:<24}{seconds:>9.1f} s")
    reg = outcome.registration or {}
    print(f"card: {reg.get('card_path')}")


def rees46(args: argparse.Namespace) -> None:
    from smallboat.config import Settings
    from smallboat.data.land.load import load_path
    from smallboat.features import FeatureSpec, windows
    from smallboat.metrics.uncertainty import bootstrap_intervals, paired_difference
    from smallboat.model.baselines import fit_count_baseline
    from smallboat.model.fit import train_intent_model
    from smallboat.model.intent import IntentConfig, Sizes, predict_proba
    from smallboat.model.prepare import prepare_intent_data
    from smallboat.warehouse.transform import run_transform

    work = Path(args.work or "/tmp/smallboat-bench/rees46")
    _home(work)
    settings = Settings()
    settings.ensure_home()
    if not settings.warehouse_path.exists():
        load_path(REES46, source="rees46", on_bad_rows="skip", settings=settings, progress=False)
        run_transform(settings)
    spec = FeatureSpec(max_events=args.max_events, min_sku_count=1)
    data = prepare_intent_data(settings, spec)
    parts = list(data.splits.values())
    session = np.concatenate([p.session for p in parts])
    ids = np.concatenate([p.session_id for p in parts])
    k = np.concatenate([p.k for p in parts])
    label = np.concatenate([p.label for p in parts]).astype(np.int8)
    prefix = np.concatenate([p.prefix_length for p in parts])
    inputs = windows(data.tokens, session, prefix, spec)
    uniq = np.unique(ids)
    rng = np.random.default_rng(args.seed)
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % args.folds, strict=True))
    fold = np.array([fold_of[s] for s in ids])
    model_prob = np.zeros(len(label))
    count_prob = np.zeros(len(label))
    config = IntentConfig(hidden=16, max_epochs=30, patience=5, freeze_sku=True, seed=args.seed)
    for f in range(args.folds):
        test = fold == f
        rest = np.flatnonzero(~test)
        valid = rest[fold[rest] == (f + 1) % args.folds]
        train = rest[fold[rest] != (f + 1) % args.folds]
        result = train_intent_model(
            config,
            Sizes.of(data.vocab, spec),
            (inputs.take(train), label[train]),
            (inputs.take(valid), label[valid]),
        )
        model_prob[test] = predict_proba(result.model, inputs.take(np.flatnonzero(test)))
        count = fit_count_baseline(inputs.counts[train], label[train], seed=args.seed)
        count_prob[test] = count.predict_proba(inputs.counts[test])
    print(
        f"REES46 sample: {len(label)} intent examples from {len(uniq)} sessions, "
        f"{label.mean():.1%} positive; grouped {args.folds}-fold CV over sessions"
    )
    for name, prob in (("GRU intent model", model_prob), ("count baseline", count_prob)):
        ci = bootstrap_intervals(prob, label, k, groups=ids, n_bootstrap=2000, seed=args.seed)
        auc = ci["roc_auc"]
        print(
            f"{name:<20} ROC-AUC {auc['estimate']:.3f}  "
            f"95% CI [{auc['low']:.3f}, {auc['high']:.3f}]"
        )
    diff = paired_difference(
        model_prob, count_prob, label, k, groups=ids, n_bootstrap=2000, seed=args.seed
    )["roc_auc"]
    print(
        f"model - count baseline: {diff['diff']:+.3f}  95% CI [{diff['low']:+.3f}, "
        f"{diff['high']:+.3f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", default=DEFAULT_GRID, help="TrainFlow --grid JSON")
    parser.add_argument("--max-workers", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--max-events", type=int, default=20)
    parser.add_argument("--work", help="work folder (default under /tmp/smallboat-bench)")
    parser.add_argument("--rees46", action="store_true", help="evaluate on the REES46 sample")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="show the flow's log")
    args = parser.parse_args()
    if args.rees46:
        rees46(args)
    else:
        synthetic(args)


if __name__ == "__main__":
    main()

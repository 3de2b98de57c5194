"""Does the GRU + LightGBM blend pay? TrainFlow's branch steps called in-process on one synthetic
home: the chosen grid entries trained on its splits, the blend's weight fit on validation
(`model.blend.fit_blend`, as the join does), and valid / test ROC-AUC of each member and the
blend beside the oracle, with DeLong and session-bootstrap intervals of the blend's test gain.

    nice -n 10 .venv/bin/python bench/blend.py --home /tmp/B/work/curve-200000-5 \\
        --entries lgbm,gru64-drop3 --out /tmp/B/p200k

`--home` is a learning-curve work folder (`bench/learning_curve.py --work`): its `home/` holds
the built warehouse, its `data/` the synthetic data and oracle. Each entry's validation and test
predictions are kept in `--out`, so a re-run only trains what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np


def prepared(work: Path, out: Path, seed: int) -> tuple[Any, np.ndarray]:
    """The flow's prepare and prod2vec steps on the home (cached in `out`)."""
    from smallboat.config import Settings
    from smallboat.features import FeatureSpec
    from smallboat.model.evaluate import read_oracle
    from smallboat.model.prepare import DataWindow, prepare_intent_data
    from smallboat.pipeline.train_steps import fit_sku_vectors

    cache = out / "data.pkl"
    if cache.exists():
        data, vectors = pickle.loads(cache.read_bytes())
        return data, vectors
    data = prepare_intent_data(Settings(), FeatureSpec(max_events=20))
    vectors, _ = fit_sku_vectors(data, window=DataWindow(), seed=seed)
    for split in ("valid", "test"):
        np.save(out / f"y_{split}.npy", data.splits[split].label)
        np.save(out / f"oracle_{split}.npy", read_oracle(work / "data", data.splits[split]))
    cache.write_bytes(pickle.dumps((data, vectors)))
    return data, vectors


def predictions(name: str, data: Any, vectors: np.ndarray, out: Path, seed: int) -> None:
    """The flow's train step for the DEFAULT_GRID entry `name`; its predictions saved."""
    from smallboat.flows.train_flow import DEFAULT_GRID
    from smallboat.model.intent import IntentEnsemble, predict_proba
    from smallboat.pipeline.train_steps import load_model, train_branch

    if all((out / f"{name}_{split}.npy").exists() for split in ("valid", "test")):
        return
    entries = {e["name"]: e for e in json.loads(DEFAULT_GRID)}
    started = time.perf_counter()
    branch = train_branch(entries[name], data, vectors, seed=seed, threads=2)
    model = load_model(branch, data)
    for split in ("valid", "test"):
        x, _ = data.inputs(split)
        p = predict_proba(model, x) if isinstance(model, IntentEnsemble) else model.predict(x)
        np.save(out / f"{name}_{split}.npy", p)
    print(f"{name}: trained in {time.perf_counter() - started:.0f} s", flush=True)


def report(entries: list[str], data: Any, out: Path) -> None:
    from smallboat.flows.train_flow import DEFAULT_GRID
    from smallboat.metrics.intent import roc_auc
    from smallboat.metrics.uncertainty import delong_auc_difference, paired_difference
    from smallboat.model.blend import combine, fit_blend

    y = {s: np.load(out / f"y_{s}.npy") for s in ("valid", "test")}
    p = {(n, s): np.load(out / f"{n}_{s}.npy") for n in entries for s in ("valid", "test")}
    auc = {k: roc_auc(v, y[k[1]]) for k, v in p.items()}
    kinds = {e["name"]: e.get("kind", "gru") for e in json.loads(DEFAULT_GRID)}
    gbm = next(n for n in entries if kinds[n] == "lightgbm")
    gru = max((n for n in entries if n != gbm), key=lambda n: auc[(n, "valid")] or 0.0)
    fit = fit_blend(p[(gru, "valid")], p[(gbm, "valid")], y["valid"])
    blended = {
        s: combine(p[(gru, s)], p[(gbm, s)], weight=fit.weight, space=fit.space)
        for s in ("valid", "test")
    }
    oracle = roc_auc(np.load(out / "oracle_test.npy"), y["test"]) or float("nan")
    print(fit.describe(gru, gbm))
    print("| model | valid AUC | test AUC | gap to the oracle |\n|---|---|---|---|")
    for name in entries:
        t = auc[(name, "test")] or float("nan")
        print(f"| {name} | {auc[(name, 'valid')]:.4f} | {t:.4f} | {oracle - t:.4f} |")
    t = roc_auc(blended["test"], y["test"]) or float("nan")
    label = f"blend, w = {fit.weight:.2f} on {gru}, {fit.space}"
    print(f"| {label} | {fit.valid_auc:.4f} | {t:.4f} | {oracle - t:.4f} |")
    print(f"| oracle | | {oracle:.4f} | |")
    test = data.splits["test"]
    for name in (gbm, gru):
        dl = delong_auc_difference(blended["test"], p[(name, "test")], y["test"])
        boot = paired_difference(
            blended["test"], p[(name, "test")], y["test"], test.k, groups=test.session, seed=5
        )["roc_auc"]
        print(
            f"blend - {name}: test {dl['diff']:+.4f}, DeLong 95% [{dl['low']:+.4f}, "
            f"{dl['high']:+.4f}] p = {dl['p_value']:.3f}; session bootstrap 95% "
            f"[{boot['low']:+.4f}, {boot['high']:+.4f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="Learning-curve work folder of one size.")
    parser.add_argument("--entries", default="lgbm,gru64-drop3", help="DEFAULT_GRID names.")
    parser.add_argument("--out", required=True, help="Folder for the cached predictions.")
    parser.add_argument("--seed", type=int, default=5, help="Training seed (the curve's).")
    args = parser.parse_args()
    work, out = Path(args.home), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["SMALLBOAT_HOME"] = str(work / "home")
    entries = [e.strip() for e in args.entries.split(",") if e.strip()]
    data, vectors = prepared(work, out, args.seed)
    for name in entries:
        predictions(name, data, vectors, out, args.seed)
    report(entries, data, out)


if __name__ == "__main__":
    main()

"""Time `features.tabular.tabular_rows` (the LightGBM candidate's feature row) in-process.

Serving scores one session per request (B=1), sometimes a few; training builds the rows of every
prefix of its split at once. This prints the median and p99 of `tabular_rows` at B=1, 8 and 256
on real sessions of a trained home (its warehouse's sessions without a purchase, 20 events each,
as `bench/serve.py` sends them, encoded by the champion's own vocabulary), and the wall time of a
training-size call: the home's training split (TrainFlow's `prepare`), its prefixes repeated to
`--train-rows` rows. It also checks that serving's per-event rows (`tabular_small`) equal the
NumPy ones on every one of those sessions and prefixes.

    /tmp/bench-quiet .venv/bin/python bench/tabular.py --home /tmp/sb-home
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smallboat.config import Settings
from smallboat.features import ModelInputs


def per_call(fn: Callable[[int], object], calls: int) -> tuple[float, float]:
    """(median, p99) milliseconds of `fn(k)` for k = 0..calls-1, after a warm-up."""
    for k in range(min(200, calls)):
        fn(k)
    times = np.empty(calls)
    for k in range(calls):
        started = time.perf_counter()
        fn(k)
        times[k] = time.perf_counter() - started
    return float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="A trained home (LightGBM).")
    parser.add_argument("--calls", type=int, default=3_000, help="Calls per small batch size.")
    parser.add_argument("--train-rows", type=int, default=500_000, help="Training-size rows.")
    parser.add_argument("--repeats", type=int, default=3, help="Training-size calls timed.")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.serve import real_sessions
    from smallboat.features.tabular import tabular_rows
    from smallboat.model.blend import BlendIntent
    from smallboat.model.gbm import GbmIntent
    from smallboat.model.predictor import IntentPredictor
    from smallboat.model.prepare import prepare_intent_data

    settings = Settings(home=args.home)
    folder = max((args.home / "bundles").iterdir())
    predictor = IntentPredictor.load(folder)
    model = predictor.model
    gbm = model.gbm if isinstance(model, BlendIntent) else model
    if not isinstance(gbm, GbmIntent):
        raise SystemExit(f"{folder}: its model is not LightGBM nor a blend with one")
    unit = gbm.unit
    served = predictor.encode(real_sessions(settings, 256))
    n = len(served)
    print(f"{folder.name}: {n} real sessions, SKU vectors {gbm.sku_vectors.shape}")
    for batch in (1, 8, 256):
        parts = [served.take(np.arange(i, i + batch) % n) for i in range(0, n, batch)]
        calls = max(args.calls // batch, 50)
        p50, p99 = per_call(lambda k: tabular_rows(parts[k % len(parts)], unit), calls)  # noqa: B023
        print(f"tabular_rows B={batch:<6} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms  ({calls} calls)")

    data = prepare_intent_data(settings, predictor.spec)
    train, _ = data.inputs("train")
    try:  # a checkout from before the per-event path (to time it against this one) has none
        from smallboat.features.tabular import vectorised_rows
        from smallboat.features.tabular_small import small_rows
    except ImportError:
        print("this checkout computes every batch with NumPy: no per-event rows to compare")
    else:
        for name, inputs in (("served sessions", served), ("training prefixes", train)):
            want = vectorised_rows(inputs, unit)
            alone = [small_rows(inputs.take(np.array([i])), unit) for i in range(len(inputs))]
            same = np.array_equal(np.concatenate(alone), want, equal_nan=True)
            print(f"per-event rows equal the vectorised ones on {len(inputs):,} {name}: {same}")
    rows = np.resize(np.arange(len(train)), args.train_rows)
    big: ModelInputs = train.take(rows)
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        tabular_rows(big, unit)
        seconds.append(time.perf_counter() - started)
    print(
        f"tabular_rows B={len(big):,} (the training split's {len(train):,} prefixes, repeated): "
        f"min {min(seconds):.3f} s  median {float(np.median(seconds)):.3f} s  "
        f"({args.repeats} calls)"
    )


if __name__ == "__main__":
    main()

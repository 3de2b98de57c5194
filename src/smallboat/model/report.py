"""The TrainFlow card: what a person wants to read about a training run, as Metaflow components.

Everything shown comes from one `TrainingReport` dict (built by `evaluate`), so the card, MLflow and
the closing summary print the same numbers.
"""

from __future__ import annotations

from typing import Any

from smallboat.schema import INTENT_BUCKET_WEIGHTS

MODELS = ("model", "count_baseline", "majority", "oracle")
LABELS = {
    "model": "GRU intent model",
    "count_baseline": "count baseline (logistic regression)",
    "majority": "majority class",
    "oracle": "oracle (Bayes-optimal, synthetic only)",
}


def summary_prefix(name: str) -> str:
    """Prefix of a model's figures in a run's flat summary ('' for the trained model itself)."""
    return "" if name == "model" else f"{name}_"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def metrics_rows(reports: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """One row per model: Challenge score, ROC-AUC (CI), PR-AUC, log-loss, Brier, ECE, n."""
    rows = []
    for name in MODELS:
        report = reports.get(name)
        if report is None:
            continue
        overall = report["overall"]
        boot = report.get("bootstrap") or {}
        auc_ci = boot.get("roc_auc") or {}
        ci = (
            f" [{_fmt(auc_ci.get('low'), 3)}, {_fmt(auc_ci.get('high'), 3)}]"
            if auc_ci.get("low") is not None
            else ""
        )
        rows.append(
            [
                LABELS[name],
                _fmt(report["challenge"]["score"]),
                _fmt(overall["roc_auc"]) + ci,
                _fmt(overall["pr_auc"]),
                _fmt(overall["log_loss"]),
                _fmt(overall["brier"]),
                _fmt(report["calibration"]["ece"]),
                _fmt(overall["n"]),
            ]
        )
    return rows


def bucket_chart(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Vega-Lite grouped bars: accuracy per prediction point k, per model."""
    values = []
    for name in MODELS:
        report = reports.get(name)
        if report is None:
            continue
        for k in INTENT_BUCKET_WEIGHTS:
            bucket = report["by_bucket"].get(f"k{k}") or {}
            acc = bucket.get("accuracy")
            if acc is not None:
                values.append({"k": f"k={k}", "model": LABELS[name], "accuracy": acc})
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Accuracy at 0.5 per prediction point (the Challenge's buckets)",
        "data": {"values": values},
        "mark": "bar",
        "encoding": {
            "x": {
                "field": "k",
                "type": "nominal",
                "title": "events after the first add",
                "sort": [f"k={k}" for k in INTENT_BUCKET_WEIGHTS],
            },
            "xOffset": {"field": "model"},
            "y": {"field": "accuracy", "type": "quantitative", "scale": {"zero": False}},
            "color": {"field": "model", "type": "nominal"},
        },
        "height": 240,
    }


def roc_chart(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    values = []
    for name in MODELS:
        report = reports.get(name)
        roc = ((report or {}).get("curves") or {}).get("roc")
        if not roc:
            continue
        for fpr, tpr in zip(roc["fpr"], roc["tpr"], strict=True):
            values.append({"fpr": fpr, "tpr": tpr, "model": LABELS[name]})
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "ROC curve on the test split",
        "data": {"values": values},
        "mark": {"type": "line"},
        "encoding": {
            "x": {"field": "fpr", "type": "quantitative", "title": "false positive rate"},
            "y": {"field": "tpr", "type": "quantitative", "title": "true positive rate"},
            "color": {"field": "model", "type": "nominal"},
        },
        "height": 280,
    }


def calibration_chart(report: dict[str, Any]) -> dict[str, Any]:
    values = [
        {"predicted": b["mean_predicted"], "observed": b["observed_rate"], "n": b["n"]}
        for b in report["calibration"]["bins"]
        if b["n"]
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Calibration of the model (reliability bins)",
        "data": {"values": values},
        "mark": {"type": "point", "filled": True},
        "encoding": {
            "x": {"field": "predicted", "type": "quantitative", "scale": {"domain": [0, 1]}},
            "y": {"field": "observed", "type": "quantitative", "scale": {"domain": [0, 1]}},
            "size": {"field": "n", "type": "quantitative"},
        },
        "height": 240,
    }


def sweep_rows(sweep: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for entry in sorted(sweep, key=lambda e: -(e["best_valid_auc"] or 0)):
        rows.append(
            [
                ("best " if entry.get("chosen") else "") + _sweep_label(entry),
                _fmt(entry["best_valid_auc"]),
                _fmt(int(entry["best_epoch"])),
                _fmt(int(entry["epochs"])),
                _fmt(entry["sequences_per_s"], 0),
                _fmt(entry["train_seconds"], 1),
            ]
        )
    return rows


def _sweep_label(entry: dict[str, Any]) -> str:
    """The entry's name; for the blend, what it averages and with which weight."""
    config = entry.get("config") or {}
    if config.get("kind") != "blend":  # model.blend.KIND (the card does not import torch)
        return str(entry["name"])
    w = float(config["weight"])
    return (
        f"{entry['name']}: {w:.2f} x {config['gru_name']} + {1 - w:.2f} x "
        f"{config['gbm_name']} ({config['space']})"
    )


def quality_rows(quality: dict[str, Any]) -> list[list[Any]]:
    """One row per dbt test of the run's `warehouse.quality.transform_digest`."""
    rows = []
    for test in quality.get("tests", []):
        rows.append(
            [test["name"], test["status"], test.get("severity", ""), str(test.get("failures", ""))]
        )
    return rows


def next_item_rows(next_item: dict[str, Any]) -> list[list[Any]]:
    """One row per recommender: MRR@k, HR@k (also excluding seen SKUs), coverage, popularity."""
    from smallboat.model.next_item.evaluate import LABELS as NEXT_ITEM_LABELS

    rows = []
    for name, label in NEXT_ITEM_LABELS.items():
        r = next_item["test"].get(name)
        if r is None:
            continue
        bias = r["popularity_bias"]
        rows.append(
            [
                ("chosen " if name == next_item["chosen"] else "") + label,
                _fmt(r["mrr"]),
                _fmt(r["hr"]),
                f"{_fmt(r['exclude_seen']['mrr'])} / {_fmt(r['exclude_seen']['hr'])}",
                _fmt(r["coverage"], 3),
                _fmt(bias["percentile"], 3),
                _fmt(bias["arp"], 1),
                _fmt(next_item["valid_mrr"].get(name)),
            ]
        )
    ceiling = next_item.get("oracle") or {}
    if ceiling.get("mrr") is not None:
        rows.append(
            [
                "ceiling: Bayes-optimal ranking (synthetic only)",
                _fmt(ceiling["mrr"]),
                _fmt(ceiling["hr"]),
                *["-"] * 5,
            ]
        )
    return rows


def next_item_ceiling_text(next_item: dict[str, Any]) -> str:
    """Where the chosen recommender stands against the ceiling, or why there is none."""
    ceiling = next_item.get("oracle")
    if ceiling is None:
        return ""
    k = next_item["k"]
    if ceiling.get("missing"):
        return (
            f"No next-item ceiling: no oracle file at {ceiling['missing']} (data synthesized "
            f"before the next-item oracle existed: `smallboat data synth` writes it)."
        )
    if ceiling.get("mrr") is None:
        return (
            f"No next-item ceiling: the oracle file covers {_fmt(100 * ceiling['coverage'], 1)}% "
            f"of the test examples (it must cover all of them)."
        )
    chosen = next_item["test"][next_item["chosen"]]
    ratio = chosen["mrr"] / ceiling["mrr"] if chosen["mrr"] is not None and ceiling["mrr"] else None
    return (
        f"Ceiling: the Bayes-optimal ranking (the generator's law of the next view given the "
        f"prefix, docs/synthetic-data.md) reaches MRR@{k} **{_fmt(ceiling['mrr'])}**, HR@{k} "
        f"**{_fmt(ceiling['hr'])}** on the same examples (expected under the law: "
        f"{_fmt(ceiling['expected_mrr'])} / {_fmt(ceiling['expected_hr'])}); the chosen "
        f"recommender reaches **{_fmt(ratio, 3)}** of its MRR@{k}."
    )


def next_item_slice_rows(next_item: dict[str, Any], by: str) -> list[list[Any]]:
    """MRR@k / HR@k per slice (`by_length` or `by_popularity`), one column per recommender."""
    from smallboat.model.next_item.evaluate import LABELS as NEXT_ITEM_LABELS

    names = [n for n in NEXT_ITEM_LABELS if n in next_item["test"]]
    slices = next_item["test"][names[0]][by] if names else {}
    rows = []
    for slice_name, first in slices.items():
        cells = [
            f"{_fmt(next_item['test'][n][by][slice_name]['mrr'])} / "
            f"{_fmt(next_item['test'][n][by][slice_name]['hr'])}"
            for n in names
        ]
        rows.append([slice_name, _fmt(first["n"]), *cells])
    return rows


def next_item_components(next_item: dict[str, Any]) -> list[Any]:
    """The card's next-item section: the comparison, coverage and popularity bias, slices."""
    from metaflow.cards import Markdown, Table

    from smallboat.model.next_item.evaluate import LABELS as NEXT_ITEM_LABELS

    k = next_item["k"]
    chosen = next_item["test"][next_item["chosen"]]
    any_model = next(iter(next_item["test"].values()))
    bias = any_model["popularity_bias"]
    seq = next_item.get("sequence_training") or {}
    counts = next_item.get("row_counts", {}).get("test", {})
    names = [NEXT_ITEM_LABELS[n] for n in NEXT_ITEM_LABELS if n in next_item["test"]]
    return [
        Markdown("## Next item (session-based recommendation)"),
        Markdown(
            f"Predict the next product a shopper views from the session so far. Test split: "
            f"{_fmt(int(counts.get('examples', any_model['n'])))} examples, "
            f"{_fmt(100 * counts.get('oov_target_rate', 0.0), 1)}% of targets outside the "
            f"training vocabulary (a miss for every model). Chosen for the bundle by validation "
            f"MRR@{k}: **{NEXT_ITEM_LABELS[next_item['chosen']]}**, test MRR@{k} "
            f"**{_fmt(chosen['mrr'])}**, HR@{k} **{_fmt(chosen['hr'])}** (the 2021 Data "
            f"Challenge's winner: MRR@20 0.277 on the real data)."
        ),
        Table(
            next_item_rows(next_item),
            headers=[
                "recommender",
                f"MRR@{k}",
                f"HR@{k}",
                "excluding seen (MRR / HR)",
                f"coverage@{k}",
                "popularity percentile",
                "avg. rec. popularity",
                f"valid MRR@{k}",
            ],
        ),
        *([Markdown(text)] if (text := next_item_ceiling_text(next_item)) else []),
        Markdown(
            f"Coverage: share of the {_fmt(next_item['n_items'])} SKUs of the vocabulary shown "
            f"in at least one top-{k} list. Popularity bias: mean popularity percentile (and "
            f"mean training views) of the recommended SKUs; the targets themselves sit at "
            f"{_fmt(bias['target_percentile'], 3)} ({_fmt(bias['target_arp'], 1)} views)."
        ),
        Markdown(f"### MRR@{k} / HR@{k} by session length (detail views before the target)"),
        Table(next_item_slice_rows(next_item, "by_length"), headers=["slice", "n", *names]),
        Markdown(f"### MRR@{k} / HR@{k} by the target SKU's popularity"),
        Table(next_item_slice_rows(next_item, "by_popularity"), headers=["slice", "n", *names]),
        Markdown(
            f"Sequence model: best epoch {_fmt(seq.get('best_epoch'))} of "
            f"{_fmt(seq.get('epochs'))}, {_fmt(seq.get('examples_per_s'), 0)} examples/s, "
            f"{_fmt(seq.get('seconds'), 1)} s."
        ),
    ]


def gate_text(gate: dict[str, Any] | None) -> str:
    """The champion/challenger comparison this run's register step will act on, in words."""
    if not gate:
        return "No gate evidence recorded."
    verdict = "**promotes** this model" if gate["promotes"] else "**keeps** the champion"
    if gate["champion_version"] is None:
        auc = _fmt(gate["challenger_roc_auc"])
        return f"No champion yet: the gate {verdict} (test ROC-AUC {auc})."
    version = f"v{gate['champion_version']}"
    if gate["champion_invalid"] is not None:
        return f"Champion {version} is invalid ({gate['champion_invalid']}): the gate {verdict}."
    p_value = gate["p_value"]
    test = f"undefined ({gate['undefined']})" if p_value is None else f"p = {p_value:.3g}"
    return (
        f"Champion {version} scored on this test split: ROC-AUC {_fmt(gate['champion_roc_auc'])} "
        f"against this model's {_fmt(gate['challenger_roc_auc'])} (difference "
        f"{_fmt(gate['diff'])}, standard error {_fmt(gate['se'])}). {gate['test']} test that this "
        f"model is better: {test}, level alpha {gate['alpha']:g}, margin "
        f"{gate['min_improvement']:g}; champion vocabulary misses "
        f"{_fmt(100 * (gate['champion_oov_share'] or 0.0), 1)}% of the test SKU events. "
        f"On these numbers the gate {verdict}."
    )


def learning_curve_components(report: dict[str, Any]) -> list[Any]:
    """Where this run's training-set size sits on the measured learning curve (`model.curve`)."""
    from metaflow.cards import Markdown, Table

    from smallboat.model.curve import CURVE_HEADERS, curve_rows, load_curve, position_text

    train = report.get("row_counts", {}).get("train")
    if not train:
        return []
    examples = int(train["examples"])
    points = load_curve()
    parts: list[Any] = [
        Markdown(
            "## The learning curve (synthetic data: model vs the Bayes-optimal oracle)\n"
            + position_text(examples, points)
        )
    ]
    if points:
        parts.append(Table(curve_rows(points, examples), headers=CURVE_HEADERS))
    return parts


def card_components(report: dict[str, Any], *, dag: Any = None) -> list[Any]:
    """Metaflow card components for a TrainingReport (TrainFlow's evaluate and card steps)."""
    from metaflow.cards import Markdown, Table, VegaChart

    reports = report["test"]
    model, oracle = reports["model"], reports.get("oracle")
    parts: list[Any] = [Markdown("# smallboat TrainFlow: purchase-intent model")]
    headline = (
        f"Test ROC-AUC **{_fmt(model['overall']['roc_auc'])}**, Challenge score "
        f"**{_fmt(model['challenge']['score'])}** "
        f"(max {_fmt(model['challenge']['max_attainable'], 1)})"
    )
    if oracle is not None:
        gap = report["oracle_gap"]
        headline += (
            f"; the oracle reaches {_fmt(oracle['overall']['roc_auc'])} and "
            f"{_fmt(oracle['challenge']['score'])}: gaps {_fmt(gap['roc_auc'])} AUC, "
            f"{_fmt(100 * gap['challenge_relative'], 2)}% of the Challenge score."
        )
    parts.append(Markdown(headline))
    if dag is not None:
        parts += [Markdown("## The flow"), dag]
    parts += [
        Markdown("## Metrics on the test split (later sessions than train and valid)"),
        Table(
            metrics_rows(reports),
            headers=[
                "model",
                "Challenge",
                "ROC-AUC [95% CI]",
                "PR-AUC",
                "log-loss",
                "Brier",
                "ECE",
                "n",
            ],
        ),
    ]
    comparison = report.get("model_vs_count")
    if comparison:
        auc = comparison["roc_auc"]
        parts.append(
            Markdown(
                f"Model minus count baseline, paired bootstrap over sessions: ROC-AUC "
                f"{_fmt(auc['diff'])} [{_fmt(auc['low'])}, {_fmt(auc['high'])}]."
            )
        )
    parts.append(Markdown(f"## The champion/challenger gate\n{gate_text(report.get('gate'))}"))
    parts += [
        VegaChart(bucket_chart(reports)),
        VegaChart(roc_chart(reports)),
        VegaChart(calibration_chart(model)),
        Markdown("## Rows per split"),
        Table(
            [
                [
                    name,
                    _fmt(int(c["examples"])),
                    _fmt(int(c["sessions"])),
                    _fmt(c["positive_rate"], 3),
                ]
                for name, c in report["row_counts"].items()
            ],
            headers=["split", "examples", "sessions", "positive rate"],
        ),
        *learning_curve_components(report),
        Markdown("## The sweep (early stopping on validation ROC-AUC)"),
        Table(
            sweep_rows(report["sweep"]),
            headers=["config", "valid AUC", "best epoch", "epochs", "sequences/s", "seconds"],
        ),
        Markdown("## Data quality (dbt tests of this run's transform)"),
        Markdown(report["quality"].get("headline", "no transform results recorded")),
    ]
    rows = quality_rows(report["quality"])
    if rows:
        parts.append(Table(rows, headers=["test", "status", "severity", "failures"]))
    p2v = report.get("prod2vec") or {}
    parts.append(
        Markdown(
            f"## prod2vec\n{_fmt(p2v.get('n_sequences'))} training sessions, "
            f"{_fmt(100 * p2v.get('coverage', 0.0), 1)}% of SKU ids with a vector, "
            f"{_fmt(p2v.get('seconds'), 1)} s."
        )
    )
    if report.get("next_item"):
        parts += next_item_components(report["next_item"])
    return parts

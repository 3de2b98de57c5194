"""TrainFlow: from the warehouse to a registered purchase-intent model.

Run it with `smallboat train` (Metaflow's Runner API) or `python -m smallboat.flows.train_flow run`.
Every step is thin: it calls `smallboat.pipeline.train_steps` (and `pipeline.publish` for the card
and the register step), which compose warehouse, model and registry. The imports sit inside the
steps so each step's task loads only what it needs (torch for the training steps, not for `start`).
"""

from __future__ import annotations

import json
from typing import Any

from metaflow import FlowSpec, Parameter, card, current, step

from smallboat.flows.compute import remote

DEFAULT_GRID = json.dumps(
    [
        {"name": "gru32"},
        {"name": "gru64-drop3", "hidden": 64, "dropout": 0.3},
        # for small data: fewer parameters, stronger regularisation
        {"name": "gru16-drop5", "hidden": 16, "dropout": 0.5, "weight_decay": 0.01},
        {"name": "lgbm", "kind": "lightgbm"},
    ]
)


class TrainFlow(FlowSpec):
    """Train, evaluate and register the purchase-intent model.

    1. start: read and check the parameters.
    2. transform: dbt build with its tests (the quality gate); results kept for the card.
    3. prepare: warehouse -> tokenised train/valid/test arrays (vocabulary fit on train).
    4. prod2vec: skip-gram Word2Vec on training sessions' SKU sequences.
    5. train: one branch per grid entry (foreach), early stopping on validation ROC-AUC.
    6. join: blend the best GRU and the best LightGBM branch (weight fit on validation); pick
       the best branch, or the blend, by validation ROC-AUC.
    7. recommend: next-item recommenders (popularity, prod2vec kNN, Markov, sequence) compared on
       the test split; the best by validation MRR@20 goes into the bundle.
    8. evaluate: the Challenge metrics on the test split, beside baselines and the oracle; the
       champion scored on the same split with DeLong's paired test (the gate's evidence).
    9. card: the report a person reads.
    10. register: MLflow run + model version; the champion/challenger gate (promote only when
        the challenger beats the champion at --gate-alpha, or the champion is invalid).
    11. end: print where the card, the run and the bundle are.
    """

    window_start = Parameter(
        "window-start", default="", help="Only sessions that started on/after this UTC date."
    )
    window_end = Parameter("window-end", default="", help="Only sessions before this UTC date.")
    max_events = Parameter(
        "max-events", default=20, type=int, help="L: events of the prefix the model sees."
    )
    grid = Parameter(
        "grid",
        default=DEFAULT_GRID,
        help="JSON list of IntentConfig overrides, one training branch each ('name' labels it); "
        'an entry with "kind": "lightgbm" sets GbmConfig fields instead (LightGBM on the '
        "prefix's tabular features).",
    )
    seed = Parameter("seed", default=0, type=int, help="Seed of every random choice.")
    skip_transform = Parameter(
        "skip-transform", default=False, type=bool, help="Use the warehouse as it is."
    )
    dbt_vars = Parameter(
        "dbt-vars",
        default="{}",
        help="JSON dbt vars for the transform, e.g. quality bounds or split fractions.",
    )
    oracle = Parameter(
        "oracle", default="", help="Synthetic data folder (or oracle file) to score the oracle."
    )
    bootstrap = Parameter(
        "bootstrap", default=500, type=int, help="Bootstrap resamples for confidence intervals."
    )
    min_improvement = Parameter(
        "min-improvement",
        default=0.0,
        type=float,
        help="A challenger must beat the champion's test ROC-AUC by more than this.",
    )
    gate_alpha = Parameter(
        "gate-alpha",
        default=0.05,
        type=float,
        help="Level of the gate's paired test: promote only when DeLong's one-sided p-value "
        "(challenger's test ROC-AUC above the champion's) is below this.",
    )
    gate_max_oov = Parameter(
        "gate-max-oov",
        default=0.5,
        type=float,
        help="The champion is invalid (replaced without a test) when its vocabulary misses more "
        "than this share of the test set's SKU events.",
    )
    blend = Parameter(
        "blend",
        default="auto",
        help="The blend of the best GRU and the best LightGBM entry: 'auto' makes it a candidate "
        "when its validation ROC-AUC beats both, 'always' chooses it, 'never' leaves it out.",
    )
    recommender = Parameter(
        "recommender",
        default="auto",
        help="The next-item recommender the bundle keeps: 'auto' the best by validation "
        "MRR@20, or one by name (popularity, popularity_category, knn, markov, sequence).",
    )
    threads = Parameter("threads", default=2, type=int, help="CPU threads per training branch.")
    next_item = Parameter(
        "next-item",
        default="{}",
        help="JSON NextItemConfig overrides for the next-item sequence model, e.g. "
        "'{\"max_epochs\": 4}'.",
    )

    @step
    def start(self) -> None:
        """Read and check the parameters."""
        from smallboat.model.next_item.evaluate import check_recommender
        from smallboat.pipeline.challenge import check_gate
        from smallboat.pipeline.train_steps import check_blend, check_parameters, next_item_config

        self.grid_entries, self.window = check_parameters(
            grid=self.grid, window_start=self.window_start, window_end=self.window_end
        )
        self.next_item_config = next_item_config(self.next_item, seed=self.seed)
        check_gate(alpha=self.gate_alpha, max_oov=self.gate_max_oov)
        check_blend(self.blend, self.grid_entries)
        check_recommender(self.recommender)
        self.next(self.transform)

    @step
    def transform(self) -> None:
        """Build the warehouse with dbt; an error-severity test failure fails the run."""
        from smallboat.pipeline.train_steps import transform

        self.quality = transform(skip=self.skip_transform, dbt_vars=self.dbt_vars)
        self.next(self.prepare)

    @remote("prepare")
    @step
    def prepare(self) -> None:
        """Read the intent examples into compact tokenised arrays."""
        from smallboat.pipeline.train_steps import prepare

        self.data = prepare(max_events=self.max_events, window=self.window)
        self.row_counts = self.data.row_counts()
        self.next(self.prod2vec)

    @step
    def prod2vec(self) -> None:
        """Fit prod2vec on the training split's SKU sequences."""
        from smallboat.pipeline.train_steps import fit_sku_vectors

        self.sku_vectors, self.prod2vec_stats = fit_sku_vectors(
            self.data, window=self.window, seed=self.seed
        )
        self.next(self.train, foreach="grid_entries")

    @remote("train")
    @step
    def train(self) -> None:
        """Train one grid entry with early stopping."""
        from smallboat.pipeline.train_steps import train_branch

        self.branch = train_branch(
            self.input, self.data, self.sku_vectors, seed=self.seed, threads=self.threads
        )
        self.next(self.join)

    @step
    def join(self, inputs: Any) -> None:
        """Blend the best GRU and LightGBM branches; pick the best by validation ROC-AUC."""
        from smallboat.pipeline.train_steps import pick_best

        self.best, self.sweep = pick_best(
            [branch.branch for branch in inputs],
            valid_labels=inputs[0].data.splits["valid"].label,
            blend=self.blend,
        )
        self.merge_artifacts(inputs, exclude=["branch"])
        self.next(self.recommend)

    @remote("recommend")
    @step
    def recommend(self) -> None:
        """Fit and compare the next-item recommenders; keep the best on validation MRR@20."""
        from smallboat.pipeline.train_steps import fit_next_item

        self.recommendation = fit_next_item(
            self.data,
            self.sku_vectors,
            window=self.window,
            config=self.next_item_config,
            threads=self.threads,
            oracle=self.oracle,
            choose=self.recommender,
        )
        self.next(self.evaluate)

    @step
    def evaluate(self) -> None:
        """Score the best model, the baselines and the oracle on the test split."""
        from smallboat.pipeline.train_steps import evaluate

        self.report = evaluate(
            self.best,
            self.data,
            oracle=self.oracle,
            n_bootstrap=self.bootstrap,
            seed=self.seed,
            gate_alpha=self.gate_alpha,
            gate_max_oov=self.gate_max_oov,
            min_improvement=self.min_improvement,
            extras={
                "quality": self.quality,
                "row_counts": self.row_counts,
                "sweep": self.sweep,
                "prod2vec": self.prod2vec_stats,
                "next_item": self.recommendation.report,
            },
        )
        self.test_metrics = self.report["summary"]
        self.next(self.card)

    @card(type="blank", id="report")
    @step
    def card(self) -> None:
        """Render the report card."""
        from smallboat.pipeline.publish import card_parts

        for part in card_parts(self.report, current.graph):
            current.card["report"].append(part)
        self.card_task = current.pathspec
        self.next(self.register)

    @step
    def register(self) -> None:
        """Log to MLflow, register the version, and run the champion/challenger gate."""
        from smallboat.pipeline.publish import register

        self.registration = register(
            self.best,
            self.data,
            self.report,
            card_task=self.card_task,
            run_pathspec=f"{current.flow_name}/{current.run_id}",
            params={
                "max_events": self.max_events,
                "seed": self.seed,
                "grid": self.grid,
                "window_start": self.window_start,
                "window_end": self.window_end,
                "next_item": self.next_item,
            },
            min_improvement=self.min_improvement,
            next_item=self.recommendation.chosen,
        )
        self.next(self.end)

    @step
    def end(self) -> None:
        """Say where everything is."""
        from smallboat.pipeline.train_steps import closing_lines

        for line in closing_lines(self.report, self.registration):
            print(line)


if __name__ == "__main__":
    TrainFlow()

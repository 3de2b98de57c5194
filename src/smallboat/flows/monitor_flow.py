"""MonitorFlow: live quality and drift of the served model, and a card with Evidently's report.

Run it with `smallboat monitor run` (Metaflow's Runner API) or `python -m
smallboat.flows.monitor_flow run`. It runs the same jobs as `smallboat monitor check`
(`smallboat.pipeline.jobs.monitor_check`), one step each through `smallboat.pipeline.monitor_steps`,
so a scheduler gets Metaflow's record of every run: artifacts, logs and the card.
"""

from __future__ import annotations

from metaflow import FlowSpec, Parameter, card, current, step


class MonitorFlow(FlowSpec):
    """Land what arrived, rebuild the warehouse, and measure the served model.

    1. start: nothing to check; the parameters are typed.
    2. landing: compact the collector's event log and the prediction logs into landing Parquet.
    3. warehouse: dbt build (delayed labels join predictions to the events that arrived since).
    4. compute: the monitoring snapshot (live quality, drift, alerts), written to the home.
    5. card: the figures and Evidently's report, for a person to read.
    6. end: print the alerts and where the snapshot is.
    """

    land = Parameter(
        "land", default=True, type=bool, help="Land the event and prediction logs first."
    )
    transform = Parameter(
        "transform", default=True, type=bool, help="Run dbt build (False: the warehouse as it is)."
    )
    bootstrap = Parameter(
        "bootstrap", default=200, type=int, help="Bootstrap resamples for live ROC-AUC intervals."
    )

    @step
    def start(self) -> None:
        """Begin."""
        self.next(self.landing)

    @step
    def landing(self) -> None:
        """Compact the collector's log and every replica's prediction log into landing files."""
        from smallboat.pipeline.monitor_steps import land

        self.landed = land(enabled=self.land)
        self.next(self.warehouse)

    @step
    def warehouse(self) -> None:
        """dbt build with its tests; an error-severity failure fails the run."""
        from smallboat.pipeline.monitor_steps import warehouse

        self.transformed = warehouse(enabled=self.transform)
        self.next(self.compute)

    @step
    def compute(self) -> None:
        """Build and write the snapshot; keep Evidently's report for the card."""
        from smallboat.pipeline.monitor_steps import compute

        computed = compute(n_bootstrap=self.bootstrap)
        self.snapshot_path = computed.snapshot_path
        self.snapshot = computed.snapshot
        self.alerts = computed.alerts
        self.drift_html = computed.drift_html
        self.next(self.card)

    @card(type="blank", id="report")
    @step
    def card(self) -> None:
        """Render the monitoring card."""
        from smallboat.pipeline.monitor_steps import card_parts

        for part in card_parts(
            self.snapshot,
            drift_html=self.drift_html,
            landed=self.landed,
            transformed=self.transformed,
        ):
            current.card["report"].append(part)
        self.card_task = current.pathspec
        self.next(self.end)

    @step
    def end(self) -> None:
        """Say what was found and where it is."""
        for alert in self.alerts:
            print(f"ALERT {alert['kind']}: {alert['message']}")
        if not self.alerts:
            print("no alert")
        print(f"snapshot: {self.snapshot_path}")
        print(f"card: {self.card_task} (id 'report')")


if __name__ == "__main__":
    MonitorFlow()

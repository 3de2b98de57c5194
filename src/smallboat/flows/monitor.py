"""MonitorFlow: live quality and drift of the served model, and a card with Evidently's report.

Run it with `smallboat monitor run` (Metaflow's Runner API) or `python -m smallboat.flows.monitor
run`. It runs the same jobs as `smallboat monitor check` (smallboat.jobs.monitor_check), one step
each, so a scheduler gets Metaflow's record of every run: artifacts, logs and the card.
"""

from __future__ import annotations

from pathlib import Path

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
        from smallboat.jobs import land_arrivals
        from smallboat.training import settings

        self.landed = land_arrivals(settings()).render() if self.land else None
        self.next(self.warehouse)

    @step
    def warehouse(self) -> None:
        """dbt build with its tests; an error-severity failure fails the run."""
        from smallboat.monitor.card import transform_digest
        from smallboat.training import settings
        from smallboat.warehouse.transform import run_transform

        self.transformed = transform_digest(run_transform(settings())) if self.transform else None
        self.next(self.compute)

    @step
    def compute(self) -> None:
        """Build and write the snapshot; keep Evidently's report for the card."""
        from smallboat.monitor.snapshot import build_snapshot, write_snapshot
        from smallboat.training import settings

        s = settings()
        snapshot = build_snapshot(s, n_bootstrap=self.bootstrap)
        self.snapshot_path = str(write_snapshot(s, snapshot))
        self.snapshot = snapshot.data
        self.alerts = snapshot.alerts
        # write_snapshot saved Evidently's page beside the snapshot: read it, not render twice
        report = (snapshot.data.get("drift") or {}).get("report_path")
        self.drift_html = Path(report).read_text(encoding="utf-8") if report else None
        self.next(self.card)

    @card(type="blank", id="report")
    @step
    def card(self) -> None:
        """Render the monitoring card."""
        from smallboat.monitor.card import card_components

        for part in card_components(
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

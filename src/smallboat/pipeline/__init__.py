"""Orchestration: the parts composed into jobs.

- `train_steps`, `publish`: TrainFlow's step bodies (the flow file in `flows/` stays a thin DAG).
- `monitor_steps`: MonitorFlow's step bodies.
- `jobs`: land what arrived, the monitoring check, retrain (and reload the service).
- `runner`: run the Metaflow flows (found by path) through Metaflow's Runner API; `failure` says
  what failed in a few lines.
- `schedule`: the Prefect flows that run the monitoring check on an interval and retrain on alerts.

Imports point down: `cli` and `demo` call this package; it calls the parts (warehouse, model,
registry, monitor, collect's compaction, the data layer); no part imports it.
"""

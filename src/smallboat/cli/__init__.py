"""The `smallboat` command: one verb per part of the path, each with --help.

One module per part registers its verbs on the one Typer app (`cli.common.app`). Imports of the
heavy parts happen inside the commands, so `smallboat --help` stays fast.
"""

from __future__ import annotations

from smallboat.cli import collect, data, demo, deploy, monitor, serving, training
from smallboat.cli.common import app

app.add_typer(data.data_app, name="data")
app.add_typer(data.warehouse_app, name="warehouse")
app.add_typer(collect.collect_app, name="collect")
app.add_typer(monitor.monitor_app, name="monitor")

__all__ = ["app", "collect", "data", "demo", "deploy", "monitor", "serving", "training"]

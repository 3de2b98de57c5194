"""Running the collector: in this process (`serve`), or as a child process (`CollectorProcess`).

`serve` opens the store before uvicorn starts, so a log held by another collector is a one-line
error, not a traceback from the startup hook. uvicorn stops gracefully on SIGTERM or Ctrl-C: the
requests in flight finish, then the log is closed. A child process is how the demo, the tests
and the benchmark run a real collector: `python -m smallboat.cli collect serve` on a free port.
"""

from __future__ import annotations

import logging
import os
import secrets

from smallboat.collect.app import create_app
from smallboat.collect.control import Control, remove_control, write_control
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.web.connections import run_app
from smallboat.web.process import ServerProcess

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int, log_level: str = "info") -> None:
    """Run the collector until SIGTERM or Ctrl-C (the app's shutdown closes the store).

    While it runs, `<home>/collect/server.json` says how the CLI reaches its admin routes
    (`collect.control`: compaction on demand, status)."""
    store = EventStore.open(settings)
    token = settings.admin_token or secrets.token_urlsafe(24)
    local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    url = f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"
    try:
        write_control(settings, Control(pid=os.getpid(), url=url, token=token))
        run_app(
            create_app(settings, store=store, admin_token=token),
            settings,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        remove_control(settings)
        store.close()


class CollectorProcess(ServerProcess):
    """`smallboat collect serve` in a child process on 127.0.0.1, for the demo, tests and bench.

    Its state home is `home`; `env` adds settings (SMALLBOAT_*). Output goes to `log_path` (or is
    discarded). Use as a context manager, or `start()` / `stop()` / `kill()`.
    """

    name = "the collector"
    command = ("collect", "serve")
    ready_path = "/readyz"

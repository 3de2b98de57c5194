"""SMALLBOAT_HTTP_TELEMETRY switches FastAPI's native OpenTelemetry on both servers."""

from __future__ import annotations

from smallboat.collect.app import create_app as collector
from smallboat.config import Settings
from smallboat.serve.app import create_app as service


def test_telemetry_is_off_unless_asked_for(settings: Settings) -> None:
    for make in (collector, service):
        off = make(settings)
        assert off._native_telemetry.enabled() is False
        assert (off._telemetry["tracing"], off._telemetry["metrics"], off._telemetry["logs"]) == (
            False,
            False,
            False,
        )
        on = make(settings.model_copy(update={"http_telemetry": True}))
        assert (on._telemetry["tracing"], on._telemetry["metrics"], on._telemetry["logs"]) == (
            True,
            True,
            True,
        )

"""FastAPI's native OpenTelemetry, as SMALLBOAT_HTTP_TELEMETRY says, the same on both servers."""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

from smallboat.config import Settings


def telemetry(settings: Settings) -> TelemetryConfig:
    """On: FastAPI's defaults (spans, metrics and logs whenever an OpenTelemetry SDK provider is
    configured in the process). Off: none, and no per-request check of the providers."""
    if settings.http_telemetry:
        return {}
    return {"tracing": False, "metrics": False, "logs": False}

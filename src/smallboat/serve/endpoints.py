"""The names the service answers to: SageMaker endpoint names, KServe and Open Inference Protocol
model names. `SMALLBOAT_SERVE_ENDPOINT_NAME`, plus the names and shell-style patterns of
`SMALLBOAT_SERVE_ENDPOINT_NAMES` (comma-separated, e.g. `intent-*-endpoint`), so a client's
existing endpoint name works without code changes."""

from __future__ import annotations

from fnmatch import fnmatchcase

from smallboat.config import Settings


def endpoint_names(settings: Settings) -> list[str]:
    """The configured names and patterns, the main name first."""
    extra = [n.strip() for n in settings.serve_endpoint_names.split(",") if n.strip()]
    return [settings.serve_endpoint_name, *extra]


def answers_to(settings: Settings, name: str) -> bool:
    """Whether `name` is one of the service's names or matches one of its patterns."""
    return any(fnmatchcase(name, pattern) for pattern in endpoint_names(settings))


def describe_names(settings: Settings) -> str:
    """The names for an error message, with the settings that change them."""
    shown = ", ".join(repr(n) for n in endpoint_names(settings))
    return f"{shown} (SMALLBOAT_SERVE_ENDPOINT_NAME, SMALLBOAT_SERVE_ENDPOINT_NAMES)"

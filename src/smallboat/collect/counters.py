"""Counters of the hits the collector did not turn into rows: ignored (acknowledged, but they
carry no browsing signal: a GA timing hit, a Segment identify call) and refused (answered 4xx:
malformed, unauthorised, too large). Nothing is dropped silently: every such hit is counted here,
per protocol and reason, and shown on `GET /metrics` and by `smallboat collect status`.

One `HitCounters` lives on the app (`app.state.counters`, `deps.CountersDep`); the routes call
`ignored(...)` / `refused(...)`. Reasons are short fixed phrases chosen by the collector's code
("t=timing", "unauthorized"), never raw client input, and the number of distinct
(protocol, reason) pairs is capped (MAX_SERIES) so no client can grow the metrics without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from smallboat.collect.events import HitError

MAX_SERIES = 200
"""Most distinct (protocol, reason) pairs per kind; past it, new reasons count as `other`."""
OTHER = "other"
KINDS = ("ignored", "refused")

Snapshot = dict[str, dict[str, dict[str, int]]]
"""kind ("ignored" | "refused") -> protocol -> reason -> count."""


class HitCounters:
    """Thread-safe counts of ignored and refused hits since the collector started."""

    def __init__(self, *, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        self._lock = threading.Lock()
        self._counts: dict[str, dict[tuple[str, str], int]] = {kind: {} for kind in KINDS}

    def ignored(self, protocol: str, reason: str, n: int = 1) -> None:
        """`n` hits of `protocol` were acknowledged but logged no row, because of `reason`."""
        self._add("ignored", protocol, reason, n)

    def refused(self, protocol: str, reason: str, n: int = 1) -> None:
        """`n` hits of `protocol` were refused (a 4xx answer), because of `reason`."""
        self._add("refused", protocol, reason, n)

    def _add(self, kind: str, protocol: str, reason: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            table = self._counts[kind]
            key = (protocol, reason)
            if key not in table and len(table) >= self.max_series:
                key = (protocol, OTHER)
            table[key] = table.get(key, 0) + n

    def snapshot(self) -> Snapshot:
        """{"ignored": {protocol: {reason: count}}, "refused": {...}}."""
        out: Snapshot = {kind: {} for kind in KINDS}
        with self._lock:
            for kind, table in self._counts.items():
                for (protocol, reason), count in sorted(table.items()):
                    out[kind].setdefault(protocol, {})[reason] = count
        return out

    def total(self, kind: str, protocol: str | None = None) -> int:
        """All hits of `kind` (of one protocol, or all)."""
        with self._lock:
            return sum(
                n for (p, _), n in self._counts[kind].items() if protocol is None or p == protocol
            )


REFUSAL_REASONS: dict[int, str] = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    413: "too large",
    415: "unsupported encoding",
}
"""The refusal reason of each 4xx status a collection route answers."""


@contextmanager
def counting_refusals(counters: HitCounters, protocol: str) -> Iterator[None]:
    """Count a hit that the block refuses (a HitError, a validation error, a 4xx) against
    `protocol`, and let the error answer the request as usual."""
    try:
        yield
    except (HitError, RequestValidationError):
        counters.refused(protocol, REFUSAL_REASONS[400])
        raise
    except HTTPException as exc:
        if 400 <= exc.status_code < 500:
            counters.refused(protocol, REFUSAL_REASONS.get(exc.status_code, "other"))
        raise


def count_ignored(counters: HitCounters, protocol: str, ignored: Mapping[str, int]) -> None:
    """Count the hits of an acknowledged request that logged no row (reason -> count)."""
    for reason, n in ignored.items():
        counters.ignored(protocol, reason, n)


class _CountersCollector(Collector):
    def __init__(self, counters: HitCounters, extra: dict[str, tuple[str, float]]) -> None:
        self.counters = counters
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        snapshot = self.counters.snapshot()
        for kind in KINDS:
            family = CounterMetricFamily(
                f"smallboat_collect_hits_{kind}",
                "Hits acknowledged but mapped to no browsing row (no browsing signal)."
                if kind == "ignored"
                else "Hits refused with a 4xx answer (malformed, unauthorised, too large).",
                labels=["protocol", "reason"],
            )
            for protocol, reasons in snapshot[kind].items():
                for reason, count in reasons.items():
                    family.add_metric([protocol, reason], count)
            yield family
        for name, (help_text, value) in self.extra.items():
            counter = CounterMetricFamily(name, help_text)
            counter.add_metric([], value)
            yield counter


def prometheus_text(counters: HitCounters, extra: dict[str, tuple[str, float]]) -> bytes:
    """The counters, and `extra` counters (name -> (help, value)), in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_CountersCollector(counters, extra))
    return generate_latest(registry)

"""Operations: liveness (`/healthz`, shared with the prediction service), readiness
(`/readyz`: the write-ahead log is open and writable, with its counters) and Prometheus
`/metrics` (the hits ignored and refused, per protocol and reason, and the log's counters)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from smallboat.collect.counters import prometheus_text
from smallboat.collect.deps import CountersDep, StoreDep
from smallboat.collect.models import ErrorBody, Ready
from smallboat.web.probes import live

router = APIRouter(tags=["ops"])
router.include_router(live)


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(store: StoreDep) -> Ready:
    """Readiness: the log is open and writable (503 once it cannot write); its counters since
    the collector started."""
    return store.ready()


@router.get("/metrics", response_class=Response)
async def metrics(store: StoreDep, counters: CountersDep) -> Response:
    """Prometheus text format: hits ignored and refused (by protocol and reason) and the log's
    appends, records and group commits since the collector started."""
    stats = store.wal.stats
    text = prometheus_text(
        counters,
        {
            "smallboat_collect_log_appends": (
                "Requests whose rows the log made durable.",
                stats.appends,
            ),
            "smallboat_collect_log_records": ("Rows the log made durable.", stats.records),
            "smallboat_collect_log_group_commits": ("fsyncs of the log.", stats.groups),
        },
    )
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

"""What the Segment and Snowplow routes share about refused events: each event is validated and
mapped on its own, so a batch keeps its good events; refused ones are counted
(`app.state.counters`) and written to the rejects log (`collect.rejects`) with why.

A request refused as a whole before its events are read (a wrong write key, a body that is not
JSON or over the size limit) is counted once, by `CountedRoute`, and not logged as rejects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from smallboat.collect.counters import REFUSAL_REASONS, HitCounters
from smallboat.collect.events import Hit, HitError, now_ms
from smallboat.collect.models import MAX_SHOWN_REFUSALS, BatchAccepted, Refusal
from smallboat.collect.rejects import Reject, RejectsLog, event_text
from smallboat.collect.store import EventStore
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.errors import describe_error

_SHOWN_IN_ERROR = 3


class RefusedEvents(HitError):
    """Every event of a request was refused (a 400); they are already counted and logged."""


@dataclass
class Outcome:
    """What became of a request's events: rows to log, ignored (reason -> count), refused."""

    protocol: str
    route: str
    hits: list[Hit] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    refused: list[Reject] = field(default_factory=list)
    modelled: int = 0
    """Events read by their pydantic model (not in the plain shape of `collect.fastmodels`)."""

    def refuse(
        self, index: int | None, raw: Any, detail: str, message_id: str | None = None
    ) -> None:
        self.refused.append(
            Reject(
                at_ms=now_ms(),
                protocol=self.protocol,
                route=self.route,
                reason=detail,
                index=index,
                message_id=message_id,
                event=event_text(raw),
            )
        )

    async def answer(
        self, store: EventStore, counters: HitCounters, rejects: RejectsLog, received_ms: int
    ) -> BatchAccepted:
        """Log the rows, count and record what was ignored and refused, and answer; a request
        whose events were all refused (none logged or ignored) is a 400 naming the first."""
        rejects.add(self.refused)
        counters.refused(self.protocol, REFUSAL_REASONS[400], len(self.refused))
        if self.refused and not self.hits and not self.ignored:
            detail = "; ".join(r.reason for r in self.refused[:_SHOWN_IN_ERROR])
            more = len(self.refused) - _SHOWN_IN_ERROR
            if more > 0:
                detail += f"; and {more} more"
            raise RefusedEvents(detail, "(refused events: `smallboat collect rejects`)")
        logged = await self.log(store, counters, received_ms)
        return BatchAccepted(
            events=logged,
            ignored=sum(self.ignored.values()),
            refused=len(self.refused),
            refusals=[
                Refusal(index=r.index or 0, messageId=r.message_id, detail=r.reason)
                for r in self.refused[:MAX_SHOWN_REFUSALS]
            ],
        )

    async def log(self, store: EventStore, counters: HitCounters, received_ms: int) -> int:
        """Log the rows and count what was ignored (what `answer` does once the refused events
        are accounted for); returns how many rows were logged."""
        logged = await store.log(self.hits, received_ms)
        for reason, n in self.ignored.items():
            counters.ignored(self.protocol, reason, n)
        return logged


def validation_detail(exc: ValidationError, at: str) -> str:
    """A pydantic error of one event as `<at><field> <problem>` (`batch[3].userId ...`)."""
    parts = []
    for error in exc.errors()[:_SHOWN_IN_ERROR]:
        text = describe_error(error)
        parts.append(f"{at}{text}" if error.get("loc") else f"{at.rstrip('.') or 'event'}{text}")
    return "; ".join(parts)


def counted_route(protocol: str) -> type[BoundedBodyRoute]:
    """A route class that counts a request refused as a whole (4xx before its events are
    read: a wrong key, a body that is not JSON or too large) as one refused hit of `protocol`."""

    class CountedRoute(BoundedBodyRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def counted(request: Request) -> Response:
                try:
                    return await handler(request)
                except RefusedEvents:
                    raise
                except (HitError, RequestValidationError):
                    request.app.state.counters.refused(protocol, REFUSAL_REASONS[400])
                    raise
                except HTTPException as exc:
                    if 400 <= exc.status_code < 500:
                        reason = REFUSAL_REASONS.get(exc.status_code, "other")
                        request.app.state.counters.refused(protocol, reason)
                    raise

            return counted

    return CountedRoute

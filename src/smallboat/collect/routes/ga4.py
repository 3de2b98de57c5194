"""GA4: what gtag.js sends when a site points `server_container_url` / `transport_url` at the
collector (`GET` and `POST /g/collect`, v=2), and the Measurement Protocol
(`POST /mp/collect?measurement_id=..&api_secret=..`, a JSON body) that server-side libraries send.

Both answer 204 No Content once the events' rows are durable, as Google's endpoints do. Events
without a browsing signal (scroll, user_engagement, a custom event...) are acknowledged and
counted as ignored (`collect.ga`). The Measurement Protocol's `api_secret` must be one of
SMALLBOAT_GA4_API_SECRETS (401 otherwise).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from smallboat.collect.counters import count_ignored, counting_refusals
from smallboat.collect.deps import CountersDep, StoreDep
from smallboat.collect.events import HitError, now_ms
from smallboat.collect.ga import Mapped, body_text, form, ga4_mp_hits, ga4_web_hits, validate
from smallboat.collect.models import ErrorBody, Ga4MpBody
from smallboat.collect.routes.pixel import ERRORS
from smallboat.collect.store import EventStore
from smallboat.config import Settings
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.deps import SettingsDep

NO_CONTENT: dict[int | str, dict[str, Any]] = {
    204: {"description": "The events are durable (or acknowledged and counted as ignored)."}
}

router = APIRouter(tags=["ga4"], route_class=BoundedBodyRoute)


@router.get(
    "/g/collect", status_code=204, response_class=Response, responses={**NO_CONTENT, **ERRORS}
)
@router.post(
    "/g/collect", status_code=204, response_class=Response, responses={**NO_CONTENT, **ERRORS}
)
async def ga4_web(request: Request, store: StoreDep, counters: CountersDep) -> Response:
    """gtag.js hits: shared parameters (v=2, tid, cid, sid, dl, ...) in the query string, one
    event per body line in a POST (`en=view_item&pr1=idSKU-1~nmShoes`), or the query alone as
    the one event of a GET or an empty POST."""
    received = now_ms()
    with counting_refusals(counters, "ga4"):
        body = await request.body() if request.method == "POST" else b""
        mapped = ga4_web_rows(dict(request.query_params), body, store, received)
    await store.log(mapped.hits, received)
    count_ignored(counters, "ga4", mapped.ignored)
    return Response(status_code=204)


def ga4_web_rows(query: Mapping[str, str], body: bytes, store: EventStore, received: int) -> Mapped:
    """The rows of a gtag.js request: the query's parameters, one event per body line."""
    lines = [form(line) for line in body_text(body).splitlines() if line.strip()]
    return ga4_web_hits(query, lines, received_ms=received, policy=store.time_policy)


@router.post(
    "/mp/collect",
    status_code=204,
    response_class=Response,
    responses={**NO_CONTENT, 401: {"model": ErrorBody}, **ERRORS},
)
async def ga4_measurement_protocol(
    request: Request, store: StoreDep, counters: CountersDep, settings: SettingsDep
) -> Response:
    """The GA4 Measurement Protocol: `client_id`, `events[].name`, `params.items[].item_id`,
    `params.session_id`, `timestamp_micros`, behind `api_secret`."""
    received = now_ms()
    with counting_refusals(counters, "ga4mp"):
        _check_api_secret(request.query_params.get("api_secret"), settings)
        query = request.query_params
        if not query.get("measurement_id") and not query.get("firebase_app_id"):
            raise HitError("measurement_id", "is required (firebase_app_id for an app stream)")
        try:
            data = json.loads(await request.body())
        except ValueError as exc:
            raise HitError("body", f"is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise HitError("body", "must be a JSON object with client_id and events")
        body = validate(Ga4MpBody, data)
        mapped = ga4_mp_hits(body, received_ms=received, policy=store.time_policy)
    await store.log(mapped.hits, received)
    count_ignored(counters, "ga4mp", mapped.ignored)
    return Response(status_code=204)


def _check_api_secret(given: str | None, settings: Settings) -> None:
    """401 unless `given` is one of SMALLBOAT_GA4_API_SECRETS."""
    known = settings.ga4_api_secret_set
    if not known:
        raise HTTPException(
            401, "this collector has no Measurement Protocol secrets: set SMALLBOAT_GA4_API_SECRETS"
        )
    if not given:
        raise HTTPException(401, "api_secret is required in the query string")
    if not any(secrets.compare_digest(given.encode(), k.encode()) for k in known):
        raise HTTPException(401, "api_secret is not one of this collector's secrets")

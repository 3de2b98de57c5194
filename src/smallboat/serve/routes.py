"""The prediction API's routers: smallboat's own (`/v1`), SageMaker's (`/ping`, `/invocations`,
`/endpoints/{name}/invocations`), operations (`/healthz`, `/readyz`, `/metrics`) and admin.

Every answer about a session is a `Prediction`; every error is `{"error", "detail"}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from smallboat.data.predictions import PredictionLog, prediction_row
from smallboat.serve.deps import (
    AdminDep,
    MetricsDep,
    ScorerDep,
    SessionsDep,
    SettingsDep,
)
from smallboat.serve.metrics import STARTED_KEY
from smallboat.serve.models import (
    MAX_ID,
    AppendEvents,
    BatchPredictions,
    BrowsingEvent,
    ErrorBody,
    Health,
    NextItem,
    PredictBody,
    Prediction,
    Ready,
    Reloaded,
    Session,
)
from smallboat.serve.scoring import NextItemOptions, Outcome, Scorer, load_model
from smallboat.serve.sessions import SessionStoreError
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.errors import ERROR_CODES, describe_errors, error_response

log = logging.getLogger(__name__)

LAMBDA_TOKENS: dict[str, tuple[str, str | None]] = {
    "pageview": ("pageview", None),
    "view": ("pageview", None),
    "detail": ("event_product", "detail"),
    "add": ("event_product", "add"),
    "remove": ("event_product", "remove"),
    "purchase": ("event_product", "purchase"),
}
"""`GET /v1/predict?session=...` tokens -> (event_type, product_action)."""
LAMBDA_SPACING_MS = 10_000
"""The action-only form has no times: its events are this far apart (a typical browsing pace)."""
MAX_LAMBDA_TOKENS = 1_000

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not JSON."},
    413: {"model": ErrorBody, "description": "The body is over the size limit."},
    422: {"model": ErrorBody, "description": "A field is missing or invalid (its path is named)."},
    503: {"model": ErrorBody, "description": "The session store cannot be reached."},
}
SessionId = Annotated[str, Path(min_length=1, max_length=MAX_ID)]

predict = APIRouter(prefix="/v1", tags=["predict"], route_class=BoundedBodyRoute)
sagemaker = APIRouter(tags=["sagemaker"], route_class=BoundedBodyRoute)
ops = APIRouter(tags=["ops"])
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])


def _prediction(outcome: Outcome, session_id: str | None) -> Prediction:
    return Prediction(
        session_id=session_id,
        purchase_probability=outcome.probability,
        model_version=outcome.model_version,
        events_used=outcome.events_used,
        events_in_session=outcome.events_in_session,
        oov_skus=outcome.oov_skus,
        note=outcome.note,
        next_items=None
        if outcome.next_items is None
        else [NextItem(sku=sku, score=score) for sku, score in outcome.next_items],
    )


MAX_REQUEST_ID = 128


async def score_logged(
    request: Request,
    scorer: Scorer,
    sessions: Sequence[Sequence[dict[str, Any]]],
    session_ids: Sequence[str | None],
    options: NextItemOptions = NextItemOptions(),
) -> list[Outcome]:
    """Score sessions and hand each answer to the prediction log (which never blocks)."""
    outcomes = await scorer.score(sessions, options)
    try:
        _log_outcomes(request, outcomes, session_ids)
    except Exception:  # bookkeeping must never fail an answer
        log.exception("logging predictions failed")
    return outcomes


def _log_outcomes(
    request: Request, outcomes: Sequence[Outcome], session_ids: Sequence[str | None]
) -> None:
    prediction_log: PredictionLog | None = getattr(request.app.state, "prediction_log", None)
    if prediction_log is None:
        return
    started = request.scope.get(STARTED_KEY)
    latency_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000.0
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    request_id = request.headers.get("x-request-id", "")[:MAX_REQUEST_ID] or uuid.uuid4().hex
    now_ms = int(time.time() * 1000)
    prediction_log.record(
        [
            prediction_row(
                request_id=request_id,
                route=route,
                replica=prediction_log.replica,
                session_id=session_id,
                predicted_at_ms=now_ms,
                model_version=outcome.model_version,
                probability=outcome.probability,
                latency_ms=latency_ms,
                summary=outcome.summary,
            )
            for outcome, session_id in zip(outcomes, session_ids, strict=True)
        ]
    )


async def answer(
    request: Request, body: PredictBody, scorer: Scorer
) -> Prediction | BatchPredictions:
    sessions = body.session_list()
    outcomes = await score_logged(
        request,
        scorer,
        [s.rows() for s in sessions],
        [s.session_id for s in sessions],
        NextItemOptions(k=body.k, exclude_seen=body.exclude_seen),
    )
    predictions = [_prediction(o, s.session_id) for o, s in zip(outcomes, sessions, strict=True)]
    if not body.is_batch:
        return predictions[0]
    version = outcomes[0].model_version if outcomes else scorer.model.version
    return BatchPredictions(model_version=version, predictions=predictions)


@predict.post("/predict", responses=_ERRORS)
async def predict_events(
    request: Request, body: PredictBody, scorer: ScorerDep
) -> Prediction | BatchPredictions:
    """P(purchase) of one session (`events`) or of many (`sessions`), from raw browsing events."""
    return await answer(request, body, scorer)


@predict.get("/predict", responses=_ERRORS)
async def predict_actions(
    request: Request,
    scorer: ScorerDep,
    session: Annotated[
        str,
        Query(
            max_length=16 * MAX_LAMBDA_TOKENS,
            description="Comma-separated actions, oldest first: pageview (or view), detail, add, "
            "remove, purchase. No SKUs or times: events are taken 10 s apart.",
        ),
    ] = "",
) -> Prediction:
    """The reference Lambda's form: `?session=add,detail,view` (action tokens only)."""
    tokens = [t.strip().lower() for t in session.split(",")] if session.strip() else []
    if len(tokens) > MAX_LAMBDA_TOKENS:
        raise HTTPException(422, f"session has {len(tokens)} actions; at most {MAX_LAMBDA_TOKENS}")
    rows = []
    for i, token in enumerate(tokens):
        if token not in LAMBDA_TOKENS:
            raise HTTPException(
                422, f"session[{i}] {token!r} is not one of {', '.join(LAMBDA_TOKENS)}"
            )
        event_type, action = LAMBDA_TOKENS[token]
        rows.append(
            {
                "session_id_hash": None,
                "event_type": event_type,
                "product_action": action,
                "product_sku_hash": None,
                "server_timestamp_epoch_ms": i * LAMBDA_SPACING_MS,
                "hashed_url": None,
            }
        )
    [outcome] = await score_logged(request, scorer, [rows], [None])
    return _prediction(outcome, None)


@predict.post("/sessions/{session_id}/events", responses=_ERRORS)
async def append_events(
    request: Request,
    session_id: SessionId,
    body: AppendEvents,
    scorer: ScorerDep,
    sessions: SessionsDep,
) -> Prediction:
    """Add events to a stored session and predict on the session so far (what a page calls on
    each click). A session idle for 30 minutes (by event time, or by the store's clock) ends."""
    for i, event in enumerate(body.events):
        if event.session_id_hash is not None and event.session_id_hash != session_id:
            raise HTTPException(
                422,
                f"events[{i}].session_id_hash {event.session_id_hash!r} is not the session of "
                f"the path ({session_id!r}); leave it out or make them equal",
            )
    rows = await sessions.append(session_id, [event.row(session_id) for event in body.events])
    [outcome] = await score_logged(request, scorer, [rows], [session_id])
    return _prediction(outcome, session_id)


@predict.get("/sessions/{session_id}", responses=_ERRORS)
async def session_state(
    request: Request, session_id: SessionId, scorer: ScorerDep, sessions: SessionsDep
) -> Session:
    """A stored session's current visit: its raw events and the prediction on them."""
    rows = await sessions.get(session_id)
    if not rows:
        raise HTTPException(404, f"no stored session {session_id!r}")
    [outcome] = await score_logged(request, scorer, [rows], [session_id])
    return Session(
        session_id=session_id,
        events=[BrowsingEvent.model_validate(row) for row in rows],
        prediction=_prediction(outcome, session_id),
    )


@predict.delete("/sessions/{session_id}", status_code=204, responses=_ERRORS)
async def end_session(session_id: SessionId, sessions: SessionsDep) -> Response:
    """End a stored session now (404 when there is none)."""
    if not await sessions.delete(session_id):
        raise HTTPException(404, f"no stored session {session_id!r}")
    return Response(status_code=204)


# -- SageMaker ---------------------------------------------------------------------------------


@sagemaker.get("/ping")
async def ping(scorer: ScorerDep) -> Response:
    """SageMaker's container health check: 200 once the model is loaded."""
    return Response(status_code=200)


@sagemaker.post("/invocations", responses=_ERRORS)
async def invocations(request: Request, scorer: ScorerDep) -> Response:
    """SageMaker's container contract: the body of `/v1/predict`, as application/json."""
    return await _invoke(request, scorer, runtime=False)


@sagemaker.post("/endpoints/{name}/invocations", responses=_ERRORS)
async def runtime_invocations(
    name: str, request: Request, scorer: ScorerDep, settings: SettingsDep
) -> Response:
    """The SageMaker runtime API (`invoke_endpoint`), so boto3's `sagemaker-runtime` client works
    with `endpoint_url` pointing here. Requests are not SigV4-checked: put the service behind
    your gateway's authentication."""
    if name != settings.serve_endpoint_name:
        return _runtime_error(
            404,
            "ValidationError",
            f"endpoint {name!r} not found: this service is {settings.serve_endpoint_name!r} "
            "(SMALLBOAT_SERVE_ENDPOINT_NAME)",
        )
    return await _invoke(request, scorer, runtime=True)


async def _invoke(request: Request, scorer: Scorer, *, runtime: bool) -> Response:
    """Content types are checked and the body validated here, not by FastAPI: SageMaker hands
    the container opaque bytes with a ContentType."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        detail = f"ContentType {content_type!r} is not supported; send application/json"
        return _runtime_error(415, "ValidationError", detail, runtime=runtime)
    try:
        body = PredictBody.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        detail = describe_errors([{**e, "loc": ("body", *e["loc"])} for e in errors])
        return _runtime_error(status, "ValidationError", detail, runtime=runtime)
    result = await answer(request, body, scorer)
    headers = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"} if runtime else None
    return Response(result.model_dump_json(), media_type="application/json", headers=headers)


def _runtime_error(status: int, kind: str, detail: str, *, runtime: bool = True) -> Response:
    """An error body; on the runtime route also the header and `message` that botocore reads, so
    a boto3 caller gets a ClientError with this code and text."""
    if not runtime:
        return error_response(status, detail)
    body = {"error": ERROR_CODES.get(status, "error"), "detail": detail, "message": detail}
    return JSONResponse(body, status_code=status, headers={"x-amzn-ErrorType": kind})


# -- operations --------------------------------------------------------------------------------


@ops.get("/healthz")
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()


@ops.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(scorer: ScorerDep, sessions: SessionsDep) -> Ready:
    """Readiness: the model is loaded and the session store answers."""
    try:
        await sessions.ping()
    except SessionStoreError as exc:
        raise HTTPException(503, str(exc)) from None
    model = scorer.model
    return Ready(
        model_version=model.version, model_source=model.source, session_store=sessions.describe()
    )


@ops.get("/metrics", response_class=Response)
async def metrics(collected: MetricsDep) -> Response:
    """Prometheus text format: requests, latency, predictions, batches, the model version."""
    return Response(collected.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# -- admin -------------------------------------------------------------------------------------


@admin.post("/reload", responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def reload(
    request: Request, scorer: ScorerDep, settings: SettingsDep, collected: MetricsDep
) -> Reloaded:
    """Load the current champion (or re-read the served bundle folder) and serve it from the
    next batch on; requests in flight finish on the old model. A failed load keeps the old."""
    lock: asyncio.Lock = request.app.state.reload_lock
    async with lock:
        previous = scorer.model
        try:
            loaded = await asyncio.to_thread(load_model, settings, request.app.state.bundle)
        except Exception as exc:
            collected.reloads.labels("failed").inc()
            log.exception("reload failed; still serving %s", previous.version)
            raise HTTPException(
                503, f"reload failed, still serving {previous.version}: {exc}"
            ) from None
        scorer.swap(loaded)
        collected.serving(loaded.version)
        collected.reloads.labels("ok").inc()
        log.info("now serving %s (was %s)", loaded.version, previous.version)
    return Reloaded(
        model_version=loaded.version,
        model_source=loaded.source,
        previous_version=previous.version,
    )

"""smallboat's own prediction API (`/v1`): a session's events in, a `Prediction` out; sessions
fed event by event keep their state in the session store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from smallboat.serve import reference
from smallboat.serve.deps import ScorerDep, SessionsDep
from smallboat.serve.metrics import SCORED_KEY, STARTED_KEY, ServeMetrics
from smallboat.serve.models import (
    MAX_BATCH_SESSIONS,
    MAX_ID,
    AppendEvents,
    BatchPredictions,
    BrowsingEvent,
    ErrorBody,
    LambdaPrediction,
    PredictBody,
    Prediction,
    Session,
    SessionEvents,
)
from smallboat.serve.prediction_log import record_predictions
from smallboat.serve.scoring import NextItemOptions, Outcome, ScoredSession, Scorer
from smallboat.web.body import BoundedBodyRequest, BoundedBodyRoute
from smallboat.web.deps import SettingsDep

LAMBDA_TOKENS: tuple[str, ...] = (*reference.ACTION_EVENTS, *sorted(reference.WRAPPER_ACTIONS))
"""`GET /v1/predict?session=...` tokens: actions, and the reference Lambda's `start` / `end`."""
MAX_LAMBDA_TOKENS = 1_000

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not JSON."},
    413: {"model": ErrorBody, "description": "The body is over the size limit."},
    422: {"model": ErrorBody, "description": "A field is missing or invalid (its path is named)."},
    503: {"model": ErrorBody, "description": "The session store cannot be reached."},
}
"""The error answers of the routes that score (these and SageMaker's)."""
SessionId = Annotated[str, Path(min_length=1, max_length=MAX_ID)]

PREDICT_PATH = "/v1/predict"
APPEND_PATH = "/v1/sessions/{session_id}/events"
OFF_LOOP_BODY_BYTES = 64 << 10
"""A `POST /v1/predict` body longer than this (about 15 sessions of 20 events) is parsed and
validated on a worker thread, session by session, and its answer serialized there: a batch of
1,000 sessions costs ~200 ms of parsing and validation, which on the event loop would stall
every other request (`/healthz` included) for as long. A thread holds the GIL for at most one
session's validation at a time, so the loop keeps answering. Shorter bodies stay on the loop,
where a thread hop would cost more than it saves."""
_SESSION = TypeAdapter(SessionEvents)
_PLACEHOLDER: dict[str, Any] = {
    "events": []
}  # a valid session: stands in while the top level is validated
_BEFORE_SESSIONS = ("session_id", "events")  # PredictBody's fields ahead of sessions


class _NotPlainJson(Exception):
    """A body orjson does not take (not JSON, NaN, huge ints): FastAPI's own path answers it."""


def validate_predict_body(raw: bytes) -> PredictBody:
    """`raw` as a PredictBody, validated one session at a time (for a worker thread); the same
    errors, in the same order and shape, as FastAPI's validation of the whole body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _NotPlainJson from exc
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, list) or not sessions or len(sessions) > MAX_BATCH_SESSIONS:
        try:
            return PredictBody.model_validate(data)
        except ValidationError as exc:
            raise _request_error(exc.errors(include_url=False)) from None
    validated: list[SessionEvents] = []
    inner: list[Any] = []
    for i, session in enumerate(sessions):
        try:
            validated.append(_SESSION.validate_python(session))
        except ValidationError as exc:
            inner += [
                {**e, "loc": ("sessions", i, *e["loc"])} for e in exc.errors(include_url=False)
            ]
    try:
        top = PredictBody.model_validate({**data, "sessions": [_PLACEHOLDER] * len(sessions)})
    except ValidationError as exc:
        outer = exc.errors(include_url=False)
        if inner:  # pydantic runs the model's own checks only when every field is valid
            outer = [e for e in outer if e["loc"]]
        raise _request_error(
            [e for e in outer if e["loc"] and e["loc"][0] in _BEFORE_SESSIONS]
            + inner
            + [e for e in outer if not e["loc"] or e["loc"][0] not in _BEFORE_SESSIONS]
        ) from None
    if inner:
        raise _request_error(inner)
    return top.model_copy(update={"sessions": validated})


def _request_error(errors: Sequence[Any]) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


class PredictRoute(BoundedBodyRoute):
    """`POST /v1/predict` past the fast lane (`serve.lane`, which answers the plain bodies
    before FastAPI sees them): a long body is parsed, validated and answered off the event loop
    (see OFF_LOOP_BODY_BYTES); anything else goes through FastAPI as declared, which also gives
    the OpenAPI schema and every error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = APIRoute.get_route_handler(self)

        async def handle(request: Request) -> Response:
            bounded = BoundedBodyRequest(request.scope, request.receive)
            content_type = bounded.headers.get("content-type", "").split(";")[0].strip()
            if bounded.method != "POST" or content_type.lower() != "application/json":
                return await declared(bounded)
            raw = await bounded.body()
            if len(raw) <= OFF_LOOP_BODY_BYTES:
                return await declared(bounded)
            try:
                body = await asyncio.to_thread(validate_predict_body, raw)
            except _NotPlainJson:
                return await declared(bounded)
            result = await answer(bounded, body, bounded.app.state.scorer, off_loop=True)
            return Response(
                await asyncio.to_thread(result.model_dump_json), media_type="application/json"
            )

        return handle


router = APIRouter(prefix="/v1", tags=["predict"], route_class=BoundedBodyRoute)


async def score_logged(
    request: Request,
    scorer: Scorer,
    sessions: Sequence[ScoredSession],
    session_ids: Sequence[str | None],
    options: NextItemOptions = NextItemOptions(),
) -> list[Outcome]:
    """Score sessions and hand each answer to the prediction log (which never blocks)."""
    outcomes = await score_timed(request, scorer, sessions, options)
    log_timed(request, outcomes, session_ids)
    return outcomes


async def score_timed(
    request: Request,
    scorer: Scorer,
    sessions: Sequence[ScoredSession],
    options: NextItemOptions = NextItemOptions(),
) -> list[Outcome]:
    """Score sessions; with SMALLBOAT_SERVE_SECTIONS, time `parse` (the request so far) and
    mark when the answers were ready (where `respond` starts). The caller logs them
    (`log_timed`): the fast lane does so once the answer is sent, so a client never waits for
    its prediction log row."""
    metrics: ServeMetrics = request.app.state.metrics
    if metrics.sections is None:
        return await scorer.score(sessions, options)
    started = request.scope.get(STARTED_KEY)
    if started is not None:
        metrics.section("parse", time.perf_counter() - started)
    outcomes = await scorer.score(sessions, options)
    request.scope[SCORED_KEY] = time.perf_counter()
    return outcomes


def log_timed(
    request: Request, outcomes: Sequence[Outcome], session_ids: Sequence[str | None]
) -> None:
    """Hand `outcomes` to the prediction log; with sections, time it as `log` and keep it out
    of `respond` (which runs from the answers' readiness to the end of the request)."""
    metrics: ServeMetrics = request.app.state.metrics
    if metrics.sections is None:
        record_predictions(request, outcomes, session_ids)
        return
    clock = time.perf_counter
    began = clock()
    record_predictions(request, outcomes, session_ids)
    elapsed = clock() - began
    metrics.section("log", elapsed)
    scored = request.scope.get(SCORED_KEY)
    if scored is not None:
        request.scope[SCORED_KEY] = scored + elapsed


async def answer(
    request: Request, body: PredictBody, scorer: Scorer, *, off_loop: bool = False
) -> Prediction | BatchPredictions:
    """The answer to a `PredictBody`: one `Prediction`, or a batch of them in request order.
    `off_loop`: build the rows and the answers on a worker thread (a big batch)."""
    sessions = body.session_list()

    def rows() -> list[list[dict[str, Any]]]:
        return [s.rows() for s in sessions]

    outcomes = await score_logged(
        request,
        scorer,
        await asyncio.to_thread(rows) if off_loop else rows(),
        [s.session_id for s in sessions],
        NextItemOptions(k=body.k, exclude_seen=body.exclude_seen),
    )

    def answers() -> Prediction | BatchPredictions:
        predictions = [o.answer(s.session_id) for o, s in zip(outcomes, sessions, strict=True)]
        if not body.is_batch:
            return predictions[0]
        version = outcomes[0].prediction.model_version if outcomes else scorer.model.version
        return BatchPredictions(model_version=version, predictions=predictions)

    return await asyncio.to_thread(answers) if off_loop else answers()


async def predict_events(
    request: Request, body: PredictBody, scorer: ScorerDep
) -> Prediction | BatchPredictions:
    """P(purchase) of one session (`events`) or of many (`sessions`), from raw browsing events."""
    return await answer(request, body, scorer)


router.add_api_route(
    PREDICT_PATH.removeprefix(router.prefix),
    predict_events,
    methods=["POST"],
    responses=ERRORS,
    route_class_override=PredictRoute,
)


@router.get("/predict", responses=ERRORS)
async def predict_actions(
    request: Request,
    scorer: ScorerDep,
    settings: SettingsDep,
    session: Annotated[
        str | None,
        Query(
            max_length=16 * MAX_LAMBDA_TOKENS,
            description="Comma-separated actions, oldest first: pageview (or view), detail, add, "
            "remove, purchase; start and end (the reference Lambda's wrappers) are dropped. No "
            "SKUs or times: events are taken 10 s apart.",
        ),
    ] = None,
    x: Annotated[
        str | None,
        Query(max_length=16 * MAX_LAMBDA_TOKENS, description="The same as session (older Lambda)."),
    ] = None,
) -> LambdaPrediction:
    """The reference Lambda's form: `?session=add,detail,view` (or `?x=`), action tokens only;
    the answer also carries the Lambda's keys (`prediction`, `time`, `endpoint`)."""
    started = time.perf_counter()
    if session is not None and x is not None:
        raise HTTPException(422, "send the actions as session or as x, not both")
    text = session if session is not None else (x or "")
    name = "session" if session is not None or x is None else "x"
    tokens = [t.strip().lower() for t in text.split(",")] if text.strip() else []
    if len(tokens) > MAX_LAMBDA_TOKENS:
        raise HTTPException(422, f"{name} has {len(tokens)} actions; at most {MAX_LAMBDA_TOKENS}")
    for i, token in enumerate(tokens):
        if token not in LAMBDA_TOKENS:
            raise HTTPException(
                422, f"{name}[{i}] {token!r} is not one of {', '.join(LAMBDA_TOKENS)}"
            )
    [outcome] = await score_logged(request, scorer, [reference.action_rows(tokens)], [None])
    answer = outcome.answer(None)
    return LambdaPrediction(
        **answer.model_dump(),
        prediction=answer.purchase_probability,
        time=time.perf_counter() - started,
        endpoint=settings.serve_endpoint_name,
    )


@router.post(APPEND_PATH.removeprefix(router.prefix), responses=ERRORS)
async def append_events(
    request: Request,
    session_id: SessionId,
    body: AppendEvents,
    scorer: ScorerDep,
    sessions: SessionsDep,
) -> Prediction:
    """Add events to a stored session and predict on the session so far (what a page calls on
    each click). A session idle for 30 minutes (by event time, or by the store's clock) ends.
    The store keeps the session's model state up to date, so a click costs the same however
    long the session."""
    for i, event in enumerate(body.events):
        if event.session_id_hash is not None and event.session_id_hash != session_id:
            raise HTTPException(
                422,
                f"events[{i}].session_id_hash {event.session_id_hash!r} is not the session of "
                f"the path ({session_id!r}); leave it out or make them equal",
            )
    rows = [event.row(session_id) for event in body.events]
    window = scorer.model.predictor.spec.max_events
    prefix = await sessions.append(session_id, rows, window=window)
    [outcome] = await score_logged(request, scorer, [prefix], [session_id])
    return outcome.answer(session_id)


@router.get("/sessions/{session_id}", responses=ERRORS)
async def session_state(
    request: Request, session_id: SessionId, scorer: ScorerDep, sessions: SessionsDep
) -> Session:
    """A stored session's current visit: its raw events and the prediction on them."""
    rows = await sessions.get(session_id)
    if not rows:
        raise HTTPException(404, f"no stored session {session_id!r}")
    window = scorer.model.predictor.spec.max_events
    prefix = await sessions.prefix(session_id, window=window)
    [outcome] = await score_logged(request, scorer, [prefix], [session_id])
    return Session(
        session_id=session_id,
        events=[BrowsingEvent.model_validate(row) for row in rows],
        prediction=outcome.answer(session_id),
    )


@router.delete("/sessions/{session_id}", status_code=204, responses=ERRORS)
async def end_session(session_id: SessionId, sessions: SessionsDep) -> Response:
    """End a stored session now (404 when there is none)."""
    if not await sessions.delete(session_id):
        raise HTTPException(404, f"no stored session {session_id!r}")
    return Response(status_code=204)

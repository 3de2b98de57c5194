"""smallboat's own prediction API (`/v1`): a session's events in, a `Prediction` out; sessions
fed event by event keep their state in the session store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from smallboat.serve import reference
from smallboat.serve.deps import ScorerDep, SessionsDep
from smallboat.serve.models import (
    MAX_ID,
    AppendEvents,
    BatchPredictions,
    BrowsingEvent,
    ErrorBody,
    LambdaPrediction,
    PredictBody,
    Prediction,
    Session,
)
from smallboat.serve.prediction_log import record_predictions
from smallboat.serve.scoring import NextItemOptions, Outcome, Scorer
from smallboat.web.body import BoundedBodyRoute
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

router = APIRouter(prefix="/v1", tags=["predict"], route_class=BoundedBodyRoute)


async def score_logged(
    request: Request,
    scorer: Scorer,
    sessions: Sequence[Sequence[dict[str, Any]]],
    session_ids: Sequence[str | None],
    options: NextItemOptions = NextItemOptions(),
) -> list[Outcome]:
    """Score sessions and hand each answer to the prediction log (which never blocks)."""
    outcomes = await scorer.score(sessions, options)
    record_predictions(request, outcomes, session_ids)
    return outcomes


async def answer(
    request: Request, body: PredictBody, scorer: Scorer
) -> Prediction | BatchPredictions:
    """The answer to a `PredictBody`: one `Prediction`, or a batch of them in request order."""
    sessions = body.session_list()
    outcomes = await score_logged(
        request,
        scorer,
        [s.rows() for s in sessions],
        [s.session_id for s in sessions],
        NextItemOptions(k=body.k, exclude_seen=body.exclude_seen),
    )
    predictions = [o.answer(s.session_id) for o, s in zip(outcomes, sessions, strict=True)]
    if not body.is_batch:
        return predictions[0]
    version = outcomes[0].prediction.model_version if outcomes else scorer.model.version
    return BatchPredictions(model_version=version, predictions=predictions)


@router.post("/predict", responses=ERRORS)
async def predict_events(
    request: Request, body: PredictBody, scorer: ScorerDep
) -> Prediction | BatchPredictions:
    """P(purchase) of one session (`events`) or of many (`sessions`), from raw browsing events."""
    return await answer(request, body, scorer)


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


@router.post("/sessions/{session_id}/events", responses=ERRORS)
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
    return outcome.answer(session_id)


@router.get("/sessions/{session_id}", responses=ERRORS)
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
        prediction=outcome.answer(session_id),
    )


@router.delete("/sessions/{session_id}", status_code=204, responses=ERRORS)
async def end_session(session_id: SessionId, sessions: SessionsDep) -> Response:
    """End a stored session now (404 when there is none)."""
    if not await sessions.delete(session_id):
        raise HTTPException(404, f"no stored session {session_id!r}")
    return Response(status_code=204)

"""KServe's v1 protocol (TensorFlow Serving's REST API): `GET /v1/models/{name}` (ready state) and
`POST /v1/models/{name}:predict` (`{"instances": [...]}` -> `{"predictions": [...]}`), and the
`instances` answer SageMaker's routes share.

An instance is a session in one of three forms: the reference's one-hot action rows, the
reference's token ids (next-item scores per vocabulary id), or `{"events": [...]}` in the
canonical browsing columns. The intent forms answer `[p]` per instance (null when there is nothing
to predict from). Errors are KServe's `{"error": "<message>"}`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from smallboat.config import Settings
from smallboat.features.spec import SKU_FIRST as FIRST_SKU_ID
from smallboat.serve import reference
from smallboat.serve.deps import ScorerDep
from smallboat.serve.endpoints import answers_to, describe_names
from smallboat.serve.models import MAX_BATCH_SESSIONS, SessionEvents
from smallboat.serve.routes.predict import score_logged
from smallboat.serve.scoring import NextItemOptions, Scorer
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.deps import SettingsDep
from smallboat.web.errors import describe_errors

VERSION_HEADER = "x-smallboat-model-version"
"""The model version that produced an answer (on every `instances` answer)."""
UNKNOWN_ROWS_HEADER = "x-smallboat-unknown-rows"
"""All-zero one-hot rows dropped from the request's sessions (the reference's "empty" action)."""
INSTANCES_FIELDS = frozenset({"instances", "mask", "signature_name"})

router = APIRouter(tags=["kserve"], route_class=BoundedBodyRoute)


class InstancesError(Exception):
    """A request in the `instances` form that cannot be answered: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InstancesAnswer:
    predictions: list[Any]
    version: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps({"predictions": self.predictions}, allow_nan=False).encode()

    def response_headers(self) -> dict[str, str]:
        return {VERSION_HEADER: self.version, **self.headers}


async def read_raw(request: Request) -> bytes:
    """The body's bytes, or an InstancesError (413 too large, 415 an unknown encoding)."""
    try:
        return await request.body()
    except HTTPException as exc:
        raise InstancesError(exc.status_code, str(exc.detail)) from None


async def read_json(request: Request) -> Any:
    """The body as JSON, or an InstancesError (400 not JSON, 413 too large)."""
    raw = await read_raw(request)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InstancesError(400, f"body is not valid JSON: {exc}") from None


async def answer_instances(request: Request, scorer: Scorer, body: Any) -> InstancesAnswer:
    """Score a `{"instances": [...]}` body (any of the three instance forms)."""
    if not isinstance(body, dict) or "instances" not in body:
        raise InstancesError(400, 'body needs "instances": a list of sessions')
    unknown = sorted(set(body) - INSTANCES_FIELDS)
    if unknown:
        raise InstancesError(
            400, f"{unknown[0]} is not a field of this body (instances, mask, signature_name)"
        )
    instances = body["instances"]
    if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_BATCH_SESSIONS:
        raise InstancesError(
            400, f"instances must be a list of 1 to {MAX_BATCH_SESSIONS:,} sessions"
        )
    try:
        if all(isinstance(i, dict) for i in instances):
            return await _events_form(request, scorer, instances)
        if reference.is_one_hot_form(instances):
            if "mask" in body:
                raise InstancesError(
                    400, "mask belongs to the token-id form; one-hot rows have none"
                )
            return await _one_hot_form(request, scorer, instances)
        return await _token_form(request, scorer, instances, body.get("mask"))
    except reference.ReferenceFormatError as exc:
        raise InstancesError(400, str(exc)) from None


async def _events_form(
    request: Request, scorer: Scorer, instances: list[dict[str, Any]]
) -> InstancesAnswer:
    sessions = []
    for i, instance in enumerate(instances):
        try:
            sessions.append(SessionEvents.model_validate(instance))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise InstancesError(
                400, describe_errors([{**e, "loc": ("instances", i, *e["loc"])} for e in errors])
            ) from None
    outcomes = await score_logged(
        request, scorer, [s.rows() for s in sessions], [s.session_id for s in sessions]
    )
    version = outcomes[0].prediction.model_version
    return InstancesAnswer([[o.prediction.purchase_probability] for o in outcomes], version)


async def _one_hot_form(request: Request, scorer: Scorer, instances: list[Any]) -> InstancesAnswer:
    read = reference.read_one_hot(instances)
    outcomes = await score_logged(request, scorer, read.sessions, [None] * len(read.sessions))
    return InstancesAnswer(
        [[o.prediction.purchase_probability] for o in outcomes],
        outcomes[0].prediction.model_version,
        {UNKNOWN_ROWS_HEADER: str(sum(read.unknown_rows))},
    )


async def _token_form(
    request: Request, scorer: Scorer, instances: list[Any], mask: Any
) -> InstancesAnswer:
    """Next-item scores per vocabulary id, at each instance's mask position (the other positions
    answer an empty list): what the reference's masked model returned where it was read."""
    predictor = scorer.model.predictor
    if predictor.next_item is None:
        raise InstancesError(
            400, f"model {scorer.model.version} has no next-item recommender for token ids"
        )
    names = list(predictor.sku_names)
    mask_id = len(names)
    if mask is not None and mask != mask_id:
        raise InstancesError(
            400, f"mask {mask!r} is not this model's mask token id {mask_id} (see export-vocab)"
        )
    read = reference.read_tokens(instances, mask=mask_id, names=names)
    outcomes = await score_logged(
        request,
        scorer,
        read.sessions,
        [None] * len(read.sessions),
        NextItemOptions(k=max(1, mask_id - FIRST_SKU_ID)),
    )
    index = {sku: i for i, sku in enumerate(names) if i >= FIRST_SKU_ID}
    predictions: list[Any] = []
    for outcome, at, length in zip(outcomes, read.mask_positions, read.lengths, strict=True):
        items = outcome.prediction.next_items or []
        scores = np.full(mask_id + 1, np.nan)
        for item in items:
            scores[index[item.sku]] = item.score
        finite = scores[np.isfinite(scores)]
        floor = (float(finite.min()) if len(finite) else 0.0) - 1.0
        row = [floor if math.isnan(v) else float(v) for v in scores]
        predictions.append([row if p == at else [] for p in range(length)])
    return InstancesAnswer(predictions, outcomes[0].prediction.model_version)


def v1_error(status: int, message: str) -> JSONResponse:
    """KServe's v1 error body."""
    return JSONResponse({"error": message}, status_code=status)


@router.get("/")
async def alive() -> dict[str, str]:
    """KServe v1 liveness (`{"status": "alive"}`), what `InferenceRESTClient.is_server_live`
    reads."""
    return {"status": "alive"}


@router.get("/v1/models/{name}")
async def model_ready(name: str, scorer: ScorerDep, settings: SettingsDep) -> Response:
    """KServe v1 model status: `{"name": ..., "ready": true}` once the model is loaded."""
    if not answers_to(settings, name):
        return v1_error(404, _unknown_model(name, settings))
    return JSONResponse({"name": name, "ready": True})


@router.post("/v1/models/{name}:predict")
async def predict(
    name: str, request: Request, scorer: ScorerDep, settings: SettingsDep
) -> Response:
    """KServe v1 / TF Serving predict: `{"instances": [...]}` -> `{"predictions": [[p], ...]}`."""
    if not answers_to(settings, name):
        return v1_error(404, _unknown_model(name, settings))
    try:
        answer = await answer_instances(request, scorer, await read_json(request))
    except InstancesError as exc:
        return v1_error(exc.status, str(exc))
    return Response(answer.body(), media_type="application/json", headers=answer.response_headers())


def _unknown_model(name: str, settings: Settings) -> str:
    return f"model {name!r} not found: this service answers to {describe_names(settings)}"

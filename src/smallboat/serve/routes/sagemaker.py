"""SageMaker's protocols: the container contract (`GET /ping`, `POST /invocations`) and the
runtime API (`POST /endpoints/{name}/invocations`), both taking the body of `/v1/predict` or the
reference project's `{"instances": [...]}` (answered `{"predictions": [[p], ...]}`, see
`routes.kserve`). Every answer names the model version in `x-smallboat-model-version`. The
runtime route answers to the names of `serve.endpoints` (a list, or patterns)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from smallboat.serve.deps import ScorerDep
from smallboat.serve.endpoints import answers_to, describe_names
from smallboat.serve.models import BatchPredictions, PredictBody
from smallboat.serve.plainbody import answer_json, plain_predict_body
from smallboat.serve.routes.kserve import VERSION_HEADER, InstancesError, answer_instances
from smallboat.serve.routes.predict import ERRORS, OFF_LOOP_BODY_BYTES, answer, score_logged
from smallboat.serve.scoring import Scorer
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.deps import SettingsDep
from smallboat.web.errors import ERROR_CODES, describe_errors, error_response

router = APIRouter(tags=["sagemaker"], route_class=BoundedBodyRoute)


@router.get(
    "/ping",
    response_class=Response,
    responses={200: {"description": "The model is loaded (an empty body).", "content": {}}},
)
async def ping(scorer: ScorerDep) -> Response:
    """SageMaker's container health check: 200 once the model is loaded."""
    return Response(status_code=200)


@router.post("/invocations", responses=ERRORS)
async def invocations(request: Request, scorer: ScorerDep) -> Response:
    """SageMaker's container contract: the body of `/v1/predict`, as application/json."""
    return await _invoke(request, scorer, runtime=False)


@router.post("/endpoints/{name}/invocations", responses=ERRORS)
async def runtime_invocations(
    name: str, request: Request, scorer: ScorerDep, settings: SettingsDep
) -> Response:
    """The SageMaker runtime API (`invoke_endpoint`), so boto3's `sagemaker-runtime` client works
    with `endpoint_url` pointing here. Requests are not SigV4-checked: put the service behind
    your gateway's authentication."""
    if not answers_to(settings, name):
        return _runtime_error(
            404,
            "ValidationError",
            f"endpoint {name!r} not found: this service answers to {describe_names(settings)}",
        )
    return await _invoke(request, scorer, runtime=True)


async def _invoke(request: Request, scorer: Scorer, *, runtime: bool) -> Response:
    """Content types are checked and the body validated here, not by FastAPI: SageMaker hands
    the container opaque bytes with a ContentType."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        detail = f"ContentType {content_type!r} is not supported; send application/json"
        return _runtime_error(415, "ValidationError", detail, runtime=runtime)
    raw = await request.body()
    headers = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"} if runtime else {}
    if b'"instances"' in raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None  # PredictBody names what is wrong with it
        if isinstance(parsed, dict) and "instances" in parsed:
            try:
                done = await answer_instances(request, scorer, parsed)
            except InstancesError as exc:
                status = 422 if exc.status == 400 else exc.status
                return _runtime_error(status, "ValidationError", str(exc), runtime=runtime)
            return Response(
                done.body(),
                media_type="application/json",
                headers={**headers, **done.response_headers()},
            )
    plain = plain_predict_body(raw) if len(raw) <= OFF_LOOP_BODY_BYTES else None
    if plain is not None:  # the fast lane of /v1/predict (`serve.plainbody`)
        outcomes = await score_logged(
            request, scorer, plain.sessions, plain.session_ids, plain.options
        )
        headers[VERSION_HEADER] = outcomes[0].prediction.model_version
        return Response(
            answer_json(plain, outcomes, scorer.model.version),
            media_type="application/json",
            headers=headers,
        )
    try:
        body = PredictBody.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        detail = describe_errors([{**e, "loc": ("body", *e["loc"])} for e in errors])
        return _runtime_error(status, "ValidationError", detail, runtime=runtime)
    result = await answer(request, body, scorer)
    version = result.model_version
    if isinstance(result, BatchPredictions) and result.predictions:
        version = result.predictions[0].model_version
    headers[VERSION_HEADER] = version
    return Response(result.model_dump_json(), media_type="application/json", headers=headers)


def _runtime_error(status: int, kind: str, detail: str, *, runtime: bool = True) -> Response:
    """An error body; on the runtime route also the header and `message` that botocore reads, so
    a boto3 caller gets a ClientError with this code and text."""
    if not runtime:
        return error_response(status, detail)
    body = {"error": ERROR_CODES.get(status, "error"), "detail": detail, "message": detail}
    return JSONResponse(body, status_code=status, headers={"x-amzn-ErrorType": kind})

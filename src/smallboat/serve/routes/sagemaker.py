"""SageMaker's protocols: the container contract (`GET /ping`, `POST /invocations`) and the
runtime API (`POST /endpoints/{name}/invocations`), both taking the body of `/v1/predict`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from smallboat.serve.deps import ScorerDep
from smallboat.serve.models import PredictBody
from smallboat.serve.routes.predict import ERRORS, answer
from smallboat.serve.scoring import Scorer
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.deps import SettingsDep
from smallboat.web.errors import ERROR_CODES, describe_errors, error_response

router = APIRouter(tags=["sagemaker"], route_class=BoundedBodyRoute)


@router.get("/ping")
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

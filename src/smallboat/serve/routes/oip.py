"""The Open Inference Protocol (KServe v2, Triton's HTTP API): `GET /v2/health/live`,
`/v2/health/ready`, `GET /v2` (server metadata), `GET /v2/models/{name}` (model metadata),
`/v2/models/{name}/ready` and `POST /v2/models/{name}/infer`.

The model takes one of two inputs: `events`, BYTES of shape [N], each element one session's
canonical browsing events as JSON (a list, or `{"events": [...]}`); or `actions`, an integer or
float tensor of shape [N, T, 7] holding the reference's one-hot action rows (all-zero rows are
padding, and the reference's unknown actions). It answers `purchase_probability` (FP32 [N, 1];
0 where `scored` is false) and `scored` (BOOL [N, 1]: false when the session has nothing to
predict from). Tensors travel as JSON or in the binary tensor extension (the default of
`tritonclient`). Errors are the protocol's `{"error": "<message>"}`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from smallboat import __version__
from smallboat.config import Settings
from smallboat.serve import reference
from smallboat.serve.deps import ScorerDep
from smallboat.serve.endpoints import answers_to, describe_names
from smallboat.serve.models import MAX_BATCH_SESSIONS, SessionEvents
from smallboat.serve.routes.kserve import (
    UNKNOWN_ROWS_HEADER,
    VERSION_HEADER,
    InstancesError,
    read_raw,
)
from smallboat.serve.routes.predict import score_logged
from smallboat.web.body import BoundedBodyRoute
from smallboat.web.deps import SettingsDep
from smallboat.web.errors import describe_errors

HEADER_LENGTH = "inference-header-content-length"
"""The binary tensor extension: the JSON part's length; binary tensor data follows it."""
PLATFORM = "smallboat_pytorch"
INPUTS = [
    {"name": "events", "datatype": "BYTES", "shape": [-1]},
    {"name": "actions", "datatype": "INT32", "shape": [-1, -1, len(reference.ONE_HOT_ACTIONS)]},
]
OUTPUTS = [
    {"name": "purchase_probability", "datatype": "FP32", "shape": [-1, 1]},
    {"name": "scored", "datatype": "BOOL", "shape": [-1, 1]},
]
NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=BoundedBodyRoute)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
async def ready(scorer: ScorerDep) -> dict[str, bool]:
    """Ready once the model is loaded (the app answers only then)."""
    return {"ready": True}


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return {"name": "smallboat", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/models/{name}")
async def model_metadata(name: str, scorer: ScorerDep, settings: SettingsDep) -> Response:
    if not answers_to(settings, name):
        return error(404, _unknown(name, settings))
    return JSONResponse(
        {
            "name": name,
            "versions": [scorer.model.version],
            "platform": PLATFORM,
            "inputs": INPUTS,
            "outputs": OUTPUTS,
        }
    )


@router.get("/models/{name}/ready")
async def model_ready(name: str, scorer: ScorerDep, settings: SettingsDep) -> Response:
    if not answers_to(settings, name):
        return error(404, _unknown(name, settings))
    return JSONResponse({"name": name, "ready": True})


@router.post("/models/{name}/infer")
async def infer(name: str, request: Request, scorer: ScorerDep, settings: SettingsDep) -> Response:
    """Score the sessions of the `events` or `actions` input; one row per session."""
    if not answers_to(settings, name):
        return error(404, _unknown(name, settings))
    try:
        header, binary = await _read(request)
        sessions, ids, unknown = _sessions(header, binary)
    except InstancesError as exc:
        return error(exc.status, str(exc))
    outcomes = await score_logged(request, scorer, sessions, ids)
    version = outcomes[0].prediction.model_version
    probability = np.array(
        [o.prediction.purchase_probability or 0.0 for o in outcomes], dtype=np.float32
    ).reshape(-1, 1)
    scored = np.array(
        [o.prediction.purchase_probability is not None for o in outcomes], dtype=np.bool_
    ).reshape(-1, 1)
    body: dict[str, Any] = {"model_name": name, "model_version": version}
    if isinstance(header.get("id"), str):
        body["id"] = header["id"]
    headers = {VERSION_HEADER: version, UNKNOWN_ROWS_HEADER: str(unknown)}
    return _answer(body, {"purchase_probability": probability, "scored": scored}, header, headers)


async def _read(request: Request) -> tuple[dict[str, Any], bytes]:
    """The request's JSON header and the binary data after it (empty without the extension)."""
    raw = await read_raw(request)
    declared = request.headers.get(HEADER_LENGTH)
    if declared is not None:
        if not declared.isdigit() or int(declared) > len(raw):
            raise InstancesError(
                400, f"Inference-Header-Content-Length {declared!r} is not a length within the body"
            )
        text, binary = raw[: int(declared)], raw[int(declared) :]
    else:
        text, binary = raw, b""
    try:
        header = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InstancesError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InstancesError(400, 'body needs "inputs": a list of input tensors')
    return header, binary


def _sessions(
    header: dict[str, Any], binary: bytes
) -> tuple[list[list[dict[str, Any]]], list[str | None], int]:
    inputs = header["inputs"]
    names = [i.get("name") if isinstance(i, dict) else None for i in inputs]
    if len(inputs) != 1 or names[0] not in ("events", "actions"):
        raise InstancesError(400, f"inputs must be one tensor named events or actions, got {names}")
    tensor = inputs[0]
    values = _tensor_values(tensor, binary)
    shape = tensor.get("shape")
    if tensor["name"] == "events":
        if tensor.get("datatype") != "BYTES":
            raise InstancesError(400, f"input events is {tensor.get('datatype')}; expected BYTES")
        texts = list(values)
        if not 1 <= len(texts) <= MAX_BATCH_SESSIONS:
            raise InstancesError(
                400, f"events holds {len(texts)} sessions; 1 to {MAX_BATCH_SESSIONS:,}"
            )
        sessions, ids = [], []
        for i, text in enumerate(texts):
            session = _session_events(i, text)
            sessions.append(session.rows())
            ids.append(session.session_id)
        return sessions, ids, 0
    array = np.asarray(values)
    if not isinstance(shape, list) or len(shape) != 3 or shape[2] != len(reference.ONE_HOT_ACTIONS):
        raise InstancesError(
            400, f"input actions has shape {shape}; expected [sessions, rows, 7] one-hot rows"
        )
    if array.size != int(np.prod(shape)):
        raise InstancesError(
            400,
            f"input actions holds {array.size} values; its shape {shape} needs "
            f"{int(np.prod(shape))}",
        )
    if not 1 <= shape[0] <= MAX_BATCH_SESSIONS:
        raise InstancesError(400, f"actions holds {shape[0]} sessions; 1 to {MAX_BATCH_SESSIONS:,}")
    rows: Any = array.reshape(shape).astype(np.float64).tolist()
    try:
        read = reference.read_one_hot(rows, where="actions")
    except reference.ReferenceFormatError as exc:
        raise InstancesError(400, str(exc)) from None
    return read.sessions, [None] * len(read.sessions), sum(read.unknown_rows)


def _tensor_values(tensor: dict[str, Any], binary: bytes) -> list[Any]:
    """A tensor's elements, flat: from `data` (JSON, nested or flat) or from its slice of the
    binary data (`parameters.binary_data_size`)."""
    name, datatype = tensor.get("name"), tensor.get("datatype")
    if datatype != "BYTES" and datatype not in NUMERIC:
        raise InstancesError(400, f"input {name} has datatype {datatype!r}; not a v2 datatype")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise InstancesError(400, f"input {name} has no data (nor binary_data_size)")
        return list(_flatten(tensor["data"]))
    if not isinstance(size, int) or not 0 <= size <= len(binary):
        raise InstancesError(400, f"input {name} binary_data_size {size!r} exceeds the body")
    chunk = binary[:size]
    if datatype == "BYTES":
        out, at = [], 0
        while at < len(chunk):
            if at + 4 > len(chunk):
                raise InstancesError(400, f"input {name}: a BYTES element's length is cut off")
            (length,) = struct.unpack_from("<I", chunk, at)
            at += 4
            if at + length > len(chunk):
                raise InstancesError(400, f"input {name}: a BYTES element is cut off")
            out.append(chunk[at : at + length])
            at += length
        return out
    dtype = np.dtype(NUMERIC[datatype]).newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise InstancesError(
            400, f"input {name}: {len(chunk)} bytes is not a whole number of {datatype}"
        )
    return np.frombuffer(chunk, dtype=dtype).tolist()


def _flatten(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _session_events(i: int, text: Any) -> SessionEvents:
    """Element i of the events input: a session's events as JSON (a list, or an object)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise InstancesError(
            400,
            f'events[{i}] is not JSON text of a session\'s events (a list or {{"events": [...]}})',
        ) from None
    if isinstance(value, list):
        value = {"events": value}
    try:
        return SessionEvents.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise InstancesError(
            400, describe_errors([{**e, "loc": (f"events[{i}]", *e["loc"])} for e in errors])
        ) from None


def _answer(
    body: dict[str, Any],
    outputs: dict[str, np.ndarray],
    header: dict[str, Any],
    headers: dict[str, str],
) -> Response:
    """The outputs the request asked for (all by default), as JSON or binary tensors."""
    requested = header.get("outputs")
    binary_default = bool((header.get("parameters") or {}).get("binary_data_output", False))
    wanted: list[tuple[str, bool]] = []
    if isinstance(requested, list) and requested:
        for out in requested:
            name = out.get("name") if isinstance(out, dict) else None
            if name not in outputs:
                return error(400, f"output {name!r} is not one of {', '.join(outputs)}")
            params = out.get("parameters") or {}
            wanted.append((name, bool(params.get("binary_data", binary_default))))
    else:
        wanted = [(name, binary_default) for name in outputs]
    described, chunks = [], []
    for name, as_binary in wanted:
        array = outputs[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": "BOOL" if array.dtype == np.bool_ else "FP32",
            "shape": list(array.shape),
        }
        if as_binary:
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = array.reshape(-1).tolist()
        described.append(entry)
    text = json.dumps({**body, "outputs": described}).encode()
    if not chunks:
        return Response(text, media_type="application/json", headers=headers)
    return Response(
        text + b"".join(chunks),
        media_type="application/octet-stream",
        headers={**headers, "Inference-Header-Content-Length": str(len(text))},
    )


def _unknown(name: str, settings: Settings) -> str:
    return f"model {name!r} not found: this service answers to {describe_names(settings)}"

"""The reference project's clients and the ecosystem's inference clients against `smallboat
serve` (a TrainFlow-trained champion in a child process on 127.0.0.1), each unchanged but for the
host: the reference Lambdas' request paths through boto3's `sagemaker-runtime`, `tritonclient`
(Open Inference Protocol, binary tensors by default) and the `kserve` SDK's REST client (v1 and
v2). One session through every route gets one probability."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from smallboat.serve.server import ServeProcess
from smallboat.serve.vocabulary import export_bundle_vocabulary
from tests.trained_service import Trained

pytestmark = pytest.mark.slow

NAME = "smallboat-intent"
LAMBDA_ENDPOINT = "intent-1624889175387-endpoint"  # the reference Lambda's default name
ACTION_MAP = {  # the reference Lambda's "feature store", verbatim
    "start": [1, 0, 0, 0, 0, 0, 0],
    "end": [0, 1, 0, 0, 0, 0, 0],
    "add": [0, 0, 1, 0, 0, 0, 0],
    "remove": [0, 0, 0, 1, 0, 0, 0],
    "purchase": [0, 0, 0, 0, 1, 0, 0],
    "detail": [0, 0, 0, 0, 0, 1, 0],
    "view": [0, 0, 0, 0, 0, 0, 1],
    "empty": [0, 0, 0, 0, 0, 0, 0],
}


@pytest.fixture(scope="module")
def service(trained: Trained) -> Iterator[str]:
    env = {"SMALLBOAT_SERVE_ENDPOINT_NAMES": "intent-*-endpoint"}
    with ServeProcess(trained.settings.home_dir, env=env) as process:
        yield process.url


def runtime(url: str) -> Any:
    import boto3

    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def lambda_predict(client: Any, session_str: str) -> tuple[Any, dict[str, str]]:
    """The reference intent Lambda's request path (handler.predict), verbatim but for logging."""
    session = session_str.split(",") if session_str != "" else []
    session = ["start", *session, "end"]
    session_onehot = [ACTION_MAP[_] if _ in ACTION_MAP else ACTION_MAP["empty"] for _ in session]
    input_payload = {"instances": [session_onehot]}
    response = client.invoke_endpoint(
        EndpointName=LAMBDA_ENDPOINT, ContentType="application/json", Body=json.dumps(input_payload)
    )
    result = json.loads(response["Body"].read().decode())
    return result["predictions"][0][0], response["ResponseMetadata"]["HTTPHeaders"]


def test_the_reference_intent_lambda_through_boto3(service: str) -> None:
    client = runtime(service)
    served = httpx.get(f"{service}/v1/predict", params={"session": "detail,add,view"}).json()
    prediction, headers = lambda_predict(client, "detail,add,view")
    assert prediction == pytest.approx(served["purchase_probability"], abs=1e-6)
    assert headers["x-smallboat-model-version"] == served["model_version"]
    assert headers["x-smallboat-unknown-rows"] == "0"
    # an action the Lambda does not know is its all-zero "empty" row: dropped and counted
    unknown, headers = lambda_predict(client, "detail,add,scroll,view")
    assert unknown == pytest.approx(prediction, abs=1e-9)
    assert headers["x-smallboat-unknown-rows"] == "1"
    # the Lambda's GET forms answer with its keys too
    older = httpx.get(f"{service}/v1/predict", params={"x": "start,detail,add,view,end"}).json()
    assert older["prediction"] == pytest.approx(prediction, abs=1e-6)
    assert older["endpoint"] == NAME and older["time"] >= 0.0


def test_one_session_through_every_route_gets_one_probability(
    trained: Trained, service: str
) -> None:
    import tritonclient.http as triton
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    onehot = [ACTION_MAP[a] for a in ("start", "detail", "add", "detail", "view", "end")]
    events = trained.sessions[0]
    expected_events = float(trained.offline[0])
    expected_actions = httpx.get(
        f"{service}/v1/predict", params={"session": "detail,add,detail,view"}
    ).json()["purchase_probability"]

    got: dict[str, float] = {}
    got["GET ?x="] = httpx.get(
        f"{service}/v1/predict", params={"x": "detail,add,detail,view"}
    ).json()["prediction"]
    for path in ("/invocations", f"/v1/models/{NAME}:predict"):
        r = httpx.post(f"{service}{path}", json={"instances": [onehot]})
        got[f"{path} one-hot"] = r.json()["predictions"][0][0]
        r = httpx.post(f"{service}{path}", json={"instances": [{"events": events}]})
        got[f"{path} events"] = r.json()["predictions"][0][0]
    got["/v1/predict events"] = httpx.post(f"{service}/v1/predict", json={"events": events}).json()[
        "purchase_probability"
    ]
    client = runtime(service)
    for name in (NAME, LAMBDA_ENDPOINT):
        answer = client.invoke_endpoint(
            EndpointName=name,
            ContentType="application/json",
            Body=json.dumps({"instances": [onehot]}),
        )
        got[f"boto3 {name}"] = json.loads(answer["Body"].read())["predictions"][0][0]

    host = service.removeprefix("http://")
    server = triton.InferenceServerClient(url=host)
    tensor = triton.InferInput("actions", [1, len(onehot), 7], "INT32")
    tensor.set_data_from_numpy(np.array([onehot], dtype=np.int32))  # binary, the default
    got["triton actions"] = float(
        server.infer(NAME, [tensor]).as_numpy("purchase_probability")[0, 0]
    )
    text = triton.InferInput("events", [1], "BYTES")
    text.set_data_from_numpy(np.array([json.dumps(events).encode()], dtype=np.object_))
    result = server.infer(NAME, [text])
    got["triton events"] = float(result.as_numpy("purchase_probability")[0, 0])
    assert result.as_numpy("scored").tolist() == [[True]]

    async def kserve_calls() -> None:
        v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
        answer = await v1.infer(service, {"instances": [onehot]}, model_name=LAMBDA_ENDPOINT)
        got["kserve v1"] = answer["predictions"][0][0]
        v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
        request = InferRequest(
            model_name=NAME,
            infer_inputs=[
                InferInput(
                    "actions", [1, len(onehot), 7], "INT32", data=np.array([onehot], dtype=np.int32)
                )
            ],
        )
        response = await v2.infer(service, request, model_name=NAME)
        got["kserve v2"] = float(response.outputs[0].as_numpy().reshape(-1)[0])
        await v1.close()
        await v2.close()

    asyncio.run(kserve_calls())
    for route, value in got.items():
        wanted = expected_events if "events" in route else expected_actions
        assert value == pytest.approx(wanted, abs=1e-6), route
    assert len(got) == 12


def test_triton_client_health_metadata_and_errors(service: str) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    server = triton.InferenceServerClient(url=service.removeprefix("http://"))
    assert server.is_server_live() and server.is_server_ready()
    assert server.is_model_ready(NAME) and server.is_model_ready(LAMBDA_ENDPOINT)
    assert not server.is_model_ready("nope")
    metadata = server.get_model_metadata(NAME)
    assert [i["name"] for i in metadata["inputs"]] == ["events", "actions"]
    assert metadata["outputs"][0] == {
        "name": "purchase_probability",
        "datatype": "FP32",
        "shape": [-1, 1],
    }
    with pytest.raises(InferenceServerException, match="model 'nope' not found"):
        server.get_model_metadata("nope")
    bad = triton.InferInput("actions", [1, 2, 6], "INT32")
    bad.set_data_from_numpy(np.zeros((1, 2, 6), dtype=np.int32))
    with pytest.raises(InferenceServerException, match=r"input actions has shape \[1, 2, 6\]"):
        server.infer(NAME, [bad])
    two = triton.InferInput("actions", [1, 1, 7], "INT32")
    two.set_data_from_numpy(np.array([[[0, 0, 1, 0, 0, 1, 0]]], dtype=np.int32))
    with pytest.raises(InferenceServerException, match=r"actions\[0\]\[0\] marks add, detail"):
        server.infer(NAME, [two])


def test_kserve_client_readiness_and_errors(service: str) -> None:
    from kserve import InferenceRESTClient, RESTConfig

    async def calls() -> None:
        v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
        v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            assert await v1.is_server_live(service)
            assert await v1.is_model_ready(service, NAME)
            assert await v2.is_server_live(service) and await v2.is_server_ready(service)
            assert await v2.is_model_ready(service, NAME)
            with pytest.raises(httpx.HTTPStatusError, match="instances must be a list of 1 to"):
                await v1.infer(service, {"instances": []}, model_name=NAME)
            with pytest.raises(httpx.HTTPStatusError, match="model 'nope' not found"):
                await v1.infer(service, {"instances": [[]]}, model_name="nope")
        finally:
            await v1.close()
            await v2.close()

    asyncio.run(calls())


def test_the_reference_recommendation_lambda_with_the_exported_vocabulary(
    trained: Trained, service: str, tmp_path: Path
) -> None:
    """The reference's recommendation Lambda (token mapping file, session + mask, last 20, padded;
    top 10 of the scores at the mask position) gets the next items /v1/predict ranks."""
    mapping_file = tmp_path / "token_mapping.json"
    export_bundle_vocabulary(trained.settings, mapping_file, bundle=None)
    token_mapping = json.loads(mapping_file.read_text())
    skus = [r["product_sku_hash"] for r in trained.sessions[0] if r["product_sku_hash"]][-5:]
    assert skus

    session = [*skus, "mask"][-20:]
    ids = [token_mapping["token2id"].get(_, token_mapping["token2id"]["[UNK]"]) for _ in session]
    ids = ids + [0] * (20 - len(session))
    answer = runtime(service).invoke_endpoint(
        EndpointName=LAMBDA_ENDPOINT,
        ContentType="application/json",
        Body=json.dumps({"instances": [ids]}),
    )
    response = json.loads(answer["Body"].read().decode())["predictions"][0]
    mask_token_id = token_mapping["token2id"]["mask"]
    masked_index = [_ for _ in range(len(ids)) if ids[_] == mask_token_id][0]  # noqa: RUF015
    scores = response[masked_index]
    assert len(scores) == len(token_mapping["id2token"])
    top = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:10]
    recommended = [token_mapping["id2token"][str(_)] for _ in top]

    rows = [
        {
            "event_type": "event_product",
            "product_action": "detail",
            "product_sku_hash": sku,
            "server_timestamp_epoch_ms": 10_000 * i,
        }
        for i, sku in enumerate(skus)
    ]
    direct = httpx.post(f"{service}/v1/predict", json={"events": rows, "k": 10}).json()
    assert recommended == [item["sku"] for item in direct["next_items"]]

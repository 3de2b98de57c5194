"""The reference's wire formats and the inference protocols in-process (FastAPI's TestClient, a
small random-weight bundle): parsing, the errors of each protocol in its own shape, the binary
tensor extension byte by byte. The real clients against a real service are in
tests/integration/test_serve_clients.py."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from smallboat.config import Settings
from smallboat.serve import reference
from smallboat.serve.app import create_app
from tests.unit.test_serve_api import tiny_bundle

START, END, ADD, DETAIL, VIEW = (
    [1, 0, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0, 0],
    [0, 0, 1, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
)
EMPTY = [0] * 7
NAME = "smallboat-intent"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("protocols")
    settings = Settings(home=folder / "home", serve_endpoint_names="intent-*-endpoint, other")
    with TestClient(create_app(settings, bundle=tiny_bundle(folder / "b"))) as c:
        yield c


def test_one_hot_rows_read_as_actions_with_wrappers_and_unknown_rows_dropped() -> None:
    read = reference.read_one_hot([[START, DETAIL, EMPTY, ADD, VIEW, END], []])
    assert [[(r["event_type"], r["product_action"]) for r in s] for s in read.sessions] == [
        [("event_product", "detail"), ("event_product", "add"), ("pageview", None)],
        [],
    ]
    assert [r["server_timestamp_epoch_ms"] for r in read.sessions[0]] == [0, 10_000, 20_000]
    assert read.unknown_rows == [1, 0]


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ([[[1, 0]]], "instances[0][0] is a list of 2; expected 7 one-hot columns (start, end,"),
        ([[ADD, [0, 0, 2, 0, 0, 0, 0]]], "instances[0][1] [0, 0, 2, 0, 0, 0, 0] holds a value"),
        ([[[0, 0, 1, 0, 0, 1, 0]]], "instances[0][0] marks add, detail; a row is one action"),
        ([[ADD], "x"], "instances[1] is str 'x'; expected a session: a list of one-hot rows"),
    ],
)
def test_bad_one_hot_rows_are_named(instances: list, message: str) -> None:
    with pytest.raises(reference.ReferenceFormatError) as caught:
        reference.read_one_hot(instances)
    assert str(caught.value).startswith(message)


def test_token_ids_read_up_to_the_mask_or_get_it_appended() -> None:
    names = ["", "", "", "sku-a", "sku-b"]
    read = reference.read_tokens([[3, 1, 2, 5, 0, 0], [0, 4, 3]], mask=5, names=names)
    assert [[r["product_sku_hash"] for r in s] for s in read.sessions] == [
        ["sku-a", None, "[UNK]"],
        ["sku-b", "sku-a"],
    ]
    assert (read.mask_positions, read.lengths) == ([3, 3], [6, 4])
    with pytest.raises(reference.ReferenceFormatError, match=r"instances\[0\]\[1\] 9 is not a"):
        reference.read_tokens([[3, 9]], mask=5, names=names)


def test_the_exported_vocabulary_has_the_reference_shape() -> None:
    mapping = reference.export_vocabulary(["sku-a", "sku-b"])
    assert mapping["token2id"] == {
        "[PAD]": 0,
        "[PAGEVIEW]": 1,
        "[UNK]": 2,
        "sku-a": 3,
        "sku-b": 4,
        "mask": 5,
    }
    assert mapping["id2token"]["5"] == "mask" and mapping["id2token"]["3"] == "sku-a"


def test_instances_on_sagemaker_routes_and_their_errors(client: TestClient) -> None:
    body = {"instances": [[START, DETAIL, ADD, END], [START, END]]}
    r = client.post("/invocations", json=body)
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    assert 0 < predictions[0][0] < 1 and predictions[1] == [None]
    assert r.headers["x-smallboat-model-version"] == "unregistered"
    same = client.get("/v1/predict", params={"session": "detail,add"}).json()
    assert same["purchase_probability"] == pytest.approx(predictions[0][0], abs=1e-9)
    for name in ("intent-42-endpoint", "other", NAME):
        r = client.post(f"/endpoints/{name}/invocations", json=body)
        assert r.status_code == 200 and r.headers["x-amzn-invoked-production-variant"]
    r = client.post("/endpoints/intent-42/invocations", json=body)
    assert r.status_code == 404 and r.headers["x-amzn-errortype"] == "ValidationError"
    assert r.json()["message"].startswith("endpoint 'intent-42' not found: this service")
    r = client.post("/invocations", json={"instances": [[ADD]], "extra": 1})
    assert r.status_code == 422
    assert r.json() == {
        "error": "invalid_input",
        "detail": "extra is not a field of this body (instances, mask, signature_name)",
    }
    r = client.post("/invocations", json={"instances": [[3, 4]]})
    assert r.json()["detail"] == "model unregistered has no next-item recommender for token ids"


def test_the_lambda_get_forms(client: TestClient) -> None:
    a = client.get("/v1/predict", params={"session": "start,detail,add,end"}).json()
    b = client.get("/v1/predict", params={"x": "detail,add"}).json()
    assert a["prediction"] == a["purchase_probability"] == b["prediction"]
    assert a["endpoint"] == NAME and a["events_used"] == 2
    both = client.get("/v1/predict", params={"session": "add", "x": "add"})
    assert both.status_code == 422
    assert both.json()["detail"] == "send the actions as session or as x, not both"
    bad = client.get("/v1/predict", params={"x": "add,scroll"}).json()
    assert bad["detail"].startswith("x[1] 'scroll' is not one of pageview, view,")


def test_kserve_v1_routes_and_errors(client: TestClient) -> None:
    assert client.get("/").json() == {"status": "alive"}
    assert client.get(f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}
    r = client.post(f"/v1/models/{NAME}:predict", json={"instances": [[DETAIL, ADD]]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    assert client.post("/v1/models/nope:predict", json={}).status_code == 404
    r = client.post(f"/v1/models/{NAME}:predict", content=b"{", headers={"content-type": "x"})
    assert r.status_code == 400 and r.json()["error"].startswith("body is not valid JSON")
    r = client.post(f"/v1/models/{NAME}:predict", json={"inputs": []})
    assert r.json() == {"error": 'body needs "instances": a list of sessions'}
    r = client.post(f"/v1/models/{NAME}:predict", json={"instances": [{"events": [{}]}]})
    assert r.status_code == 400
    assert r.json()["error"].startswith("instances[0].events[0].event_type is required")


def _binary_request(tensors: list[tuple[dict, bytes]], outputs: list | None) -> tuple[bytes, int]:
    header: dict = {"inputs": [], "parameters": {}}
    for described, data in tensors:
        header["inputs"].append({**described, "parameters": {"binary_data_size": len(data)}})
    if outputs is None:
        header["parameters"]["binary_data_output"] = True
    else:
        header["outputs"] = outputs
    text = json.dumps(header).encode()
    return text + b"".join(data for _, data in tensors), len(text)


def test_open_inference_protocol_binary_tensors_byte_by_byte(client: TestClient) -> None:
    actions = np.array([[DETAIL, ADD, EMPTY], [VIEW, EMPTY, EMPTY]], dtype=np.float32)
    body, length = _binary_request(
        [({"name": "actions", "datatype": "FP32", "shape": [2, 3, 7]}, actions.tobytes())], None
    )
    r = client.post(
        f"/v2/models/{NAME}/infer",
        content=body,
        headers={"inference-header-content-length": str(length)},
    )
    assert r.status_code == 200, r.text
    json_length = int(r.headers["inference-header-content-length"])
    header = json.loads(r.content[:json_length])
    assert r.headers["x-smallboat-unknown-rows"] == "3"
    out = header["outputs"]
    assert [(o["name"], o["shape"]) for o in out] == [
        ("purchase_probability", [2, 1]),
        ("scored", [2, 1]),
    ]
    size = out[0]["parameters"]["binary_data_size"]
    probability = np.frombuffer(r.content[json_length : json_length + size], dtype="<f4")
    expected = client.post(
        f"/v1/models/{NAME}:predict", json={"instances": [[DETAIL, ADD], [VIEW]]}
    ).json()["predictions"]
    np.testing.assert_allclose(probability, [p[0] for p in expected], atol=1e-6)

    events = [{"event_type": "pageview", "server_timestamp_epoch_ms": 5}]
    element = json.dumps(events).encode()
    data = struct.pack("<I", len(element)) + element
    body, length = _binary_request(
        [({"name": "events", "datatype": "BYTES", "shape": [1]}, data)],
        [{"name": "scored", "parameters": {"binary_data": False}}],
    )
    r = client.post(
        f"/v2/models/{NAME}/infer",
        content=body,
        headers={"inference-header-content-length": str(length)},
    )
    assert r.json()["outputs"] == [
        {"name": "scored", "datatype": "BOOL", "shape": [1, 1], "data": [True]}
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"inputs": []}, "inputs must be one tensor named events or actions, got []"),
        (
            {"inputs": [{"name": "events", "datatype": "BYTES", "shape": [1], "data": ["{"]}]},
            'events[0] is not JSON text of a session\'s events (a list or {"events": [...]})',
        ),
        (
            {"inputs": [{"name": "actions", "datatype": "INT32", "shape": [1, 2, 7], "data": [1]}]},
            "input actions holds 1 values; its shape [1, 2, 7] needs 14",
        ),
        (
            {"inputs": [{"name": "actions", "datatype": "STRING", "shape": [1], "data": [1]}]},
            "input actions has datatype 'STRING'; not a v2 datatype",
        ),
    ],
)
def test_open_inference_protocol_errors(client: TestClient, body: dict, error: str) -> None:
    r = client.post(f"/v2/models/{NAME}/infer", json=body)
    assert r.status_code == 400
    assert r.json() == {"error": error}


def test_open_inference_protocol_metadata_and_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/models/intent-1-endpoint/ready").status_code == 200
    r = client.get("/v2/models/nope")
    assert r.status_code == 404 and r.json()["error"].startswith("model 'nope' not found")


def test_export_vocab_writes_the_bundles_token_mapping(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from smallboat.cli import app

    bundle = tiny_bundle(tmp_path / "b")
    out = tmp_path / "mapping" / "token_mapping.json"
    result = CliRunner().invoke(app, ["export-vocab", "--bundle", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    mapping = json.loads(out.read_text())
    assert list(mapping["token2id"])[:3] == ["[PAD]", "[PAGEVIEW]", "[UNK]"]
    assert mapping["token2id"]["mask"] == len(mapping["id2token"]) - 1 == 3 + 40
    assert "".join(result.output.split()) == f"wrote44tokensofmodelunregisteredto{out}"


def test_every_protocol_route_writes_the_same_prediction_log(tmp_path: Path) -> None:
    """One session through each route: one log row per route, all with one probability."""
    from smallboat.data.log.predictions import compact_predictions

    settings = Settings(home=tmp_path / "home")
    onehot = [START, DETAIL, ADD, END]
    with TestClient(create_app(settings, bundle=tiny_bundle(tmp_path / "b"), replica="r")) as c:
        c.get("/v1/predict", params={"session": "detail,add"})
        c.get("/v1/predict", params={"x": "detail,add"})
        c.post("/invocations", json={"instances": [onehot]})
        c.post(f"/endpoints/{NAME}/invocations", json={"instances": [onehot]})
        c.post(f"/v1/models/{NAME}:predict", json={"instances": [onehot]})
        tensor = {"name": "actions", "datatype": "INT32", "shape": [1, 4, 7], "data": onehot}
        assert c.post(f"/v2/models/{NAME}/infer", json={"inputs": [tensor]}).status_code == 200
    report = compact_predictions(settings)
    assert report.rows_landed == report.records == 6
    files = sorted((settings.landing_dir / "predictions").glob("predictions-*.parquet"))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert sorted(frame["route"]) == sorted(
        [
            "/v1/predict",
            "/v1/predict",
            "/invocations",
            "/endpoints/{name}/invocations",
            "/v1/models/{name}:predict",
            "/v2/models/{name}/infer",
        ]
    )
    assert frame["purchase_probability"].nunique() == 1

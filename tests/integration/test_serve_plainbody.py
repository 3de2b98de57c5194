"""`POST /v1/predict` answers the same through the fast lane (`serve.plainbody`) as through
FastAPI's declared route, on a TrainFlow-trained champion served by `smallboat serve`.

The same body is sent twice: as is (the lane takes it) and with `"k": 10.0` (the models read
10.0 as 10; the lane, sure only of a JSON integer, leaves it to them). Both answers must be
equal field for field, and equal to the flow's offline predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from smallboat.serve.plainbody import plain_predict_body
from smallboat.serve.server import ServeProcess
from tests.trained_service import Trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log: Path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with ServeProcess(trained.settings.home_dir, log_path=log) as process:
        yield process.url


def both_ways(client: httpx.Client, body: dict[str, Any]) -> tuple[Any, Any]:
    """The answers to `body` through the lane and through the declared route."""
    lane = orjson.dumps(body)
    declared = orjson.dumps(body | {"k": float(body.get("k", 10))})
    assert plain_predict_body(lane) is not None
    assert plain_predict_body(declared) is None
    answers = []
    for raw in (lane, declared):
        r = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        answers.append(r.json())
    return answers[0], answers[1]


def test_the_lane_and_the_declared_route_give_the_same_answers(
    trained: Trained, service: str
) -> None:
    sessions = trained.sessions[:120]
    with httpx.Client(base_url=service, timeout=30.0) as client:
        lane_probabilities = []
        for i, rows in enumerate(sessions):
            body: dict[str, Any] = {"events": rows, "session_id": f"s-{i}"}
            if i % 3 == 1:
                body |= {"k": 5, "exclude_seen": True}
            lane, declared = both_ways(client, body)
            assert lane == declared
            assert lane["session_id"] == f"s-{i}"
            lane_probabilities.append(lane["purchase_probability"])
        np.testing.assert_allclose(
            lane_probabilities, trained.offline[: len(sessions)], atol=1e-6, rtol=0
        )
        for start in range(0, len(sessions), 10):
            batch = {
                "sessions": [
                    {"events": rows, "session_id": f"b-{start + j}"}
                    for j, rows in enumerate(sessions[start : start + 10])
                ]
                + [{"events": []}],
            }
            lane, declared = both_ways(client, batch)
            assert lane == declared
            assert [p["session_id"] for p in lane["predictions"]] == [
                f"b-{j}" for j in range(start, start + 10)
            ] + [None]
            assert lane["predictions"][-1]["purchase_probability"] is None


def test_sagemakers_invocations_take_the_lane_with_the_same_answers(
    trained: Trained, service: str
) -> None:
    """`POST /invocations` (the SageMaker container's route) shares the lane: the same answers
    and model-version header either way."""
    with httpx.Client(base_url=service, timeout=30.0) as client:
        # The version the service serves now (an earlier test on the shared service may have
        # reloaded a newer champion).
        version = client.get("/readyz").json()["model_version"]
        bodies: list[dict[str, Any]] = [
            {"events": trained.sessions[0], "session_id": "sm"},
            {"sessions": [{"events": rows} for rows in trained.sessions[1:6]], "k": 3},
        ]
        for body in bodies:
            answers = []
            for raw in (orjson.dumps(body), orjson.dumps(body | {"k": float(body.get("k", 10))})):
                r = client.post(
                    "/invocations", content=raw, headers={"content-type": "application/json"}
                )
                assert r.status_code == 200, r.text
                assert r.headers["x-smallboat-model-version"] == version
                answers.append(r.json())
            assert answers[0] == answers[1]

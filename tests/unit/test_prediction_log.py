"""The prediction log: every answer of the app is logged durably and lands exactly once, with the
prefix's summary computed by the same code as the training reference; a log that cannot be
written never fails or slows a prediction."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from smallboat.config import Settings
from smallboat.data.log.predictions import PredictionLog, compact_predictions, prediction_row
from smallboat.features import collapse_session, encode_collapsed
from smallboat.features.summary import drift_frame, events_after_first_add, summarize
from smallboat.model.predictor import IntentPredictor
from smallboat.schema import PREDICTIONS
from smallboat.serve.app import create_app
from tests.unit.test_serve_api import raw, session, tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b")


def landed(settings: Settings) -> pd.DataFrame:
    report = compact_predictions(settings)
    assert report.rows_landed == report.records
    files = sorted((settings.landing_dir / "predictions").glob("predictions-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_every_answer_is_logged_with_its_summary(bundle: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    rng = np.random.default_rng(4)
    sessions = [raw(session(rng, int(rng.integers(1, 12)))) for _ in range(7)]
    answers = []
    with TestClient(create_app(settings, bundle=bundle, replica="unit-1")) as client:
        for i, rows in enumerate(sessions[:3]):
            r = client.post(
                "/v1/predict",
                json={"session_id": f"s{i}", "events": rows},
                headers={"x-request-id": f"req-{i}"},
            )
            answers.append(r.json())
        batch = client.post(
            "/v1/predict",
            json={
                "sessions": [
                    {"session_id": f"b{i}", "events": s} for i, s in enumerate(sessions[3:])
                ]
            },
        ).json()
        answers += batch["predictions"]
        client.post("/v1/sessions/clicky/events", json={"events": sessions[0][:1]})
        client.get("/v1/predict", params={"session": "detail,add"})
        metrics = client.get("/metrics").text
    assert "smallboat_prediction_log_dropped 0.0" in metrics
    frame = landed(settings)
    assert list(frame.columns) == PREDICTIONS.column_names
    assert len(frame) == 7 + 1 + 1
    assert frame["prediction_id"].is_unique
    assert set(frame["replica"]) == {"unit-1"}
    by_session = frame.set_index("session_id_hash")
    for i, answer in enumerate(answers[:3]):
        row = by_session.loc[f"s{i}"]
        assert row["request_id"] == f"req-{i}"
        assert row["route"] == "/v1/predict"
        assert row["purchase_probability"] == pytest.approx(
            answer["purchase_probability"], abs=1e-12
        )
        assert row["latency_ms"] > 0
    # One request id for the batch, one row per session.
    batch_rows = frame[frame["session_id_hash"].str.startswith("b", na=False)]
    assert batch_rows["request_id"].nunique() == 1 and len(batch_rows) == 4
    assert set(frame["route"]) == {
        "/v1/predict",
        "/v1/sessions/{session_id}/events",
    }
    # The summary is the training reference's function on the same inputs.
    predictor = IntentPredictor.load(bundle)
    for i, rows in enumerate(sessions):
        sid = f"s{i}" if i < 3 else f"b{i - 3}"
        collapsed = collapse_session(rows)
        expected = summarize(
            encode_collapsed([collapsed], predictor.vocab, predictor.spec), predictor.vocab
        )
        row = by_session.loc[sid]
        for name, values in expected.items():
            assert row[name] == values[0], (sid, name)
        after = events_after_first_add(collapsed)
        assert (pd.isna(row["events_after_add"]) and after is None) or row[
            "events_after_add"
        ] == after
        assert row["event_time_ms"] == collapsed[-1][2]


def test_summary_columns_make_the_drift_frame() -> None:
    frame = pd.DataFrame(
        {
            "n_events": [4, 1],
            "n_pageview": [1, 0],
            "n_detail": [2, 0],
            "n_add": [1, 1],
            "n_remove": [0, 0],
            "duration_s": [30.0, 0.0],
            "oov_skus": [1, 0],
            "sku_events": [3, 0],
            "last_price": ["3", "unknown"],
            "last_category": ["c1", "unknown"],
            "probability": [0.2, 0.9],
        }
    )
    out = drift_frame(frame)
    assert out["share_detail"].tolist() == [0.5, 0.0]
    assert out["share_add"].tolist() == [0.25, 1.0]
    assert out["oov_share"].tolist() == [pytest.approx(1 / 3), 0.0]


def test_a_log_that_cannot_open_drops_and_counts_but_predictions_go_on(
    bundle: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    holder = PredictionLog.open(settings, "same")  # another live process holds this replica's log
    try:
        app = create_app(settings, bundle=bundle, replica="same")
        with TestClient(app) as client:
            r = client.post(
                "/v1/predict", json={"events": raw(session(np.random.default_rng(1), 3))}
            )
            assert r.status_code == 200 and r.json()["purchase_probability"] is not None
            assert app.state.prediction_log.enabled is False
            assert "smallboat_prediction_log_dropped 1.0" in client.get("/metrics").text
    finally:
        holder.close()


def test_a_full_log_drops_instead_of_blocking(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    log = PredictionLog.open(settings, "r", max_pending=0)
    try:
        row = prediction_row(
            request_id="x",
            route="/v1/predict",
            replica="r",
            session_id=None,
            predicted_at_ms=1,
            model_version="1",
            probability=0.5,
            latency_ms=1.0,
            summary=None,
        )
        log.record([row])
        assert log.dropped == 1 and log.written == 0
    finally:
        log.close()
    log = PredictionLog.open(settings, "r")
    try:
        log.record([row, {**row, "prediction_id": "other"}])
    finally:
        log.close()
    assert log.written == 2
    frame = landed(settings)
    assert len(frame) == 2 and frame["n_events"].tolist() == [0, 0]
    assert compact_predictions(settings).rows_landed == 0  # landed once


@pytest.mark.parametrize("rows", [3, 40])  # a request's rows, encoded by `record`; a batch's
def test_a_row_that_is_not_json_is_dropped_and_counted_the_rest_land(
    tmp_path: Path, rows: int
) -> None:
    settings = Settings(home=tmp_path / "home")
    good = [
        prediction_row(
            request_id=f"r{i}",
            route="/v1/predict",
            replica="r",
            session_id=f"s{i}",
            predicted_at_ms=1_700_000_000_000 + i,
            model_version="1",
            probability=[0.5, 1e-7, 0.0][i % 3],  # 1e-7: the stdlib's text, not orjson's
            latency_ms=0.25 + i,
            summary=None,
        )
        for i in range(rows)
    ]
    bad = {**good[0], "prediction_id": "bad", "latency_ms": object()}
    log = PredictionLog.open(settings, "r")
    try:
        log.record([*good[:1], bad, *good[1:]])  # never raises
    finally:
        log.close()
    assert (log.written, log.dropped) == (rows, 1)
    frame = landed(settings).sort_values("predicted_at_ms")
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(rows)]
    assert frame["purchase_probability"].tolist() == [r["purchase_probability"] for r in good]


def test_a_failing_prediction_log_makes_the_service_not_ready_until_it_recovers(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    settings = Settings(home=tmp_path / "home", log_min_free_bytes=0)
    app = create_app(settings, bundle=bundle, replica="disk")
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        monkeypatch.setattr(os, "fdatasync", full)
        monkeypatch.setattr(os, "fsync", full)
        r = client.post("/v1/predict", json={"events": raw(session(np.random.default_rng(2), 3))})
        assert r.status_code == 200  # the answer never waits for the log
        app.state.prediction_log.flush()  # the flusher's write fails: the log is poisoned
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == "unavailable"
        assert "the prediction log cannot write" in ready.json()["detail"]
        assert "No space left on device" in ready.json()["detail"]
        monkeypatch.undo()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the prediction log did not recover"
            time.sleep(0.1)
    # A nearly full disk is not ready either, even before any write failed.
    tight = Settings(home=tmp_path / "home", log_min_free_bytes=1 << 62)
    with TestClient(create_app(tight, bundle=bundle, replica="tight")) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "SMALLBOAT_LOG_MIN_FREE_BYTES" in ready.json()["detail"]

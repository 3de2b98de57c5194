"""The whole path at tiny scale, as `make demo` runs it: the demo itself (`run_demo`, what the
`smallboat demo` command calls) on 6,000 sessions: synthesize -> hold out the latest sessions ->
load -> transform -> train -> collect -> serve -> the held-out sessions live through the collector
and the service with a planted shift -> monitor -> retrain -> hot reload; then the dashboard, in
headless Chromium, against the warehouse.

Checks what issue 6 asks: every click is predicted on and logged; the delayed labels come from
the collected purchases; the drift checks detect the planted shift and stay quiet on the
unshifted half of the same replay; the live ROC-AUC before the shift agrees with the offline test
ROC-AUC within their confidence intervals; the dashboard shows the warehouse's numbers; and the
demo prints every step. One demo run serves every test here (it is the suite's costliest
fixture: two TrainFlow runs).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from smallboat import registry
from smallboat.bundle import MODEL_NAME
from smallboat.config import Settings
from smallboat.data.synth.holdout import HeldOut, plant_new_product_line, session_starts
from smallboat.demo.loop import LoopResult
from smallboat.demo.run import DemoResult, run_demo
from smallboat.metrics.intent import binary_metrics
from smallboat.model.evaluate import predict_examples
from smallboat.model.predictor import IntentPredictor
from smallboat.monitor.live import evaluation_points, read_predictions
from smallboat.monitor.snapshot import version_drift
from smallboat.pipeline.runner import TrainOutcome, use_metaflow_env
from smallboat.registry import paired_auc_test
from smallboat.serve.server import ServeProcess
from smallboat.warehouse.db import connect
from tests.browser import chromium, requested_urls, save_screenshot

# The demo run below is the setup of this module's first test: pytest-timeout counts it there, and
# on two busy cores (the suite with -n 2) it can take several minutes. A hang guard, not a budget.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, DemoResult, str]]:
    """One demo run on a fresh home; its settings, its result and everything it printed."""
    root = tmp_path_factory.mktemp("loop")
    mp = pytest.MonkeyPatch()
    mp.setenv("SMALLBOAT_HOME", str(root / "home"))
    mp.setenv("SMALLBOAT_MONITOR_MIN_ROWS", "100")
    mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    try:
        settings = Settings()
        use_metaflow_env(settings)
        console = Console(width=120, record=True, file=io.StringIO())
        result = run_demo(
            settings, console, sessions=6_000, seed=3, live_fraction=0.25, retrain=True
        )
        yield settings, result, console.export_text()
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def loop(
    demo: tuple[Settings, DemoResult, str],
) -> tuple[Settings, HeldOut, TrainOutcome, LoopResult]:
    settings, result, _ = demo
    return settings, result.held, result.trained, result.loop


def test_the_demo_prints_every_step(demo: tuple[Settings, DemoResult, str]) -> None:
    """What `make demo` prints: every step, in one run."""
    settings, _, printed = demo
    flat = " ".join(printed.split())  # the console wraps long lines at spaces
    assert "intent_examples" in flat
    # step 7: the served champion answered real sessions, and boto3 called it
    assert "P(purchase) after each click" in flat
    assert "invoke_endpoint(EndpointName='smallboat-intent') -> P(purchase) = 0." in flat
    # steps 8-11: live traffic, monitoring, retraining, and where to look
    for step in ("8. live traffic", "9. monitor", "10. retrain", "11. where to look"):
        assert step in flat, step
    assert "clicks collected and predicted on" in flat
    assert "live ROC-AUC before the shift" in flat and "drift on the latest window" in flat
    assert "MLflow UI: mlflow ui --backend-store-uri" in flat
    assert (settings.home_dir / "monitor" / "snapshot.json").is_file()


def test_every_click_is_collected_predicted_and_logged(loop) -> None:
    settings, held, _, result = loop
    assert result.traffic.events == held.live_events > 0
    assert result.traffic.collected == result.traffic.predicted == held.live_events
    with connect(settings, read_only=True) as con:
        # The live sessions' clicks (step 7 also served a few test-split sessions on this home).
        [(logged,)] = con.sql(
            "select count(*) from prediction_labels "
            "where route = '/v1/sessions/{session_id}/events' and session_id_hash in "
            f"(select session_id_hash from read_parquet('{held.live}'))"
        ).fetchall()
        [(live_landed,)] = con.sql(
            "select count(*) from stg_landing__browsing_events e "
            f"where e.session_id_hash in (select session_id_hash from read_parquet('{held.live}'))"
        ).fetchall()
    assert logged == held.live_events  # one logged prediction per click, none lost
    assert live_landed == held.live_events  # every collected click landed once


def test_labels_come_from_the_collected_purchases(loop) -> None:
    settings, held, _, _ = loop
    live = pq.read_table(held.live).to_pandas()
    bought = set(live.loc[live["product_action"] == "purchase", "session_id_hash"])
    frame = read_predictions(settings)
    mine = frame[frame["session_id_hash"].isin(set(live["session_id_hash"]))]
    labelled = mine[mine["label"].notna()]
    assert len(labelled) > 0.9 * len(mine)  # the watermark passed nearly every session's end
    truth = labelled["session_id_hash"].isin(bought).astype(int)
    assert (labelled["label"].astype(int) == truth).all()
    # Evaluation points are the intent task's: an add in the prefix, k in 0..10 step 2.
    points = evaluation_points(mine)
    assert set(points["events_after_add"].unique()) <= {0, 2, 4, 6, 8, 10}


def test_drift_fires_on_the_planted_shift_and_not_on_the_unshifted_half(loop) -> None:
    settings, held, _, result = loop
    drift = result.check.snapshot.data["drift"]
    assert drift is not None and drift["detected"], drift
    drifted = {f["feature"] for f in drift["features"] if f["drifted"]}
    assert {"oov_share", "last_price", "last_category"} <= drifted
    assert result.check.alerts and result.check.alerts[0]["kind"] == "drift"
    # The same replay's first half (before the shift), against the same reference: quiet.
    events, _ = plant_new_product_line(pq.read_table(held.live), result.shift_ms)
    starts = session_starts(events)
    points = evaluation_points(read_predictions(settings))
    version = drift["model_version"]
    before = points[
        (points["model_version"] == version)
        & (points["session_id_hash"].map(starts) < result.shift_ms)
    ]
    assert len(before) >= 100
    quiet = version_drift(settings, version, before)
    assert quiet is not None and not quiet.detected, quiet and quiet.to_dict()


def test_live_auc_agrees_with_the_offline_test_auc(loop) -> None:
    _, _, trained, result = loop
    summary = trained.summary
    offline, low, high = summary["roc_auc"], summary["roc_auc_ci_low"], summary["roc_auc_ci_high"]
    before = result.live["before"]
    assert before["n"] >= 100 and before["roc_auc"] is not None
    overall = {
        row["model_version"]: row for row in result.check.snapshot.data["quality"]["overall"]
    }
    live = overall[result.check.snapshot.data["offline"]["model_version"]]
    live_low, live_high = live["roc_auc_ci"]
    # The two intervals overlap: the live estimate agrees with the offline one.
    assert live_low <= high and low <= live_high, (live, summary)
    assert abs(before["roc_auc"] - offline) < max(high - low, live_high - live_low)


def test_retrain_registers_a_challenger_and_the_service_follows_the_gate(loop) -> None:
    settings, _, _, result = loop
    retrained = result.retrained
    assert retrained is not None
    reg = retrained.registration
    assert reg["version"] == 2
    # What the gate recorded on v2 (its MLflow tags), read back from the registry: the decision
    # must be the stated rule applied to these recorded scores and p-value, whichever way it went.
    recorded = {v.version: v for v in registry.model_versions(settings, model_name=MODEL_NAME)}
    tags = recorded[2].tags
    challenger, champion = recorded[2].score, recorded[2].champion_score
    p_value, alpha = recorded[2].p_value, float(tags["gate.alpha"])
    min_improvement = float(tags["gate.min_improvement"])
    assert alpha == reg["alpha"] == 0.05  # TrainFlow's default level
    assert tags["gate.previous_version"] == "1" and tags["gate.higher_is_better"] == "true"
    assert tags["gate.metric"] == recorded[2].gate_metric == "roc_auc", tags
    assert (challenger, champion, p_value, min_improvement) == (
        reg["challenger_score"],
        reg["champion_score"],
        reg["p_value"],
        reg["min_improvement"],
    )
    assert challenger is not None
    if tags["gate.champion_invalid"] != "none":
        expected = True  # the champion no longer fits the data: replaced without a test
        assert reg["champion_invalid"] == tags["gate.champion_invalid"]
        assert p_value is None and champion is None
    else:
        assert reg["champion_invalid"] is None
        assert champion is not None and p_value is not None and 0 <= p_value <= 1, tags
        # gate.gate_promotes with a champion and a level: a gain above the minimum AND p < alpha.
        expected = challenger - champion > min_improvement and p_value < alpha
        # The p-value is DeLong's one-sided test of the two bundles on the retrain's own test
        # split, each tokenising with its own vocabulary.
        from metaflow import Run, namespace

        namespace(None)
        prepared = Run(retrained.train.pathspec)["prepare"].task
        assert prepared is not None
        data = prepared.data.data
        champion_dir = registry.download_bundle(settings, model_name=MODEL_NAME, version=1)
        probs = [
            predict_examples(IntentPredictor.load(folder), data.test_events, data.test_examples)
            for folder in (Path(reg["bundle_dir"]), champion_dir)
        ]
        test = paired_auc_test(probs[0], probs[1], data.test_examples.label)
        assert test["p_value"] == pytest.approx(p_value, abs=1e-9)
        assert test["challenger_roc_auc"] == pytest.approx(challenger)
        assert test["champion_roc_auc"] == pytest.approx(champion)
    # What happened: the returned decision, the recorded one, the alias and the served model.
    assert retrained.promoted is expected, reg["summary"]
    decision = "promoted" if expected else "rejected"
    assert reg["decision"] == recorded[2].gate_decision == decision, reg["summary"]
    champ = registry.champion(settings, model_name=MODEL_NAME)
    assert champ is not None and champ.version == (2 if expected else 1)
    assert recorded[2].is_champion is expected and recorded[1].is_champion is not expected
    if expected:
        assert result.served_after == "2" and "reloaded" in retrained.reload
    else:
        assert result.served_after == "1" and "not reloaded" in retrained.reload
    assert retrained.landed.events.rows_landed == 0  # landed by the monitoring step already


def test_dashboard_shows_the_warehouse_numbers(loop) -> None:
    settings, _, _, result = loop
    frame = read_predictions(settings)
    data = json.loads(result.check.path.read_text())
    labelled = evaluation_points(frame)
    labelled = labelled[labelled["label"].notna()]
    with (
        ServeProcess(settings.home_dir, log_path=settings.home_dir / "dash.log") as service,
        chromium() as driver,
    ):
        driver.get(f"{service.url}/dashboard")
        WebDriverWait(driver, 20).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
        )
        save_screenshot(driver, "closed-loop-dashboard")

        def text(testid: str) -> str:
            return driver.find_element(By.CSS_SELECTOR, f"[data-testid='{testid}']").text

        # Every logged prediction, in the latency panel and summed over the traffic windows.
        assert data["latency"]["count"] == len(frame) > 0
        assert text("latency-count").replace(",", "") == str(len(frame))
        assert text("traffic-predictions").replace(",", "") == str(len(frame))
        for version, group in labelled.groupby("model_version"):
            row = driver.find_element(
                By.CSS_SELECTOR, f"[data-testid='quality-row'][data-version='{version}']"
            )
            cells = {
                c.get_attribute("data-field"): c.text
                for c in row.find_elements(By.CSS_SELECTOR, "[data-field]")
            }
            assert cells["n_labelled"].replace(",", "") == str(len(group))
            auc = binary_metrics(
                group["purchase_probability"].to_numpy(np.float64),
                group["label"].to_numpy(np.int64),
            )["roc_auc"]
            assert cells["roc_auc"] == f"{auc:.3f}"
        assert text("drift-detected").lower() == "yes"
        flagged = {
            r.get_attribute("data-feature")
            for r in driver.find_elements(By.CSS_SELECTOR, "[data-testid='drift-row']")
            if r.get_attribute("data-drifted") == "true"
        }
        assert flagged == {f["feature"] for f in data["drift"]["features"] if f["drifted"]}
        urls = requested_urls(driver)
        assert urls and all(u.startswith(service.url) for u in urls), urls

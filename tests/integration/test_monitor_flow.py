"""MonitorFlow end to end through Metaflow's Runner: a TrainFlow champion (the session's shared
one, on a copy of its home), a prediction log of its answers on real test sessions (written as a
replica writes it, no server), then land -> dbt build (delayed labels) -> snapshot -> the card,
opened in headless Chromium with Evidently's report inside it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smallboat.config import Settings
from smallboat.data.log.predictions import PredictionLog, prediction_row, predictions_dir
from smallboat.errors import SmallboatError
from smallboat.monitor.card import EVIDENTLY_FRAME_ID
from smallboat.pipeline.runner import (
    MonitorOutcome,
    metaflow_env,
    run_monitor,
    use_metaflow_env,
)
from smallboat.serve.scoring import load_model, score_batch
from tests.browser import chromium, requested_urls, save_screenshot
from tests.synthetic_home import raw_rows
from tests.trained_service import Trained

pytestmark = pytest.mark.slow

# Metaflow's own card stylesheet @imports Roboto from Google Fonts (in every card, TrainFlow's
# too); offline the request fails and the card falls back to a local font.
METAFLOW_CARD_FONT = "https://fonts.googleapis.com/"


@dataclass
class Monitored:
    settings: Settings
    logged: int  # prediction rows written to the log
    test_auc: float  # the champion's offline test ROC-AUC
    outcome: MonitorOutcome


def log_champion_answers(settings: Settings, train_pathspec: str) -> int:
    """Score every test example's prefix with the registry's champion and write the answers to a
    replica's prediction log, the rows the service would have logged."""
    from metaflow import Run, namespace

    namespace(None)
    prepared = artifacts(Run(train_pathspec), "prepare").data
    events, examples = prepared.test_events, prepared.test_examples
    prefixes = [
        (str(sid), raw_rows(events, int(s), str(sid))[: int(k)])
        for s, sid, k in zip(
            examples.session, examples.session_id, examples.prefix_length, strict=True
        )
    ]
    model = load_model(settings)
    outcomes = score_batch(model, [[rows for _, rows in prefixes]]).outcomes[0]
    rows = [
        prediction_row(
            request_id=f"req-{i}",
            route="/v1/predict",
            replica="test-replica",
            session_id=sid,
            predicted_at_ms=int(rows[-1]["server_timestamp_epoch_ms"]) + 20,
            model_version=outcome.prediction.model_version,
            probability=outcome.prediction.purchase_probability,
            latency_ms=1.0 + (i % 7) * 0.25,
            summary=outcome.summary,
        )
        for i, ((sid, rows), outcome) in enumerate(zip(prefixes, outcomes, strict=True))
    ]
    log = PredictionLog.open(settings, "test-replica")
    log.record(rows)
    log.close()
    assert log.dropped == 0 and log.written == len(rows), (log.written, log.dropped)
    return len(rows)


@pytest.fixture(scope="module")
def monitored(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    """MonitorFlow on a copy of the session's trained home (the service tests' champion and its
    warehouse): copying is much cheaper than another TrainFlow run, and leaves the shared home
    as the service tests expect it."""
    mp = pytest.MonkeyPatch()
    # One window over the whole synthetic span, and a drift verdict from a few hundred rows.
    mp.setenv("SMALLBOAT_MONITOR_WINDOW_HOURS", str(24 * 3650))
    mp.setenv("SMALLBOAT_MONITOR_MIN_ROWS", "30")
    try:
        home = tmp_path_factory.mktemp("monitorflow") / "home"
        shared = trained.settings
        # Without the logs of what the shared service answered or collected so far: this
        # module's prediction log is the only traffic MonitorFlow lands.
        skip = {predictions_dir(shared), shared.collect_dir}
        shutil.copytree(
            shared.home_dir,
            home,
            symlinks=True,
            ignore=lambda folder, names: [n for n in names if Path(folder, n) in skip],
        )
        mp.setenv("SMALLBOAT_HOME", str(home))
        settings = Settings()
        use_metaflow_env(settings)
        assert trained.outcome.summary is not None
        logged = log_champion_answers(settings, trained.outcome.pathspec)
        outcome = run_monitor(settings, show_output=False, bootstrap=50)
        yield Monitored(settings, logged, float(trained.outcome.summary["roc_auc"]), outcome)
    finally:
        mp.undo()
        use_metaflow_env(trained.settings)  # Metaflow's state back on the shared home


def artifacts(run: Any, step: str) -> Any:
    """The artifacts of a step's (only) task."""
    task = run[step].task
    assert task is not None, f"{run.pathspec} has no {step} task"
    return task.data


def card_components(card_html: str) -> list[dict[str, Any]]:
    """The components a blank card carries (base64 JSON in `window.__MF_DATA__`), flattened."""
    found = re.search(r'window\.__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', card_html)
    assert found, "no card data in the card's HTML"
    data = json.loads(base64.b64decode(found.group(1)))
    out: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            out.append(item)
            walk(item.get("contents") or [])

    walk(data["components"])
    return out


def test_snapshot_counts_the_logged_predictions_and_labels_them(monitored: Monitored) -> None:
    outcome = monitored.outcome
    path = Path(outcome.snapshot_path)
    assert path == monitored.settings.home_dir / "monitor" / "snapshot.json"
    written = json.loads(path.read_text())
    assert written["latency"]["count"] == monitored.logged > 100
    assert outcome.snapshot["latency"]["count"] == monitored.logged
    # the delayed labels joined the champion's answers to the warehouse's events
    (live,) = written["quality"]["overall"]
    assert live["model_version"] == "1"
    assert 0.8 * monitored.logged <= live["n_labelled"] <= monitored.logged
    assert written["offline"]["test_roc_auc"] == pytest.approx(monitored.test_auc)
    # the same sessions, the same model: live quality agrees with the offline figure
    assert abs(live["roc_auc"] - monitored.test_auc) < 0.05
    # the predictions are the test split's: compared with the training reference, drift is
    # checked (enough rows) and each feature has Evidently's verdict
    drift = written["drift"]
    assert drift["model_version"] == "1" and drift["current_rows"] >= 30
    assert {f["feature"] for f in drift["features"]} >= {"n_events", "probability"}
    assert Path(drift["report_path"]).is_file()


def test_run_keeps_the_artifacts_of_each_step(monitored: Monitored) -> None:
    from metaflow import Run, namespace

    namespace(None)
    run = Run(monitored.outcome.pathspec)
    assert run.successful
    landed = artifacts(run, "landing").landed
    assert landed.startswith("events:") and "predictions:" in landed
    transformed = artifacts(run, "warehouse").transformed
    assert transformed["success"] is True and transformed["summary"]
    compute = artifacts(run, "compute")
    assert compute.snapshot_path == monitored.outcome.snapshot_path
    assert compute.alerts == monitored.outcome.snapshot["alerts"]
    assert compute.drift_html is not None and "<html" in compute.drift_html.lower()


def test_card_holds_the_live_quality_table_and_the_evidently_report(monitored: Monitored) -> None:
    card = Path(monitored.outcome.card_hint)
    assert card.is_file(), monitored.outcome.card_hint
    assert card.is_relative_to(monitored.settings.home_dir)
    components = card_components(card.read_text())
    tables = [c for c in components if c.get("type") == "table"]
    (quality,) = [t for t in tables if "live ROC-AUC [95% CI]" in t["columns"]]
    row = quality["data"][0]
    assert (
        row[0] == "v1"
        and row[1] == f"{monitored.outcome.snapshot['quality']['overall'][0]['n_labelled']:,}"
    )
    assert row[-1] == f"{monitored.test_auc:.3f}"
    assert any("drifted" in t["columns"] for t in tables)
    (frame,) = [
        c for c in components if c.get("type") == "markdown" and EVIDENTLY_FRAME_ID in c["source"]
    ]
    assert frame["source"].strip().startswith("<iframe") and len(frame["source"]) > 100_000


def _text_with(driver: Any, needle: str) -> str | bool:
    """The page's text once it shows `needle` (False until then: WebDriverWait polls)."""
    from selenium.webdriver.common.by import By

    text: str = driver.find_element(By.TAG_NAME, "body").text
    return text if needle in text else False


def test_card_shows_the_report_in_a_browser_without_the_internet(monitored: Monitored) -> None:
    """Headless Chromium renders the card and, inside its iframe, Evidently's report; the report
    itself asks nothing of the network."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    card = Path(monitored.outcome.card_hint)
    with chromium() as driver:
        driver.get(card.as_uri())
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"iframe#{EVIDENTLY_FRAME_ID}"))
        page = driver.find_element(By.TAG_NAME, "body").text
        assert "live quality per model version" in page.lower()
        assert "v1" in page
        wait.until(EC.frame_to_be_available_and_switch_to_it((By.ID, EVIDENTLY_FRAME_ID)))
        report = str(wait.until(lambda d: _text_with(d, "Drift in column")))
        assert "n_events" in report and "probability" in report
        driver.switch_to.default_content()
        save_screenshot(driver, "monitor_flow_card")
        outside = [
            u
            for u in requested_urls(driver)
            if not u.startswith(("file:", "data:", "about:", "blob:"))
        ]
    assert all(u.startswith(METAFLOW_CARD_FONT) for u in outside), outside


def test_land_false_reuses_what_is_landed(monitored: Monitored) -> None:
    from metaflow import Run, namespace

    again = run_monitor(monitored.settings, show_output=False, land=False, transform=False)
    assert again.run_id != monitored.outcome.run_id
    namespace(None)
    run = Run(again.pathspec)
    assert artifacts(run, "landing").landed is None
    assert artifacts(run, "warehouse").transformed is None
    assert again.snapshot["latency"]["count"] == monitored.logged
    assert Path(again.card_hint).is_file()
    np.testing.assert_allclose(
        again.snapshot["quality"]["overall"][0]["roc_auc"],
        monitored.outcome.snapshot["quality"]["overall"][0]["roc_auc"],
    )


def test_a_failed_step_is_reported_with_its_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home without a warehouse: `compute` fails, and the error names the step and the fix."""
    settings = Settings(home=tmp_path / "home")
    for key, value in metaflow_env(settings).items():  # restored after the test
        monkeypatch.setenv(key, value)
    with pytest.raises(SmallboatError) as failed:
        run_monitor(settings, show_output=False, land=False, transform=False)
    message = str(failed.value)
    assert message.startswith("MonitorFlow failed (run MonitorFlow/")
    assert "step compute: no warehouse at" in message and "smallboat transform" in message
    assert "--resume" not in message

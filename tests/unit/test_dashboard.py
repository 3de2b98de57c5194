"""The monitoring dashboard, served for real (uvicorn on 127.0.0.1) and read in headless Chromium:
the numbers on the page are the snapshot's, formatted one way; nothing is fetched from elsewhere;
empty and missing snapshots say what to do; errors are JSON bodies."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from smallboat.config import Settings
from smallboat.monitor.dashboard import (
    ASSETS,
    NO_SNAPSHOT,
    PAGE,
    STATIC_DIR,
    create_dashboard_app,
    snapshot_path,
)
from smallboat.web.process import free_port
from tests.browser import chromium, console_errors, requested_urls, save_screenshot

NA = "—"
WINDOW_MS = 5 * 60_000
FEATURES = [
    ("session_length", "numerical", "wasserstein"),
    ("n_detail", "numerical", "wasserstein"),
    ("n_add", "numerical", "wasserstein"),
    ("share_pageview", "numerical", "ks"),
    ("price_bucket", "categorical", "chisquare"),
    ("top_category", "categorical", "jensenshannon"),
    ("oov_rate", "numerical", "ks"),
    ("prediction", "numerical", "wasserstein"),
]


# ---- the page's number formats, as the snapshot's numbers should read on screen ------------


def f_count(x: int | None) -> str:
    return NA if x is None else f"{x:,}"


def f_auc(x: float | None) -> str:
    return NA if x is None else f"{x:.3f}"


def f_ci(ci: list[float] | None) -> str:
    return NA if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def f_pct(x: float | None) -> str:
    return NA if x is None else f"{x * 100:.2f}%"


def f_ms(x: float | None) -> str:
    return NA if x is None else f"{x:.1f} ms"


def f_score(x: float | None) -> str:
    """Like JavaScript's toExponential(2) below 0.001: `1.23e-5`, not Python's `1.23e-05`."""
    if x is None:
        return NA
    if x != 0 and abs(x) < 0.001:
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:.2e}")
    return f"{x:.3f}"


def f_challenge(score: float | None, top: float | None = None) -> str:
    if score is None:
        return NA
    return f"{score:.3f} / {top:.3f}" if top is not None else f"{score:.3f}"


def f_time(ms: int | None) -> str:
    if ms is None:
        return NA
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


# ---- a realistic snapshot ------------------------------------------------------------------


def make_snapshot(home: Path, *, seed: int = 6) -> dict[str, Any]:
    """Two model versions serving twelve 5-minute windows (the champion took over halfway), with
    varied traffic, a drift report with a few drifted features, and three registered versions."""
    rng = random.Random(seed)
    now = 1_714_567_890_123
    start = now - 12 * WINDOW_MS
    traffic = []
    for i in range(12):
        p50 = rng.uniform(2, 9)
        traffic.append(
            {
                "window_start_ms": start + i * WINDOW_MS,
                "window_end_ms": start + (i + 1) * WINDOW_MS,
                "predictions": rng.randint(800, 9_000),
                "sessions": rng.randint(200, 2_500),
                "p50_ms": p50,
                "p95_ms": p50 + rng.uniform(5, 20),
                "p99_ms": p50 + rng.uniform(25, 60),
            }
        )
    counts = [rng.randint(50, 20_000) for _ in range(10)]
    overall = []
    for version, auc in (("3", 0.81), ("2", 0.77)):
        n = rng.randint(5_000, 40_000)
        bins = []
        for b in range(10):
            mean = (b + rng.uniform(0.2, 0.8)) / 10
            bins.append(
                {
                    "bin_low": b / 10,
                    "bin_high": (b + 1) / 10,
                    "count": rng.randint(10, 3_000),
                    "mean_probability": mean,
                    "positive_rate": min(1.0, max(0.0, mean + rng.uniform(-0.08, 0.08))),
                }
            )
        overall.append(
            {
                "model_version": version,
                "n_labelled": n,
                "positives": rng.randint(100, n // 10),
                "roc_auc": auc + rng.uniform(-0.02, 0.02),
                "roc_auc_ci": [auc - rng.uniform(0.01, 0.03), auc + rng.uniform(0.01, 0.03)],
                "challenge_score": rng.uniform(3.0, 4.2),
                "challenge_max": 4.5,
                "positive_rate": rng.uniform(0.01, 0.06),
                "mean_probability": rng.uniform(0.02, 0.07),
                "calibration": bins,
            }
        )
    windows = []
    for i, w in enumerate(traffic):
        version = "2" if i < 6 else "3"
        few = i == 0  # too few labels for an AUC: null, drawn as a gap
        windows.append(
            {
                "model_version": version,
                "window_start_ms": w["window_start_ms"],
                "window_end_ms": w["window_end_ms"],
                "n_labelled": 3 if few else rng.randint(300, 4_000),
                "roc_auc": None if few else rng.uniform(0.72, 0.86),
                "challenge_score": None if few else rng.uniform(3.0, 4.2),
                "positive_rate": rng.uniform(0.01, 0.06),
            }
        )
    features = []
    for i, (name, kind, method) in enumerate(FEATURES):
        drifted = i in (1, 4, 7)
        is_p_value = method in ("ks", "chisquare")
        if is_p_value:
            score = 3.2e-7 if drifted else rng.uniform(0.06, 0.9)
            threshold = 0.05
        else:
            score = rng.uniform(0.11, 0.4) if drifted else rng.uniform(0.001, 0.09)
            threshold = 0.1
        features.append(
            {
                "feature": name,
                "kind": kind,
                "method": method,
                "score": score,
                "threshold": threshold,
                "drifted": drifted,
            }
        )
    card = home / "models" / "3" / "card.html"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(
        "<!doctype html><html><body><h1 id='card-title'>Model card of version 3</h1></body></html>"
    )
    return {
        "generated_at_ms": now,
        "home": str(home),
        "window_ms": WINDOW_MS,
        "traffic": traffic,
        "latency": {
            "count": sum(w["predictions"] for w in traffic),
            "p50_ms": rng.uniform(3, 6),
            "p95_ms": rng.uniform(12, 20),
            "p99_ms": rng.uniform(30, 70),
        },
        "predictions": {
            "count": sum(counts),
            "mean": rng.uniform(0.02, 0.08),
            "edges": [i / 10 for i in range(11)],
            "counts": counts,
        },
        "quality": {"overall": overall, "windows": windows, "pending": rng.randint(1_000, 9_999)},
        "offline": {
            "model_version": "3",
            "test_roc_auc": 0.8123,
            "test_roc_auc_ci": [0.7954, 0.8291],
            "challenge_score": 3.8765,
        },
        "drift": {
            "model_version": "3",
            "reference_rows": 123_456,
            "current_rows": 7_890,
            "drift_share": 3 / len(FEATURES),
            "share_threshold": 0.5,
            "detected": False,
            "features": features,
            "report_path": str(home / "monitor" / "drift.html"),
        },
        "alerts": [
            {"kind": "drift", "message": "n_add drifted (wasserstein 0.25 > 0.1)"},
            {"kind": "quality", "message": "live ROC-AUC of 2 is 0.712, below 0.75"},
        ],
        "versions": [
            {
                "version": "3",
                "created_at_ms": now - 3_600_000,
                "is_champion": True,
                "test_roc_auc": 0.8123,
                "gate_decision": "promoted",
                "summary": "challenger beats champion by 0.021 AUC",
            },
            {
                "version": "2",
                "created_at_ms": now - 86_400_000,
                "is_champion": False,
                "test_roc_auc": 0.7912,
                "gate_decision": "promoted",
                "summary": "first model",
            },
            {
                "version": "1",
                "created_at_ms": now - 90_000_000,
                "is_champion": False,
                "test_roc_auc": None,
                "gate_decision": None,
                "summary": None,
            },
        ],
        "champion": {"version": "3", "card_path": str(card)},
    }


EMPTY_SNAPSHOT: dict[str, Any] = {
    "generated_at_ms": 1_714_567_890_123,
    "home": "/tmp/home",
    "window_ms": WINDOW_MS,
    "traffic": [],
    "latency": None,
    "predictions": None,
    "quality": {"overall": [], "windows": [], "pending": 0},
    "offline": None,
    "drift": None,
    "alerts": [],
    "versions": [],
    "champion": None,
}


def write_snapshot(settings: Settings, snapshot: dict[str, Any]) -> None:
    path = snapshot_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot))


# ---- a served dashboard and a browser ------------------------------------------------------


@pytest.fixture
def dashboard(settings: Settings) -> Iterator[str]:
    """The standalone dashboard app under uvicorn on a free port of 127.0.0.1; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        create_dashboard_app(settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn exited while starting; see the captured log"
        assert time.monotonic() < deadline, f"the dashboard did not start on port {port} in 10 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def open_dashboard(driver: WebDriver, url: str) -> str:
    """Load the page, wait until it has drawn a snapshot or said why not; returns the state."""
    requested_urls(driver)  # drain earlier pages' requests
    console_errors(driver)
    driver.get(f"{url}/dashboard")
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") != "loading"
    )
    return str(driver.find_element(By.TAG_NAME, "body").get_attribute("data-state"))


def text(driver: WebDriver, testid: str) -> str:
    """An element's text, shown or not (rows inside a closed <details> have no visible text)."""
    found = driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')
    return str(found.get_attribute("textContent")).strip()


def rows(driver: WebDriver, testid: str) -> list[dict[str, str]]:
    """The rows `[data-testid=<testid>]` as {data-field: text}, in page order."""
    result: list[dict[str, str]] = driver.execute_script(
        """
        return [...document.querySelectorAll(`[data-testid="${arguments[0]}"]`)].map((tr) =>
          Object.fromEntries([...tr.querySelectorAll("[data-field]")].map(
            (td) => [td.dataset.field, td.textContent.trim()])));
        """,
        testid,
    )
    return result


def count(driver: WebDriver, testid: str) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]'))


def assert_stays_local(driver: WebDriver, url: str) -> None:
    """Every request the page made went to the dashboard's own origin (or was inline data),
    and the browser logged no error: a blocked or failed load would be one."""
    urls = requested_urls(driver)
    assert urls, "the performance log recorded no request at all"
    elsewhere = [u for u in urls if not (u.startswith(f"{url}/") or u.startswith("data:"))]
    assert elsewhere == [], f"the page requested URLs outside {url}: {elsewhere}"
    assert console_errors(driver) == []


# ---- tests ---------------------------------------------------------------------------------


def test_packaged_page_names_no_internet_address() -> None:
    """The page, its script and its style name no http(s) address (the SVG namespace is an
    identifier, never fetched)."""
    for name in (PAGE, *ASSETS):
        source = (STATIC_DIR / name).read_text()
        found = re.findall(r"https?://[^\s\"'`)]+", source)
        assert [u for u in found if u != "http://www.w3.org/2000/svg"] == [], name


def test_dashboard_shows_the_snapshot(
    settings: Settings, dashboard: str, browser: WebDriver
) -> None:
    snap = make_snapshot(settings.home_dir)
    write_snapshot(settings, snap)

    assert open_dashboard(browser, dashboard) == "ready", text(browser, "status")

    # header
    assert text(browser, "generated-at") == f_time(snap["generated_at_ms"])
    assert text(browser, "champion-version") == "3"
    assert text(browser, "window") == "5 min"

    # traffic and latency
    traffic = snap["traffic"]
    assert text(browser, "traffic-predictions") == f_count(sum(w["predictions"] for w in traffic))
    assert text(browser, "traffic-sessions") == f_count(sum(w["sessions"] for w in traffic))
    assert text(browser, "traffic-windows") == "12"
    bars = browser.find_elements(By.CSS_SELECTOR, '[data-testid="traffic-bar"]')
    assert [int(str(b.get_attribute("data-predictions"))) for b in bars] == [
        w["predictions"] for w in traffic
    ]
    latency = snap["latency"]
    assert text(browser, "latency-count") == f_count(latency["count"])
    for p in ("p50", "p95", "p99"):
        assert text(browser, f"latency-{p}") == f_ms(latency[f"{p}_ms"])
    assert count(browser, "latency-point") == 3 * len(traffic)

    # prediction distribution
    preds = snap["predictions"]
    assert text(browser, "predictions-count") == f_count(preds["count"])
    assert text(browser, "predictions-mean") == f_auc(preds["mean"])
    bars = browser.find_elements(By.CSS_SELECTOR, '[data-testid="prediction-bar"]')
    assert [int(str(b.get_attribute("data-count"))) for b in bars] == preds["counts"]

    # live quality against offline
    quality = snap["quality"]
    assert rows(browser, "quality-row") == [
        {
            "model_version": r["model_version"],
            "n_labelled": f_count(r["n_labelled"]),
            "positives": f_count(r["positives"]),
            "roc_auc": f_auc(r["roc_auc"]),
            "roc_auc_ci": f_ci(r["roc_auc_ci"]),
            "challenge": f_challenge(r["challenge_score"], r["challenge_max"]),
            "positive_rate": f_pct(r["positive_rate"]),
            "mean_probability": f_auc(r["mean_probability"]),
        }
        for r in quality["overall"]
    ]
    assert text(browser, "quality-pending") == f_count(quality["pending"])
    assert text(browser, "offline-auc") == "0.812"
    assert text(browser, "offline-ci") == "[0.795, 0.829]"
    assert text(browser, "offline-challenge") == "3.877"
    assert rows(browser, "quality-window-row") == [
        {
            "model_version": w["model_version"],
            "window_start": f_time(w["window_start_ms"]),
            "n_labelled": f_count(w["n_labelled"]),
            "roc_auc": f_auc(w["roc_auc"]),
            "challenge_score": f_challenge(w["challenge_score"]),
            "positive_rate": f_pct(w["positive_rate"]),
        }
        for w in quality["windows"]
    ]
    # one point per window with an AUC (the first has too few labels), one label bar per window
    points = browser.find_elements(By.CSS_SELECTOR, '[data-testid="auc-point"]')
    assert sorted(
        (p.get_attribute("data-version"), int(str(p.get_attribute("data-n")))) for p in points
    ) == sorted(
        (w["model_version"], w["n_labelled"])
        for w in quality["windows"]
        if w["roc_auc"] is not None
    )
    label_bars = browser.find_elements(By.CSS_SELECTOR, '[data-testid="label-bar"]')
    assert [int(str(b.get_attribute("data-value"))) for b in label_bars] == [
        w["n_labelled"] for w in quality["windows"]
    ]
    assert count(browser, "calibration-point") == 20
    calibration = rows(browser, "calibration-row")
    assert [r["count"] for r in calibration] == [
        f_count(b["count"]) for r in quality["overall"] for b in r["calibration"]
    ]

    # drift
    drift = snap["drift"]
    assert text(browser, "drift-detected") == "no"
    assert text(browser, "drift-share") == "37.50%"
    assert text(browser, "drift-share-threshold") == "50.00%"
    assert text(browser, "drift-reference-rows") == "123,456"
    assert text(browser, "drift-current-rows") == "7,890"
    assert rows(browser, "drift-row") == [
        {
            "feature": f["feature"],
            "kind": f["kind"],
            "method": f["method"],
            "score": f_score(f["score"]),
            "threshold": f_score(f["threshold"]),
            "drifted": "yes" if f["drifted"] else "no",
        }
        for f in drift["features"]
    ]
    assert "3.20e-7" in [r["score"] for r in rows(browser, "drift-row")]
    # Paths relative to the home: the dashboard has no login (issue 17).
    assert text(browser, "drift-report") == "Evidently report: monitor/drift.html"

    # alerts and version history
    assert rows(browser, "alert") == [
        {"kind": a["kind"], "message": a["message"]} for a in snap["alerts"]
    ]
    assert rows(browser, "version-row") == [
        {
            "version": v["version"],
            "created": f_time(v["created_at_ms"]),
            "champion": "champion" if v["is_champion"] else "",
            "test_roc_auc": f_auc(v["test_roc_auc"]),
            "gate_decision": v["gate_decision"] or NA,
            "summary": v["summary"] or NA,
        }
        for v in snap["versions"]
    ]

    # the champion's card: linked, and shown in a frame
    link = browser.find_element(By.CSS_SELECTOR, '[data-testid="card-link"]')
    assert link.get_attribute("href") == f"{dashboard}/dashboard/card"
    card = httpx.get(str(link.get_attribute("href")))
    assert card.status_code == 200
    assert "Model card of version 3" in card.text
    frame = browser.find_element(By.CSS_SELECTOR, '[data-testid="card-frame"]')
    browser.execute_script("arguments[0].scrollIntoView()", frame)
    browser.switch_to.frame(frame)
    try:
        title = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "card-title"))
        assert title.text == "Model card of version 3"
    finally:
        browser.switch_to.default_content()

    assert count(browser, "quality-error") + count(browser, "drift-error") == 0
    save_screenshot(browser, "dashboard")
    assert_stays_local(browser, dashboard)


def test_dashboard_without_a_snapshot_says_how_to_make_one(
    dashboard: str, browser: WebDriver
) -> None:
    assert open_dashboard(browser, dashboard) == "empty"
    assert text(browser, "status") == NO_SNAPSHOT
    assert not browser.find_element(By.ID, "content").is_displayed()
    save_screenshot(browser, "dashboard-no-snapshot")
    # the 404 of the snapshot is expected, and the only console error
    errors = console_errors(browser)
    assert all("api/snapshot" in e and "404" in e for e in errors), errors


EMPTY_STATES = {
    "alerts-empty": "No alerts",
    "traffic-empty": "No predictions logged yet.",
    "latency-empty": "No latency measured yet.",
    "predictions-empty": "No predictions logged yet.",
    "quality-empty": "No labelled predictions yet",
    "calibration-empty": "No labelled predictions to calibrate against yet.",
    "drift-empty": "No drift report yet",
    "versions-empty": "No registered model version yet",
    "card-empty": "No champion yet",
}


def test_dashboard_empty_sections_say_so(
    settings: Settings, dashboard: str, browser: WebDriver
) -> None:
    write_snapshot(settings, EMPTY_SNAPSHOT)
    assert open_dashboard(browser, dashboard) == "ready"
    shown = {testid: text(browser, testid) for testid in EMPTY_STATES}
    wrong = {k: v for k, v in shown.items() if not v.startswith(EMPTY_STATES[k])}
    assert wrong == {}
    assert text(browser, "champion-version") == NA
    assert text(browser, "offline-auc") == NA
    save_screenshot(browser, "dashboard-empty")
    assert_stays_local(browser, dashboard)


def test_dashboard_survives_nulls_everywhere(
    settings: Settings, dashboard: str, browser: WebDriver
) -> None:
    """Any value may be null: a snapshot of nulls draws empty states, never a broken section."""
    snap: dict[str, Any] = dict.fromkeys(EMPTY_SNAPSHOT)
    snap["quality"] = {"overall": None, "windows": None, "pending": None}
    write_snapshot(settings, snap)
    assert open_dashboard(browser, dashboard) == "ready"
    broken = browser.find_elements(By.CSS_SELECTOR, '[data-testid$="-error"]')
    assert [b.text for b in broken] == []
    assert text(browser, "generated-at") == NA
    assert_stays_local(browser, dashboard)


# ---- the JSON routes -----------------------------------------------------------------------


def test_page_and_assets_are_served_with_a_local_only_policy(dashboard: str) -> None:
    page = httpx.get(f"{dashboard}/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, media_type in ASSETS.items():
        asset = httpx.get(f"{dashboard}/dashboard/static/{name}")
        assert (asset.status_code, asset.headers["content-type"]) == (200, media_type)
    missing = httpx.get(f"{dashboard}/dashboard/static/dashboard.py")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not_found",
        "detail": "no dashboard asset named 'dashboard.py': the assets are dashboard.js, "
        "dashboard.css",
    }
    assert httpx.get(f"{dashboard}/dashboard/static/..%2Fdashboard.py").status_code == 404


def test_missing_snapshot_and_card_are_json_404s(settings: Settings, dashboard: str) -> None:
    no_snapshot = {"error": "not_found", "detail": NO_SNAPSHOT}
    for route in ("/dashboard/api/snapshot", "/dashboard/card"):
        answer = httpx.get(f"{dashboard}{route}")
        assert (answer.status_code, answer.json()) == (404, no_snapshot)

    write_snapshot(settings, EMPTY_SNAPSHOT)
    answer = httpx.get(f"{dashboard}/dashboard/api/snapshot")
    assert (answer.status_code, answer.json()) == (200, {**EMPTY_SNAPSHOT, "home": "home"})
    assert answer.headers["cache-control"] == "no-store"
    answer = httpx.get(f"{dashboard}/dashboard/card")
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "not_found", "detail": "the current champion has no model card in the snapshot"},
    )

    gone = settings.home_dir / "models" / "9" / "card.html"
    write_snapshot(
        settings, {**EMPTY_SNAPSHOT, "champion": {"version": "9", "card_path": str(gone)}}
    )
    answer = httpx.get(f"{dashboard}/dashboard/card")
    assert (answer.status_code, answer.json()) == (
        404,
        {
            "error": "not_found",
            "detail": "the champion's model card models/9/card.html does not exist",
        },
    )

    # a relative card path is under the home
    gone.parent.mkdir(parents=True)
    gone.write_text("<h1>card 9</h1>")
    relative = {"version": "9", "card_path": "models/9/card.html"}
    write_snapshot(settings, {**EMPTY_SNAPSHOT, "champion": relative})
    answer = httpx.get(f"{dashboard}/dashboard/card")
    assert (answer.status_code, answer.text) == (200, "<h1>card 9</h1>")


def test_nan_in_the_snapshot_is_answered_as_null(settings: Settings, dashboard: str) -> None:
    path = snapshot_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**EMPTY_SNAPSHOT, "latency": {"count": 0, "p50_ms": float("nan")}}))
    answer = httpx.get(f"{dashboard}/dashboard/api/snapshot")
    assert answer.status_code == 200
    assert answer.json()["latency"] == {"count": 0, "p50_ms": None}


def test_a_snapshot_that_is_not_json_is_a_503(settings: Settings, dashboard: str) -> None:
    path = snapshot_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"traffic": [')
    answer = httpx.get(f"{dashboard}/dashboard/api/snapshot")
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == "unavailable"
    assert body["detail"].startswith("monitor/snapshot.json is not valid JSON (")
    assert str(settings.home_dir) not in body["detail"]
    assert body["detail"].endswith("): rerun `smallboat monitor check`")


def test_the_snapshot_api_names_no_path_of_the_machine(settings: Settings, dashboard: str) -> None:
    """The dashboard has no login: the home, the card's and the report's paths are shown
    relative to the home (issue 17: the snapshot API showed the home path to anyone)."""
    write_snapshot(settings, make_snapshot(settings.home_dir))
    answer = httpx.get(f"{dashboard}/dashboard/api/snapshot")
    assert answer.status_code == 200
    assert str(settings.home_dir) not in answer.text
    shown = answer.json()
    assert shown["home"] == settings.home_dir.name
    assert shown["drift"]["report_path"] == "monitor/drift.html"
    assert shown["champion"]["card_path"] == "models/3/card.html"

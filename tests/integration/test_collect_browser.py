"""A real headless Chromium runs a shop page with Snowplow's browser tracker and its e-commerce
plugin (bundled from tests/js/node_modules with esbuild at test time, no CDN), served from another
origin than the collector's: CORS preflights and credentials are exercised as in production.
The events land with their actions, SKUs and the tracker's session."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from smallboat.collect.server import CollectorProcess
from tests.browser import chromium, console_errors
from tests.integration.test_collect_clients import ENV, landed_after_stop

pytestmark = pytest.mark.slow

JS = Path(__file__).resolve().parents[1] / "js"
PAGE = """<!doctype html><html><head><title>Shop</title></head>
<body><h1>Shop</h1><script src="tracking.js"></script></body></html>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shop page and its bundled tracking script, served on 127.0.0.1 (its own origin)."""
    folder = tmp_path_factory.mktemp("site")
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail("tests/js/node_modules is missing: run `make js-deps`", pytrace=False)
    subprocess.run(
        [
            str(esbuild),
            "snowplow_page.js",
            "--bundle",
            "--format=iife",
            f"--outfile={folder / 'tracking.js'}",
        ],
        cwd=JS,
        check=True,
        capture_output=True,
        timeout=60,
    )
    (folder / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def tracking(driver: WebDriver, page: str, *, until: int) -> dict[str, Any]:
    """Open `page` and wait until the tracker reported `until` requests (sent or failed)."""
    driver.get(page)
    deadline = time.monotonic() + 20
    while True:
        state: dict[str, Any] = driver.execute_script("return window.tracking;")
        if state and state["sent"] + len(state["failures"]) >= until:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the tracker reported {state} after 20 s; console: {console_errors(driver)}"
            )
        time.sleep(0.1)


@pytest.mark.parametrize("method", ["post", "get"])
def test_snowplows_browser_tracker_lands_its_ecommerce_events_across_origins(
    site: str, tmp_path: Path, method: str
) -> None:
    env = {**ENV, "SMALLBOAT_COLLECT_CORS_ORIGINS": f"http://localhost:9,{site}"}
    with CollectorProcess(tmp_path / "home", env=env, log_path=tmp_path / "c.log") as collector:
        with chromium() as driver:
            state = tracking(
                driver, f"{site}/index.html?collector={collector.url}&method={method}", until=6
            )
            assert state["failures"] == []
            assert state["sent"] == 6
            bad = tracking(
                driver,
                f"{site}/index.html?collector={collector.url}&method={method}&bad=1",
                until=1,
            )
            assert bad["failures"] == [
                {"status": 400, "message": "Bad Request", "willRetry": False}
            ]
        rows = landed_after_stop(collector)
    got = sorted(
        (r["event_type"], r["product_action"], r["product_sku_hash"], r["session_id_hash"])
        for r in rows
    )
    session = state["sessionId"]
    assert session and bad["sessionId"] == session  # one browser, one session
    assert got == sorted(
        [
            ("pageview", None, None, session),
            ("event_product", "detail", "SKU-1", session),
            ("event_product", "add", "SKU-1", session),
            ("event_product", "add", "SKU-2", session),
            ("event_product", "remove", "SKU-2", session),
            ("event_product", "purchase", "SKU-1", session),
        ]
    )


def test_a_page_from_an_origin_not_allowed_cannot_send(site: str, tmp_path: Path) -> None:
    env = {**ENV, "SMALLBOAT_COLLECT_CORS_ORIGINS": "https://shop.example"}
    with CollectorProcess(tmp_path / "home", env=env, log_path=tmp_path / "c.log") as collector:
        preflight = httpx.options(
            f"{collector.url}/com.snowplowanalytics.snowplow/tp2",
            headers={"Origin": site, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        with chromium() as driver:
            state = tracking(driver, f"{site}/index.html?collector={collector.url}", until=1)
        assert state["sent"] == 0 and state["failures"][0]["willRetry"] is True  # a network error
        assert httpx.get(f"{collector.url}/readyz").json()["records"] == 0

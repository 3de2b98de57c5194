"""Headless Chromium for tests that look at a page the way a reader does: Debian's `chromium` and
`chromedriver` driven by Selenium, what the page requested, and screenshots kept as artefacts.

`make system-deps` installs both programs (Debian's chromium and chromium-driver); a machine
without them fails the test with that instruction rather than skipping it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

# Headless in a container: no setuid sandbox, /dev/shm is small; and none of Chromium's own
# background traffic (updates, sync, safe browsing) so the page's requests are all there is.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)


def chromium_programs() -> tuple[str, str]:
    """The paths of Debian's chromium and chromedriver; fails the test when one is missing."""
    binary = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        missing = [
            name for name, path in (("chromium", binary), ("chromedriver", driver)) if not path
        ]
        pytest.fail(
            f"{' and '.join(missing)} not on PATH: the dashboard test drives a real headless "
            "browser; run `make system-deps` (installs Debian's chromium and chromium-driver) or "
            "`sudo apt-get install chromium chromium-driver`",
            pytrace=False,
        )
    return binary, driver


@contextmanager
def chromium(*, width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """A headless Chromium driven by the system chromedriver (never a downloaded one), recording
    its network requests (performance log) and console messages (browser log)."""
    binary, driver_path = chromium_programs()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the page asked for since the last call (the performance log drains on read)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(driver: WebDriver) -> list[str]:
    """The page's console errors since the last call: failed loads, script errors, blocked
    requests (a Content-Security-Policy violation is one)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """A screenshot of the whole page (the window grows to its height) as
    `test-artifacts/<name>.png`, kept after the test for a person or CI to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = driver.get_window_size()
    page, viewport = driver.execute_script(
        "window.scrollTo(0, 0);return [document.documentElement.scrollHeight, window.innerHeight];"
    )
    # The window is taller than its viewport by the browser's own frame.
    driver.set_window_size(size["width"], min(size["height"] - viewport + page, 10_000))
    try:
        if not driver.save_screenshot(str(path)):
            raise AssertionError(f"chromium could not save the screenshot {path}")
    finally:
        driver.set_window_size(size["width"], size["height"])
    return path

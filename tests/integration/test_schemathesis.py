"""Schemathesis (4.32.5) against both apps' OpenAPI documents, each served by a real server on
127.0.0.1: the collector, and the prediction service on the TrainFlow-trained champion.

Every check runs except `positive_data_acceptance`: the collector's tracker routes read their
protocols' own parameters (Universal Analytics' `v`, `t`, `cid`..., Snowplow's `e`...), which the
document names in prose, not as schema constraints, so most schema-valid requests are rightly
refused. Bounded: `MAX_EXAMPLES` test cases per operation and a fixed seed (one run, both apps,
well under a minute). The run's figures are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smallboat.collect.server import CollectorProcess
from smallboat.serve.server import ServeProcess
from smallboat.web.process import ServerProcess
from tests.trained_service import Trained

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
SEED = 17
WRITE_KEY = "wk-schemathesis"
EXCLUDED_CHECKS = "positive_data_acceptance"
# A refusal for size (413 body, 431 head) is a refusal of invalid data like a 400.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "431"]
"""


@dataclass
class Figures:
    operations: int
    examples: int
    checks: int
    failed_checks: int
    failures: list[dict[str, object]]
    output: str

    def __str__(self) -> str:
        return (
            f"{self.operations} operations, {self.examples} examples, {self.checks} checks, "
            f"{self.failed_checks} failed"
        )


def run_schemathesis(server: ServerProcess, folder: Path) -> Figures:
    """`schemathesis run` on the server's /openapi.json; the figures of its reports."""
    config = folder / "schemathesis.toml"
    config.write_text(CONFIG)
    report, events = folder / "report.json", folder / "events.ndjson"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--auth",
        f"{WRITE_KEY}:",  # Segment's write key (Basic auth); other routes ignore it
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json,ndjson",
        "--report-json-path",
        str(report),
        "--report-ndjson-path",
        str(events),
    ]
    done = subprocess.run(  # in `folder`: schemathesis keeps a cache in its working folder
        command, cwd=folder, capture_output=True, text=True, timeout=300, check=False
    )
    summary = json.loads(report.read_text())
    checks: Counter[str] = Counter()
    for line in events.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event is None:
            continue
        for results in event["recorder"].get("checks", {}).values():
            checks.update(result["status"] for result in results)
    return Figures(
        operations=summary["operations"]["tested"],
        examples=summary["test_cases"]["generated"],
        checks=sum(checks.values()),
        failed_checks=checks["failure"],
        failures=summary["failures"] + summary["errors"],
        output=done.stdout[-20_000:] + done.stderr[-5_000:],
    )


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("collect")
    env = {
        "SMALLBOAT_COLLECT_COMPACT_SECONDS": "0",
        "SMALLBOAT_WRITE_KEYS": WRITE_KEY,
        "SMALLBOAT_GA4_API_SECRETS": "ga4-secret",
    }
    with CollectorProcess(folder / "home", env=env, log_path=folder / "c.log") as process:
        yield process


@pytest.fixture(scope="module")
def service(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = {"SMALLBOAT_PREDICTION_LOG": "false", "SMALLBOAT_ADMIN_TOKEN": "admin-schemathesis"}
    with ServeProcess(trained.settings.home_dir, env=env, log_path=log) as process:
        yield process


@pytest.mark.parametrize("app", ["collector", "service"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    app: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: ServerProcess = request.getfixturevalue(app)
    figures = run_schemathesis(server, tmp_path)
    print(f"schemathesis on the {app}: {figures}")
    assert figures.failures == [], figures.output
    assert figures.failed_checks == 0, figures.output
    # The run reached every operation and checked real answers.
    assert figures.operations >= (16 if app == "collector" else 20), figures.output
    assert figures.checks > figures.examples > figures.operations * 5

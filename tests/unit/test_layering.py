"""The package map's import rules ([tool.importlinter] in pyproject.toml, docs/architecture.md)
hold, and a forbidden import breaks them (the check can fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "Layers: cli > demo > pipeline > parts > foundations"


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=src,
        timeout=300,
    )


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "smallboat",
        src / "smallboat",
        ignore=shutil.ignore_patterns("__pycache__", "dbt", "static"),
    )
    return src


def test_the_package_keeps_its_import_rules() -> None:
    result = _lint(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # a foundation reaching up to the CLI
        ("schema.py", "import smallboat.cli", LAYERS),
        # a part importing its sibling (collect and serve never import each other)
        ("collect/sessions.py", "from smallboat.serve import scoring", LAYERS),
        # monitoring reaching into the model (and so torch)
        ("monitor/live.py", "import smallboat.model.intent", "Monitoring reads bundles"),
        # a function-local import counts like any other
        ("data/synth/release.py", "def f():\n    import smallboat.pipeline.jobs", LAYERS),
        ("monitor/render.py", "import torch", "No torch below the model"),
        # two modules of one package importing each other
        ("features/spec.py", "from smallboat.features import encode", "No import cycle"),
    ],
)
def test_a_forbidden_import_breaks_the_rules(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    src = _copy_package(tmp_path)
    target = src / "smallboat" / module
    assert target.is_file(), f"{module} moved: update this test"
    target.write_text(target.read_text() + f"\n\n{line}\n")
    result = _lint(src, ROOT / "pyproject.toml")
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout

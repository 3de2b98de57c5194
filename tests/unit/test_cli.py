"""The `smallboat` command: --help on every verb, readable output, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smallboat.cli import app
from smallboat.config import Settings


def _verbs() -> list[list[str]]:
    """Every command and group of the CLI, walked from the app itself (a new verb is covered)."""
    import typer

    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


VERBS = _verbs()


def test_the_monitoring_verbs_are_there() -> None:
    assert {" ".join(v) for v in VERBS} >= {
        "monitor check",
        "monitor run",
        "monitor serve",
        "retrain",
        "schedule",
        "demo",
        "serve",
    }


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "smallboat")
def test_every_verb_has_help(verb: list[str]) -> None:
    result = CliRunner().invoke(app, [*verb, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_synth_prints_figures_beside_the_targets(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "synth", "--sessions", "800", "--out", str(tmp_path)], terminal_width=160
    )
    assert result.exit_code == 0, result.output
    assert "share of sessions with an add" in result.output
    assert "0.0435" in result.output  # the release's figure, printed as the target
    assert (tmp_path / "browsing_train.csv").is_file()


def test_synth_into_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = CliRunner().invoke(
        app, ["data", "synth", "--sessions", "10", "--out", str(blocker / "sub")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"cannot create output folder {blocker / 'sub'}" in result.output


def test_serve_without_a_champion_is_a_one_line_error(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "0"], terminal_width=200)
    assert result.exit_code == 1
    assert "has no champion of smallboat-intent" in result.output
    assert "smallboat train" in result.output and "--bundle PATH" in result.output
    assert "Traceback" not in result.output


def test_serve_an_unreachable_redis_is_a_one_line_error(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before uvicorn starts: the bundle is given, Redis is a closed port."""
    from tests.unit.test_serve_api import tiny_bundle

    monkeypatch.setenv("SMALLBOAT_REDIS_URL", "redis://127.0.0.1:1/0")
    bundle = tiny_bundle(tmp_path / "bundle")
    result = CliRunner().invoke(app, ["serve", "--bundle", str(bundle)], terminal_width=200)
    assert result.exit_code == 1
    assert "session store redis://127.0.0.1:1/0" in result.output
    assert "Traceback" not in result.output

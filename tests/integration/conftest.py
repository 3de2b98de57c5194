"""Fixtures of the integration tests: one synthetic home built by dbt, and the TrainFlow-trained
champion on a copy of it, each made once per session and shared by every module that reads or
serves it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smallboat.config import Settings
from smallboat.warehouse.transform import run_transform
from tests.synthetic_home import synthetic_home
from tests.trained_service import Trained, trained_copy


@pytest.fixture(scope="session")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """8,000 synthetic sessions loaded and transformed by the real dbt build: the settings of
    that home and the synthetic data folder. Read only: a test that writes copies it."""
    with synthetic_home(tmp_path_factory.mktemp("built"), sessions=8_000, seed=5) as built:
        run_transform(built[0])
    return built


@pytest.fixture(scope="session")
def trained(
    built_home: tuple[Settings, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    with trained_copy(built_home[0], tmp_path_factory.mktemp("serve") / "home") as trained:
        yield trained

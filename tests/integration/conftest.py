"""Fixtures of the integration tests: the TrainFlow-trained champion, trained once per session
and shared by every module that serves it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smallboat.pipeline.runner import use_metaflow_env
from tests.synthetic_home import synthetic_home
from tests.trained_service import Trained, trained_on


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    with synthetic_home(tmp_path_factory.mktemp("serve"), sessions=8_000, seed=5) as (settings, _):
        use_metaflow_env(settings)
        yield trained_on(settings)

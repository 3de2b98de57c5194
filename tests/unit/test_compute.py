"""flows/compute.py: the one table of the heavy steps' cluster resources."""

from __future__ import annotations

import pytest

from smallboat.flows.compute import RESOURCES, Resources, remote, resources


def test_gpus_go_to_the_training_branches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALLBOAT_TRAIN_GPUS", "2")
    assert resources("train") == Resources(cpu=2, memory=8000, gpu=2)
    assert resources("prepare") == Resources(cpu=2, memory=8000, gpu=0)
    assert set(RESOURCES) == {"prepare", "train", "recommend"}


def test_local_compute_leaves_the_step_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMALLBOAT_COMPUTE", raising=False)

    def step() -> None: ...

    assert remote("train")(step) is step


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SMALLBOAT_TRAIN_GPUS", "one", "SMALLBOAT_TRAIN_GPUS='one' is not a whole number"),
        ("SMALLBOAT_TRAIN_GPUS", "-1", "SMALLBOAT_TRAIN_GPUS='-1' must be 0 or more"),
        ("SMALLBOAT_COMPUTE", "slurm", "SMALLBOAT_COMPUTE='slurm' is not one of local, kubernetes"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        remote("train")


def test_an_unlisted_step_is_an_error() -> None:
    with pytest.raises(ValueError, match="no resources listed for step 'evaluate'"):
        resources("evaluate")

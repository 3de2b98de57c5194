"""The pure parts of TrainFlow's steps: parameter checks and picking the best branch."""

from __future__ import annotations

import json
from datetime import date

import pytest

from smallboat.errors import SmallboatError
from smallboat.pipeline.train_steps import Branch, check_parameters, pick_best


def test_grid_entries_are_named_and_checked() -> None:
    grid, window = check_parameters(
        grid=json.dumps([{"hidden": 16}, {"name": "wide", "hidden": 64}]),
        window_start="2019-01-01",
        window_end="",
    )
    assert [g["name"] for g in grid] == ["config0", "wide"]
    assert grid[1]["hidden"] == 64
    assert window.start == date(2019, 1, 1) and window.end is None


def test_grid_values_come_back_typed_and_names_as_text() -> None:
    grid, _ = check_parameters(grid='[{"name": 5, "hidden": "32"}]', window_start="", window_end="")
    assert grid == [{"hidden": 32, "name": "5"}]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("not json", "--grid is not JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"hiden": 3}]', "unknown or fixed field(s) ['hiden']"),
        ('[{"sku_dim": 16}]', "unknown or fixed field(s) ['sku_dim']"),
        ('[{"hidden": "big"}]', "entry 0: hidden: Input should be a valid integer"),
        ('[{"members": 0}]', "members must be >= 1, got 0"),
        ('[{"batch_size": 0}]', "batch_size must be >= 1, got 0"),
        ('[{"dropout": 1.5}]', "dropout must be in [0, 1)"),
        ('[{"name": "a"}, {"name": "a"}]', "names must be unique"),
        ('[{"kind": "xgboost"}]', "kind 'xgboost' is not one of 'gru' (default), 'lightgbm'"),
        ('[{"kind": "lightgbm", "hidden": 16}]', "a lightgbm grid entry may set"),
        ('[{"kind": "lightgbm", "num_leaves": 1}]', "num_leaves must be >= 2, got 1"),
        ('[{"kind": "lightgbm", "bagging_fraction": 0}]', "bagging_fraction must be in (0, 1]"),
    ],
)
def test_bad_grids_are_refused_with_the_reason(grid: str, message: str) -> None:
    with pytest.raises(SmallboatError) as err:
        check_parameters(grid=grid, window_start="", window_end="")
    assert message in str(err.value)


def test_a_lightgbm_entry_keeps_its_kind_and_typed_values() -> None:
    grid, _ = check_parameters(
        grid='[{"name": "trees", "kind": "lightgbm", "num_leaves": "4"}, {"name": "gru"}]',
        window_start="",
        window_end="",
    )
    assert grid == [{"num_leaves": 4, "kind": "lightgbm", "name": "trees"}, {"name": "gru"}]


def test_a_bad_window_date_names_the_value() -> None:
    with pytest.raises(SmallboatError, match="'2019-13-01' is not a date"):
        check_parameters(grid='[{"name": "a"}]', window_start="2019-13-01", window_end="")


def branch(name: str, auc: float) -> Branch:
    return Branch(name=name, config={}, weights=b"", summary={"best_valid_auc": auc}, history=[])


def test_the_best_validation_auc_wins_and_nan_never_does() -> None:
    best, sweep = pick_best([branch("a", 0.81), branch("b", float("nan")), branch("c", 0.83)])
    assert best.name == "c"
    assert [e["name"] for e in sweep if e["chosen"]] == ["c"]
    tie, _ = pick_best([branch("z", 0.8), branch("y", 0.8)])
    assert tie.name == "y"  # ties go to the earlier name: deterministic


def test_next_item_overrides_are_checked_at_the_start() -> None:
    from smallboat.pipeline.train_steps import next_item_config

    config = next_item_config('{"max_epochs": 3, "hidden": 16}', seed=7)
    assert (config.max_epochs, config.hidden, config.seed) == (3, 16, 7)
    for text, message in [
        ("nope", "--next-item is not JSON"),
        ("[1]", "must be a JSON object"),
        ('{"epochs": 3}', "unknown field(s) ['epochs']"),
        ('{"hidden": 0}', "hidden must be >= 1, got 0"),
    ]:
        with pytest.raises(SmallboatError) as err:
            next_item_config(text, seed=0)
        assert message in str(err.value)

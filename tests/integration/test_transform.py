"""`smallboat transform` end to end: real dbt on a real DuckDB file built from hand-made sessions.

One warehouse is built once per module (dbt startup costs seconds) from twenty sessions whose
expected collapse, counts, splits, intent examples and SKU popularity are worked out by hand in
`SESSIONS` below. The quality-gate tests build their own small homes, because a failing gate
leaves its home in a failed state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smallboat import schema
from smallboat.cli import app
from smallboat.config import Settings
from smallboat.errors import QualityGateError, SmallboatError
from smallboat.warehouse.db import connect
from smallboat.warehouse.quality import TransformResult
from smallboat.warehouse.transform import DBT_PROJECT_DIR, run_transform
from tests.landing_data import (
    BASE_MS,
    SessionSpec,
    browsing_row,
    browsing_table,
    catalog_table,
    write_landing,
)

pytestmark = pytest.mark.slow

HOUR_MS = 3_600_000


def _spec(
    position: int, session_id: str, moments: str, *, start_position: int | None = None
) -> SessionSpec:
    start = BASE_MS + (position if start_position is None else start_position) * HOUR_MS
    return SessionSpec(session_id, start, moments)


# Twenty sessions, one hour apart, in start order. With the default 10% valid / 10% test split
# positions 0..15 are train (16 sessions), 16..17 valid, 18..19 test; but s_tie_b starts at the
# same millisecond as s_tie_a (position 15), so the tie goes to train with it: 17 train sessions,
# s_valid alone in valid, s_test_z and s_test_a in test.
SESSIONS: dict[str, SessionSpec] = {
    s.session_id: s
    for s in [
        # add at event 3, purchase at event 10: 9 cut events, so k in {0, 2, 4, 6}
        _spec(0, "s_intent", "pv d:B a:B pv pv pv pv pv pv p:B pv"),
        # detail+pageview pair -> 1 event; add and purchase share a millisecond (add ranks first)
        _spec(1, "s_collapse", "d:A a:A+p:A pv"),
        # the purchase comes before the add: nothing to predict
        _spec(2, "s_purchase_first", "pv p:C a:C pv"),
        # add, no purchase: k in {0, 2}, label 0
        _spec(3, "s_abandon", "a:A pv pv"),
        _spec(4, "s_remove", "d:A a:A r:A"),
        # details without a pageview pair (REES46 style), SKU N not in the catalog
        _spec(5, "s_unpaired", "v:N v:N"),
        *[_spec(p, f"s_filler_{p:02d}", "pv d:A") for p in range(6, 15)],
        _spec(15, "s_tie_a", "pv"),
        _spec(16, "s_tie_b", "pv pv", start_position=15),
        _spec(17, "s_valid", "d:A a:A p:A"),
        _spec(18, "s_test_z", "d:Z a:Z p:Z"),
        _spec(19, "s_test_a", "pv d:A"),
    ]
}

EXPECTED_SPLITS = {sid: "train" for sid in SESSIONS} | {
    "s_valid": "valid",
    "s_test_z": "test",
    "s_test_a": "test",
}

# (session, k) -> (prefix_length, first_add_index, label, split)
EXPECTED_EXAMPLES = {
    ("s_intent", 0): (3, 3, 1, "train"),
    ("s_intent", 2): (5, 3, 1, "train"),
    ("s_intent", 4): (7, 3, 1, "train"),
    ("s_intent", 6): (9, 3, 1, "train"),
    ("s_collapse", 0): (2, 2, 1, "train"),
    ("s_abandon", 0): (1, 1, 0, "train"),
    ("s_abandon", 2): (3, 1, 0, "train"),
    ("s_remove", 0): (2, 2, 0, "train"),
    ("s_valid", 0): (2, 2, 1, "valid"),
    ("s_test_z", 0): (2, 2, 1, "test"),
}

CATALOG_ROWS = [
    ("A", "cat1/cat2", 3, True),
    ("A", None, None, False),  # A loaded a second time, emptier: warns, the full row is kept
    ("B", "cat9", None, True),
    ("Z", "cat1/x", 7, False),
    ("X", "cat2", 1, False),  # in the catalog, never browsed
]


def _land(settings: Settings) -> None:
    """The module's landing data: all sessions shuffled, s_collapse landed twice, the catalog."""
    write_landing(settings, "browsing_events", browsing_table(SESSIONS.values()), "part-0")
    write_landing(
        settings,
        "browsing_events",
        browsing_table([SESSIONS["s_collapse"]], shuffle_seed=1),
        "part-1",
    )
    write_landing(settings, "catalog", catalog_table(CATALOG_ROWS))


def _home(root: Path) -> Settings:
    settings = Settings(home=root / "home")
    settings.ensure_home()
    return settings


def _query(settings: Settings, sql: str) -> list[dict[str, Any]]:
    with connect(settings, read_only=True) as con:
        return con.sql(sql).to_arrow_table().to_pylist()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, TransformResult]]:
    settings = _home(tmp_path_factory.mktemp("warehouse"))
    _land(settings)
    result = run_transform(settings)
    yield settings, result


@pytest.fixture(scope="module")
def warehouse(built: tuple[Settings, TransformResult]) -> Settings:
    return built[0]


# --- the build and its record --------------------------------------------------------------------


def test_build_passes_and_records_every_node(built: tuple[Settings, TransformResult]) -> None:
    settings, result = built
    assert result.success
    assert {m.name for m in result.models} == {
        "stg_landing__browsing_events",
        "stg_landing__search_events",
        "stg_landing__catalog",
        "stg_landing__predictions",
        "session_events",
        "sessions",
        "intent_examples",
        "next_item_examples",
        "sku_features",
        "prediction_labels",
    }
    assert all(m.status == "success" for m in result.models)
    recorded = json.loads((settings.quality_dir / "latest.json").read_text())
    assert recorded["invocation"]["success"] is True
    assert len(recorded["nodes"]) == len(result.nodes) > 40
    assert len(list(settings.quality_dir.glob("transform-*.json"))) == 1


def test_warn_severity_failure_is_recorded_without_stopping_the_build(
    built: tuple[Settings, TransformResult],
) -> None:
    settings, result = built
    warned = result.node("stg_catalog_sku_loaded_once")
    assert (warned.status, warned.severity, warned.failures) == ("warn", "warn", 1)
    assert warned.failure_sample == [{"unique_field": "A", "n_records": 2}]
    recorded = json.loads((settings.quality_dir / "latest.json").read_text())
    by_name = {n["name"]: n for n in recorded["nodes"]}
    assert by_name["stg_catalog_sku_loaded_once"]["status"] == "warn"
    assert recorded["summary"]["tests_warn"] == 1
    assert "stg_catalog_sku_loaded_once" in _render_text(result)


def test_empty_landing_folder_gets_a_canonical_empty_file(warehouse: Settings) -> None:
    empty = warehouse.table_landing_dir("search_events") / "empty.parquet"
    assert empty.exists()
    assert _query(warehouse, "select count(*) as n from main.stg_landing__search_events") == [
        {"n": 0}
    ]


@pytest.mark.parametrize("table", sorted(schema.LANDING_TABLES))
def test_staging_columns_are_the_canonical_columns(warehouse: Settings, table: str) -> None:
    rows = _query(
        warehouse,
        "select column_name from information_schema.columns "
        f"where table_name = 'stg_landing__{table}' order by ordinal_position",
    )
    assert [r["column_name"] for r in rows] == schema.LANDING_TABLES[table].column_names


# --- session_events ------------------------------------------------------------------------------


def test_session_events_collapse_dedupe_and_order(warehouse: Settings) -> None:
    spec = SESSIONS["s_collapse"]
    rows = _query(
        warehouse,
        "select event_index, action, product_sku_hash, server_timestamp_epoch_ms, "
        "is_before_first_purchase from main.session_events "
        "where session_id_hash = 's_collapse' order by event_index",
    )
    t1, t2, t3 = (spec.timestamp_of_moment(p) for p in (1, 2, 3))
    # landed twice (10 rows): duplicates dropped, the detail's pageview folded in, add first
    assert [tuple(r.values()) for r in rows] == [
        (1, "detail", "A", t1, True),
        (2, "add", "A", t2, True),
        (3, "purchase", "A", t2, False),
        (4, "pageview", None, t3, False),
    ]


def test_session_events_keep_unpaired_details_and_sessions_without_purchase(
    warehouse: Settings,
) -> None:
    rows = _query(
        warehouse,
        "select event_index, action, is_before_first_purchase "
        "from main.session_events where session_id_hash = 's_unpaired' order by event_index",
    )
    assert [tuple(r.values()) for r in rows] == [
        (1, "detail", True),
        (2, "detail", True),
    ]


def test_session_events_count(warehouse: Settings) -> None:
    expected = sum(len(s.moments.replace("+", " ").split()) for s in SESSIONS.values())
    assert _query(warehouse, "select count(*) as n from main.session_events") == [{"n": expected}]


# --- sessions and splits -------------------------------------------------------------------------


def test_sessions_counts(warehouse: Settings) -> None:
    spec = SESSIONS["s_intent"]
    [row] = _query(
        warehouse,
        "select * exclude (session_id_hash) from main.sessions where session_id_hash = 's_intent'",
    )
    assert row == {
        "started_at_ms": spec.start_ms,
        "ended_at_ms": spec.timestamp_of_moment(11),
        "n_events": 11,
        "n_pageviews": 8,
        "n_details": 1,
        "n_adds": 1,
        "n_removes": 0,
        "n_purchases": 1,
        "has_add": True,
        "has_purchase": True,
        "first_add_index": 3,
        "first_purchase_index": 10,
        "split": "train",
    }
    [remove] = _query(
        warehouse,
        "select n_removes, has_purchase from main.sessions where session_id_hash = 's_remove'",
    )
    assert remove == {"n_removes": 1, "has_purchase": False}


def test_splits_follow_start_time_and_ties_stay_together(warehouse: Settings) -> None:
    rows = _query(warehouse, "select session_id_hash, split from main.sessions")
    assert {r["session_id_hash"]: r["split"] for r in rows} == EXPECTED_SPLITS


# --- intent_examples -----------------------------------------------------------------------------


def test_intent_examples_match_the_contract(warehouse: Settings) -> None:
    rows = _query(warehouse, "select * from main.intent_examples")
    got = {
        (r["session_id_hash"], r["k"]): (
            r["prefix_length"],
            r["first_add_index"],
            r["label"],
            r["split"],
        )
        for r in rows
    }
    assert got == EXPECTED_EXAMPLES


def test_intent_example_prefix_end_and_start(warehouse: Settings) -> None:
    spec = SESSIONS["s_intent"]  # one collapsed event per moment, so event i is moment i
    rows = _query(
        warehouse,
        "select prefix_length, prefix_end_at_ms, session_started_at_ms from main.intent_examples "
        "where session_id_hash = 's_intent' order by k",
    )
    assert [(r["prefix_end_at_ms"], r["session_started_at_ms"]) for r in rows] == [
        (spec.timestamp_of_moment(r["prefix_length"]), spec.start_ms) for r in rows
    ]


# --- next_item_examples --------------------------------------------------------------------------


def test_next_item_examples_pair_each_later_detail_with_the_views_before_it(
    warehouse: Settings,
) -> None:
    rows = _query(
        warehouse,
        "select session_id_hash, detail_position, n_prior_details, prefix_length, "
        "previous_sku_hash, target_sku_hash, split from main.next_item_examples",
    )
    # Only s_unpaired views two products; every other session views one at most (s_collapse's
    # only detail comes before its purchase, s_intent's page views hold no product).
    assert [tuple(r.values()) for r in rows] == [("s_unpaired", 2, 1, 1, "N", "N", "train")]


# --- sku_features --------------------------------------------------------------------------------


def test_sku_features_catalog_pick_and_train_only_popularity(warehouse: Settings) -> None:
    rows = _query(
        warehouse,
        "select product_sku_hash, is_in_catalog, is_seen_in_browsing, top_category_hash, "
        "price_bucket, has_description_vector, n_train_views, n_train_adds, n_train_purchases "
        "from main.sku_features order by product_sku_hash",
    )
    got = {r.pop("product_sku_hash"): tuple(r.values()) for r in rows}
    assert got == {
        # views: s_collapse, s_remove, 9 fillers (s_valid and s_test_a are not train)
        "A": (True, True, "cat1", 3, True, 11, 3, 1),
        "B": (True, True, "cat9", None, True, 1, 1, 1),
        "C": (False, True, None, None, False, 0, 1, 1),
        "N": (False, True, None, None, False, 2, 0, 0),
        "X": (True, False, "cat2", 1, False, 0, 0, 0),
        "Z": (True, True, "cat1", 7, False, 0, 0, 0),  # only browsed in a test session
    }


# --- CLI on the built warehouse ------------------------------------------------------------------


def test_warehouse_summary_cli(warehouse: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALLBOAT_HOME", str(warehouse.home_dir))
    out = CliRunner().invoke(app, ["warehouse", "summary"], terminal_width=160)
    assert out.exit_code == 0, out.output
    assert "intent_examples" in out.output
    assert "sessions per split" in out.output
    assert "k=6" in out.output


# --- selection, vars and the quality gate (own homes) --------------------------------------------


def _render_text(result: TransformResult) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(result.render())
    return console.export_text()


def test_select_and_vars_rebuild_only_the_selection(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    _land(settings)
    result = run_transform(
        settings,
        select="+sessions",
        vars={"split_valid_fraction": 0.25, "split_test_fraction": 0.25},
    )
    assert {m.name for m in result.models} == {
        "stg_landing__browsing_events",
        "session_events",
        "sessions",
    }
    rows = _query(
        settings, "select split, count(*) as n from main.sessions group by split order by split"
    )
    # 20 sessions: the first 10 train, then 5 valid, then 5 test (no tie at these boundaries)
    assert {r["split"]: r["n"] for r in rows} == {"train": 10, "valid": 5, "test": 5}
    assert "select +sessions" in _render_text(result)


def test_gate_fails_on_an_unknown_product_action(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    _land(settings)
    bad = browsing_row("s_bad", BASE_MS, "buy", "A", "url-bad")
    write_landing(settings, "browsing_events", browsing_table([], extra_rows=[bad]), "part-bad")
    with pytest.raises(QualityGateError) as caught:
        run_transform(settings)
    message = str(caught.value)
    [line] = [ln for ln in message.splitlines() if "product_action" in ln]
    assert "accepted_values_stg_landing__browsing_events_product_action" in line
    assert "1 failing row" in line
    assert "value_field=buy" in line
    recorded = json.loads((settings.quality_dir / "latest.json").read_text())
    assert recorded["invocation"]["success"] is False
    statuses = {n["name"]: n["status"] for n in recorded["nodes"]}
    assert statuses["session_events"] == "skipped"  # nothing downstream of bad data is built


def test_gate_fails_on_purchase_share_out_of_bounds(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    _land(settings)
    # 5 of 20 sessions purchase (25%): out of [0.0005, 0.05] once the check is armed for 20 rows
    with pytest.raises(QualityGateError) as caught:
        run_transform(settings, vars={"distribution_min_rows": 1, "purchase_share_max": 0.05})
    lines = str(caught.value).splitlines()
    [line] = [ln for ln in lines if "sessions_purchase_share_within_bounds" in ln]
    assert "1 failing row" in line
    assert "metric_value=0.25" in line
    assert not any("add_share_within_bounds" in ln for ln in lines)  # 7/20 adds is within bounds
    recorded = json.loads((settings.quality_dir / "latest.json").read_text())
    by_name = {n["name"]: n for n in recorded["nodes"]}
    assert by_name["sessions_purchase_share_within_bounds"]["status"] == "fail"
    assert by_name["sessions_purchase_share_within_bounds"]["severity"] == "error"
    assert by_name["sessions_purchase_share_typical"]["status"] == "warn"  # also above 8%: warns


def test_landing_files_are_untouched_by_transform(warehouse: Settings) -> None:
    browsing = sorted(p.name for p in warehouse.table_landing_dir("browsing_events").iterdir())
    assert browsing == ["part-0.parquet", "part-1.parquet"]


def test_transform_cli_builds_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _home(tmp_path)
    sessions = [SESSIONS["s_intent"], SESSIONS["s_abandon"]]
    write_landing(settings, "browsing_events", browsing_table(sessions))
    monkeypatch.setenv("SMALLBOAT_HOME", str(settings.home_dir))
    out = CliRunner().invoke(app, ["transform"], terminal_width=200)
    assert out.exit_code == 0, out.output
    n_models = len(list((DBT_PROJECT_DIR / "models").rglob("*.sql")))
    assert f"dbt build passed: {n_models}/{n_models} models built" in out.output
    rows = _query(settings, "select count(*) as n from main.intent_examples")
    assert rows == [{"n": 6}]  # s_intent: k 0, 2, 4, 6; s_abandon: k 0, 2


def test_unknown_dbt_target_is_reported_and_recorded(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", dbt_target="nowhere")
    with pytest.raises(SmallboatError, match="target 'nowhere'") as caught:
        run_transform(settings)
    assert not isinstance(caught.value, QualityGateError)
    recorded = json.loads((settings.quality_dir / "latest.json").read_text())
    assert recorded["invocation"]["success"] is False
    assert "nowhere" in recorded["invocation"]["error"]
    assert recorded["nodes"] == []


def test_intent_prefix_stops_before_a_purchase_at_an_even_k(tmp_path: Path) -> None:
    """The prefix boundary decides: a purchase exactly k = 2 or 4 events after the first add must
    not be a prediction point (its prefix would show the purchase); the module's sessions never
    put a purchase at an even distance from the add, so they cannot tell `first_purchase_index`
    from `first_purchase_index - 1`."""
    settings = _home(tmp_path)
    sessions = [
        SessionSpec("s_even_2", BASE_MS, "d:E a:E pv p:E pv"),  # add 2, purchase 4
        SessionSpec("s_even_4", BASE_MS + HOUR_MS, "pv a:F pv pv pv p:F"),  # add 2, purchase 6
    ]
    write_landing(settings, "browsing_events", browsing_table(sessions))
    run_transform(settings, select="+intent_examples")
    rows = _query(settings, "select session_id_hash, k, prefix_length, label from intent_examples")
    assert {(r["session_id_hash"], r["k"]): (r["prefix_length"], r["label"]) for r in rows} == {
        ("s_even_2", 0): (2, 1),
        ("s_even_4", 0): (2, 1),
        ("s_even_4", 2): (4, 1),
    }

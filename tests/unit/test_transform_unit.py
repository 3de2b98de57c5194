"""The transform's bookkeeping without dbt: landing preparation, dbt arguments, gate record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
from rich.console import Console

from smallboat import schema
from smallboat.config import Settings
from smallboat.warehouse.quality import NodeResult, TransformResult
from smallboat.warehouse.transform import _dbt_args, prepare_landing


def _node(
    name: str, status: str, *, resource_type: str = "test", failures: int | None = 0, **kw: object
) -> NodeResult:
    return NodeResult(
        unique_id=f"{resource_type}.smallboat.{name}",
        name=name,
        resource_type=resource_type,
        status=status,
        severity=None if resource_type == "model" else str(kw.pop("severity", "error")),
        failures=None if resource_type == "model" else failures,
        message=str(kw.pop("message", "")) or None,
        execution_seconds=0.1,
        **kw,  # type: ignore[arg-type]
    )


def _result(*nodes: NodeResult) -> TransformResult:
    return TransformResult(
        nodes=nodes,
        started_at=datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        elapsed_seconds=3.5,
        target="duckdb",
        select=None,
        vars={},
    )


def _text(result: TransformResult) -> str:
    console = Console(width=200, record=True)
    console.print(result.render())
    return console.export_text()


def test_prepare_landing_writes_empty_canonical_files_only_where_missing(
    settings: Settings,
) -> None:
    folder = settings.table_landing_dir("browsing_events")
    folder.mkdir(parents=True)
    pq.write_table(schema.BROWSING_EVENTS.empty(), folder / "part-0.parquet")

    written = prepare_landing(settings)

    assert sorted(p.parent.name for p in written) == ["catalog", "predictions", "search_events"]
    for path in written:
        assert path.name == "empty.parquet"
        assert pq.read_schema(path).equals(schema.LANDING_TABLES[path.parent.name].arrow_schema)
    assert not (folder / "empty.parquet").exists()
    assert prepare_landing(settings) == []  # idempotent


def test_dbt_args_use_absolute_paths_and_buildable_selection(settings: Settings) -> None:
    args = _dbt_args(settings, select="sessions intent_examples", vars={"split_test_fraction": 0.2})
    assert args[0] == "build"
    for flag in ("--project-dir", "--profiles-dir", "--target-path", "--log-path"):
        assert args[args.index(flag) + 1].startswith("/")
    assert args[args.index("--target-path") + 1].startswith(str(settings.home_dir))
    assert json.loads(args[args.index("--vars") + 1]) == {"split_test_fraction": 0.2}
    i = args.index("--select")
    assert args[i + 1 : i + 3] == ["sessions", "intent_examples"]
    assert args[args.index("--indirect-selection") + 1] == "buildable"
    assert "--select" not in _dbt_args(settings, select=None, vars={})


def test_gate_message_has_one_line_per_failure_with_row_counts() -> None:
    result = _result(
        _node("sessions", "success", resource_type="model"),
        _node(
            "sessions_purchase_share_within_bounds",
            "fail",
            failures=1,
            tested_model="sessions",
            failure_sample=[{"metric_value": 0.6123456, "max_value": 0.3}],
        ),
        _node("unique_sessions_session_id_hash", "fail", failures=12),
        _node("sessions_add_share_typical", "warn", failures=1, severity="warn"),
        _node("intent_examples", "error", resource_type="model", message="Binder Error: x\nmore"),
        _node("intent_examples_key_unique", "skipped", failures=None),
    )
    lines = result.gate_message().splitlines()
    assert lines[0].startswith("the quality gate failed: 3 dbt node(s) failed, 1 downstream")
    assert lines[1:] == [
        "  - test sessions_purchase_share_within_bounds on sessions: 1 failing row "
        "(e.g. metric_value=0.6123, max_value=0.3)",
        "  - test unique_sessions_session_id_hash: 12 failing rows",
        "  - model intent_examples error: Binder Error: x",
    ]
    assert not result.success


def test_write_records_latest_and_a_timestamped_copy(settings: Settings) -> None:
    result = _result(
        _node("sessions", "success", resource_type="model"),
        _node("sessions_add_share_typical", "warn", failures=1, severity="warn"),
    ).write(settings.quality_dir)

    assert result.results_path == settings.quality_dir / "latest.json"
    recorded = json.loads(result.results_path.read_text())
    assert recorded["invocation"]["success"] is True
    assert recorded["summary"] == {"models_success": 1, "tests_warn": 1}
    assert recorded["nodes"][1]["severity"] == "warn"
    [stamped] = settings.quality_dir.glob("transform-*.json")
    assert stamped.name == "transform-20240501T120000.000000Z.json"
    assert json.loads(stamped.read_text()) == recorded


def test_render_counts_models_and_tests_and_lists_warnings() -> None:
    text = _text(
        _result(
            _node("sessions", "success", resource_type="model"),
            _node("unique_sessions_session_id_hash", "pass"),
            _node("sessions_add_share_typical", "warn", failures=1, severity="warn"),
        )
    )
    assert "1/1 models built, 1 tests passed, 1 warned, 0 failed in 3.5 s" in text
    assert "sessions_add_share_typical" in text

"""The quality gate's record: what each dbt node did, written where cards and audits read it.

`smallboat transform` runs `dbt build`; every model and test it ran becomes a `NodeResult`. The
whole run is a `TransformResult`, saved as JSON to `<home>/quality/latest.json` plus a timestamped
copy. The JSON has three keys, stable for readers such as the training card:

- `invocation`: started_at (UTC ISO 8601), elapsed_seconds, target, select, vars, success, and
  error (why dbt could not run at all, else null);
- `summary`: counts of models built / errored / skipped and tests passed / warned / failed /
  errored / skipped;
- `nodes`: one object per node with the fields of `NodeResult`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

TEST_TYPES = frozenset({"test", "unit_test"})
BLOCKING_STATUSES = frozenset({"error", "fail"})
"""A model or test in one of these states stops the gate (`fail` only happens at error severity)."""


@dataclass(frozen=True)
class NodeResult:
    """One model or test of a dbt build, as dbt reported it."""

    unique_id: str
    name: str
    resource_type: str
    """model | test | unit_test (seeds and snapshots would appear under their own type)."""
    status: str
    """Models: success | error | skipped. Tests: pass | warn | fail | error | skipped."""
    severity: str | None
    """Tests: 'error' or 'warn'; None for models."""
    failures: int | None
    """Tests: how many rows the test query returned (0 when it passed)."""
    message: str | None
    execution_seconds: float
    tested_model: str | None = None
    """Tests: the model a generic test is attached to, when dbt says."""
    failures_relation: str | None = None
    """Tests: the warehouse table holding the failing rows (the project sets store_failures)."""
    failure_sample: list[dict[str, Any]] = field(default_factory=list)
    """Up to a few of the failing rows, read back from failures_relation."""

    @property
    def is_test(self) -> bool:
        return self.resource_type in TEST_TYPES

    @property
    def is_blocking(self) -> bool:
        return self.status in BLOCKING_STATUSES

    def gate_line(self) -> str:
        """One line naming the failed node and how badly it failed, for the gate's error message."""
        if not self.is_test:
            first_line = (self.message or "no message").strip().splitlines()[0]
            return f"model {self.name} {self.status}: {first_line}"
        where = f" on {self.tested_model}" if self.tested_model else ""
        if self.status == "error":
            first_line = (self.message or "no message").strip().splitlines()[0]
            return f"test {self.name}{where} could not run: {first_line}"
        n = self.failures if self.failures is not None else 0
        line = f"test {self.name}{where}: {n} failing row{'s' if n != 1 else ''}"
        if self.failure_sample:
            shown = "; ".join(_format_row(row) for row in self.failure_sample)
            line += f" (e.g. {shown})"
        return line


@dataclass(frozen=True)
class TransformResult:
    """The outcome of one `dbt build`: every node, how long it took, and where it was recorded."""

    nodes: tuple[NodeResult, ...]
    started_at: datetime
    elapsed_seconds: float
    target: str
    select: str | None
    vars: dict[str, Any]
    results_path: Path | None = None
    error: str | None = None
    """Why dbt could not run at all (a broken profile or project); then `nodes` is empty."""

    @property
    def models(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.resource_type == "model"]

    @property
    def tests(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.is_test]

    @property
    def warnings(self) -> list[NodeResult]:
        return [n for n in self.tests if n.status == "warn"]

    @property
    def blocking(self) -> list[NodeResult]:
        """Errored models and failed or errored tests: any of them fails the quality gate."""
        return [n for n in self.nodes if n.is_blocking]

    @property
    def success(self) -> bool:
        return self.error is None and not self.blocking

    def summary(self) -> dict[str, int]:
        """Counts per kind and status, e.g. {'models_success': 9, 'tests_warn': 2}."""
        counts = Counter(
            f"{'tests' if n.is_test else 'models'}_{n.status.replace(' ', '_')}" for n in self.nodes
        )
        return dict(sorted(counts.items()))

    def node(self, name: str) -> NodeResult:
        """The node called `name` (a model or test name); KeyError lists the known names."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no dbt node named {name!r}; known: {sorted(n.name for n in self.nodes)}")

    def gate_message(self) -> str:
        """The quality gate's error: one line per failing test or errored model."""
        skipped = sum(n.status == "skipped" for n in self.nodes)
        lines = [
            f"the quality gate failed: {len(self.blocking)} dbt node(s) failed"
            + (f", {skipped} downstream node(s) skipped" if skipped else "")
            + (f" (all results in {self.results_path})" if self.results_path else "")
        ]
        lines += [f"  - {n.gate_line()}" for n in self.blocking]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "invocation": {
                "started_at": self.started_at.isoformat(),
                "elapsed_seconds": round(self.elapsed_seconds, 3),
                "target": self.target,
                "select": self.select,
                "vars": self.vars,
                "success": self.success,
                "error": self.error,
            },
            "summary": self.summary(),
            "nodes": [asdict(n) for n in self.nodes],
        }

    def write(self, quality_dir: Path) -> TransformResult:
        """Save as `latest.json` and a timestamped copy in `quality_dir`; return it, path set."""
        quality_dir.mkdir(parents=True, exist_ok=True)
        stamped = quality_dir / f"transform-{self.started_at.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
        latest = quality_dir / "latest.json"
        result = replace(self, results_path=latest)
        text = json.dumps(result.to_dict(), indent=2, default=str)
        for path in (stamped, latest):
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(text)
            tmp.replace(path)  # readers never see half a file
        return result

    def render(self) -> RenderableType:
        """A short report: models built, tests passed/warned/failed, seconds, and each warning."""
        models_ok = sum(n.status == "success" for n in self.models)
        tests = self.tests
        passed = sum(n.status == "pass" for n in tests)
        failed = sum(n.is_blocking for n in tests)
        skipped = sum(n.status == "skipped" for n in self.nodes)
        style = "green" if self.success else "red"
        headline = Text.assemble(
            ("dbt build ", "bold"),
            (f"{'passed' if self.success else 'FAILED'}", f"bold {style}"),
            f": {models_ok}/{len(self.models)} models built, {passed} tests passed, ",
            (f"{len(self.warnings)} warned", "yellow" if self.warnings else ""),
            ", ",
            (f"{failed} failed", "red" if failed else ""),
            f"{f', {skipped} skipped' if skipped else ''} in {self.elapsed_seconds:.1f} s "
            f"(target {self.target}{f', select {self.select}' if self.select else ''})",
        )
        parts: list[RenderableType] = [headline]
        shown = self.blocking + self.warnings
        if shown:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            table.add_column("status")
            table.add_column("node")
            table.add_column("on")
            table.add_column("rows", justify="right")
            table.add_column("sample")
            for n in shown:
                table.add_row(
                    Text(n.status, style="red" if n.is_blocking else "yellow"),
                    n.name,
                    n.tested_model or "",
                    "" if n.failures is None else str(n.failures),
                    "; ".join(_format_row(row) for row in n.failure_sample),
                )
            parts.append(table)
        if self.results_path:
            parts.append(Text(f"results: {self.results_path}", style="dim"))
        return Group(*parts)


def _format_row(row: dict[str, Any]) -> str:
    """`a=1, b=x`, with floats shortened, so a failing row fits on the gate's one line."""
    return ", ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in row.items())


def transform_digest(result: TransformResult | dict[str, Any] | None) -> dict[str, Any]:
    """What a card says about a dbt build: the TrainFlow card (its headline and tests) and the
    MonitorFlow card (success, seconds, counts) both show this.

    `result` is a `TransformResult` or its recorded form (`to_dict()`, `latest.json`); empty or
    None means no build was recorded. Keys: `headline` (one line), `success`, `elapsed_seconds`,
    `summary` (counts per kind and status, as in the record), `tests` (name, status, severity,
    failures of each test), `warnings` (the warned tests' names) and `results_path` (the full
    record, known only from a TransformResult).
    """
    results_path, elapsed = None, None
    if isinstance(result, TransformResult):
        results_path = None if result.results_path is None else str(result.results_path)
        elapsed = result.elapsed_seconds  # the record rounds it to milliseconds
        result = result.to_dict()
    if not result:
        return {
            "headline": "no transform results recorded",
            "success": None,
            "elapsed_seconds": None,
            "summary": {},
            "tests": [],
            "warnings": [],
            "results_path": None,
        }
    counts = dict(result.get("summary", {}))
    inv = result.get("invocation", {})
    tests = [n for n in result.get("nodes", []) if n.get("resource_type") in TEST_TYPES]
    text = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    state = "passed" if inv.get("success") else "FAILED"
    return {
        "headline": f"dbt build at {inv.get('started_at', '?')}: gate {state}; {text}.",
        "success": bool(inv.get("success")),
        "elapsed_seconds": float(inv.get("elapsed_seconds", 0.0) if elapsed is None else elapsed),
        "summary": counts,
        "tests": [
            {
                "name": n["name"],
                "status": n["status"],
                "severity": n.get("severity") or "",
                "failures": n.get("failures"),
            }
            for n in tests
        ],
        "warnings": [n["name"] for n in tests if n["status"] == "warn"],
        "results_path": results_path,
    }

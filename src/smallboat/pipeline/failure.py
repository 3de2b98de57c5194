"""A failed Metaflow run, said in a few lines: which step failed and its exception's own line,
read from the failed task's stderr (Metaflow's Runner reports only that the run failed)."""

from __future__ import annotations

from typing import Any

RESUMABLE_FLOW = "TrainFlow"
"""The flow `smallboat train --resume RUN_ID` resumes; its failures say how."""


def flow_failure(running: Any, stdout: str, *, flow_name: str) -> str:
    """What failed, from the failed task's own stderr (its last lines hold the exception)."""
    run = getattr(running, "run", None)
    where = ""
    if run is not None:
        resume = (
            f"; resume with `smallboat train --resume {run.id}`"
            if flow_name == RESUMABLE_FLOW
            else ""
        )
        where = f" (run {run.pathspec}{resume})"
    detail: list[str] = []
    if run is not None:
        for flow_step in run:
            for task in flow_step:
                if not task.successful:
                    detail.append(f"step {flow_step.id}: {_exception_line(task.stderr or '')}")
    if not detail:
        stderr = running.stderr or ""
        detail = [line for line in (stderr or stdout).splitlines() if line.strip()][-12:]
    return f"{flow_name} failed{where}:\n" + "\n".join(detail)


def _exception_line(stderr: str) -> str:
    """The exception's own line from a task's traceback, without the module path of its class
    (`smallboat.errors.DataError: no oracle file ...` -> `no oracle file ...`)."""
    lines = [line for line in stderr.splitlines() if line.strip() and line != "Task failed."]
    for line in reversed(lines):
        head, sep, message = line.partition(": ")
        if sep and not line.startswith(" ") and head.replace(".", "").replace("_", "").isalnum():
            return message if head.startswith("smallboat.") else line
    return lines[-1] if lines else "failed"

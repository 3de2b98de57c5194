"""Where heavy steps run: locally by default, on Kubernetes or AWS Batch when a setting says so.

`SMALLBOAT_COMPUTE=kubernetes` (or `batch`) gives the decorated steps Metaflow's @kubernetes (or
@batch) with the resources named at the step, the way the reference toggled @batch with one flag.
Nothing in the flow assumes a shared disk: steps exchange data as Metaflow artifacts. (The
warehouse must then be reachable from the cluster: a dbt target such as Snowflake, see
docs/training.md.) Metaflow's own `--with kubernetes` works as well and applies to every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

COMPUTE_ENV = "SMALLBOAT_COMPUTE"
CHOICES = ("local", "kubernetes", "batch")


def remote(*, cpu: int, memory: int) -> Callable[[F], F]:
    """@kubernetes / @batch with these resources when SMALLBOAT_COMPUTE asks for it, else nothing.

    Read when the flow file is loaded, which is when Metaflow builds the flow's graph.
    """
    compute = os.environ.get(COMPUTE_ENV, "local")
    if compute not in CHOICES:
        raise ValueError(f"{COMPUTE_ENV}={compute!r} is not one of {', '.join(CHOICES)}")
    if compute in ("kubernetes", "batch"):
        import metaflow

        decorator: Callable[..., Callable[[F], F]] = getattr(metaflow, compute)
        return decorator(cpu=cpu, memory=memory)

    def unchanged(func: F) -> F:
        return func

    return unchanged

"""Where heavy steps run, and with what: the one table of the flows' cluster resources.

`SMALLBOAT_COMPUTE=kubernetes` (or `batch`) gives the steps named in `RESOURCES` Metaflow's
@kubernetes (or @batch) with the CPU, memory and GPUs listed here, and the image named by
`SMALLBOAT_IMAGE`, the way the reference toggled @batch with one flag. The steps not listed run
with Metaflow's defaults (1 CPU, 4 GB) when a deployment (`smallboat deploy`, Argo Workflows or
Step Functions) puts every step on the cluster. Nothing in the flow assumes a shared disk: steps
exchange data as Metaflow artifacts; the warehouse must then be reachable from the cluster (a dbt
target such as Snowflake or Spark, docs/scale-out.md). Metaflow's own `--with kubernetes` works as
well and applies to every step.

Read when a flow file is loaded, which is when Metaflow builds the flow's graph:
- `SMALLBOAT_COMPUTE`: local (default), kubernetes or batch.
- `SMALLBOAT_IMAGE`: the container image of the decorated steps (default: Metaflow's
  METAFLOW_KUBERNETES_CONTAINER_IMAGE / METAFLOW_BATCH_CONTAINER_IMAGE).
- `SMALLBOAT_TRAIN_GPUS`: GPUs per training branch (default 0: the GRUs train well on CPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

COMPUTE_ENV = "SMALLBOAT_COMPUTE"
IMAGE_ENV = "SMALLBOAT_IMAGE"
TRAIN_GPUS_ENV = "SMALLBOAT_TRAIN_GPUS"
CHOICES = ("local", "kubernetes", "batch")


@dataclass(frozen=True)
class Resources:
    cpu: int  # cores
    memory: int  # MB
    gpu: int = 0


# The heavy steps of TrainFlow. prepare holds every split's tokenised arrays; each training
# branch (the foreach) trains a seed ensemble on `threads` cores; recommend trains the next-item
# sequence model. GPUs go to the training branches only (SMALLBOAT_TRAIN_GPUS).
RESOURCES: dict[str, Resources] = {
    "prepare": Resources(cpu=2, memory=8000),
    "train": Resources(cpu=2, memory=8000),
    "recommend": Resources(cpu=2, memory=8000),
}
GPU_STEPS = ("train",)


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "0") or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must be 0 or more")
    return value


def resources(step_name: str) -> Resources:
    """The resources of one step: the table above, plus the GPUs the environment asks for."""
    if step_name not in RESOURCES:
        raise ValueError(f"no resources listed for step {step_name!r}: add it to RESOURCES")
    listed = RESOURCES[step_name]
    gpu = _env_int(TRAIN_GPUS_ENV) if step_name in GPU_STEPS else listed.gpu
    return Resources(cpu=listed.cpu, memory=listed.memory, gpu=gpu)


def remote(step_name: str) -> Callable[[F], F]:
    """@kubernetes / @batch with this step's resources when SMALLBOAT_COMPUTE asks, else nothing."""
    compute = os.environ.get(COMPUTE_ENV, "local")
    if compute not in CHOICES:
        raise ValueError(f"{COMPUTE_ENV}={compute!r} is not one of {', '.join(CHOICES)}")
    wanted = resources(step_name)
    if compute in ("kubernetes", "batch"):
        import metaflow

        kwargs: dict[str, Any] = {"cpu": wanted.cpu, "memory": wanted.memory}
        if wanted.gpu:
            kwargs["gpu"] = wanted.gpu
        image = os.environ.get(IMAGE_ENV)
        if image:
            kwargs["image"] = image
        decorator: Callable[..., Callable[[F], F]] = getattr(metaflow, compute)
        return decorator(**kwargs)

    def unchanged(func: F) -> F:
        return func

    return unchanged

"""TrainFlow and MonitorFlow as cluster deployments, written by Metaflow's own deployers.

`argo-workflows create --only-json` (Kubernetes) and `step-functions create --only-json` (AWS
Batch) print the workflow Metaflow would deploy; this module runs them on the flow files with the
datastore on S3 and the cluster settings in METAFLOW_* / SMALLBOAT_* variables of the generating
process only, and writes one JSON file per flow. The resources of the heavy steps come from one
place, `flows/compute.py` (read when Metaflow loads the flow), and every step gets the environment
`step_environment` lists (the warehouse target, the MLflow server).

Metaflow uploads the flows' code package to the S3 datastore while it generates (the artifact
points at it), and `step-functions create` also registers the AWS Batch job definition and asks
Step Functions for an existing deployment: both need AWS (or an S3/Batch-compatible endpoint
named by boto3's AWS_ENDPOINT_URL_* variables). Everything else of Metaflow's cluster
configuration (the Kubernetes namespace, the Batch job queue and roles, the DynamoDB table of
Step Functions' foreach) is Metaflow's own METAFLOW_* settings, read from the environment or
~/.metaflowconfig as Metaflow always does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallboat.config import Settings
from smallboat.errors import SmallboatError
from smallboat.pipeline.runner import MONITOR_FLOW_FILE, TRAIN_FLOW_FILE, flow_file, metaflow_env

# target -> (Metaflow's command group, the compute decorator its steps run under, image variable)
TARGETS: dict[str, tuple[str, str, str]] = {
    "argo": ("argo-workflows", "kubernetes", "METAFLOW_KUBERNETES_CONTAINER_IMAGE"),
    "step-functions": ("step-functions", "batch", "METAFLOW_BATCH_CONTAINER_IMAGE"),
}
FLOWS: dict[str, str] = {"TrainFlow": TRAIN_FLOW_FILE, "MonitorFlow": MONITOR_FLOW_FILE}
DBT_TARGETS = ("snowflake",)
"""Warehouse targets of `profiles.yml` a cluster can reach (the embedded DuckDB file cannot be)."""
GENERATE_TIMEOUT_S = 300


@dataclass(frozen=True)
class DeploySpec:
    """What a deployment needs from the user; the rest is Metaflow's configuration."""

    target: str
    image: str
    s3_root: str
    mlflow_uri: str
    dbt_target: str = "snowflake"
    train_gpus: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if self.target not in TARGETS:
            raise SmallboatError(
                f"deploy target {self.target!r} is not one of {', '.join(TARGETS)}"
            )
        if not self.image.strip():
            raise SmallboatError("deploy needs --image: the container image every step runs in")
        if not self.s3_root.startswith("s3://") or len(self.s3_root) <= len("s3://"):
            raise SmallboatError(
                f"--s3-root {self.s3_root!r} is not an S3 URL such as s3://bucket/metaflow"
            )
        if not self.mlflow_uri.startswith(("http://", "https://", "databricks")):
            raise SmallboatError(
                f"--mlflow-uri {self.mlflow_uri!r}: cluster steps need an MLflow tracking server "
                "(http(s)://...), not a file on one machine"
            )
        if self.dbt_target not in DBT_TARGETS:
            raise SmallboatError(
                f"--dbt-target {self.dbt_target!r} is not one of {', '.join(DBT_TARGETS)}: "
                "cluster steps need a warehouse they can reach, not a DuckDB file"
            )
        if self.train_gpus < 0:
            raise SmallboatError(f"--train-gpus {self.train_gpus} must be 0 or more")


def step_environment(spec: DeploySpec) -> dict[str, str]:
    """The variables every step of a deployed flow gets (Metaflow's @environment)."""
    env = {
        "SMALLBOAT_HOME": "/tmp/smallboat",  # scratch per pod: state lives in S3, MLflow, warehouse
        "SMALLBOAT_DBT_TARGET": spec.dbt_target,
        "SMALLBOAT_MLFLOW_URI": spec.mlflow_uri,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.update(spec.extra_env)
    return env


def generation_environment(spec: DeploySpec, settings: Settings) -> dict[str, str]:
    """The generating process's environment: the datastore on S3, the compute decorator and
    the image for every step, the training branches' GPUs."""
    _, compute, image_var = TARGETS[spec.target]
    env = dict(os.environ)
    env.update(metaflow_env(settings))
    s3_root = spec.s3_root.rstrip("/")
    env.update(
        {
            "METAFLOW_DEFAULT_DATASTORE": "s3",
            "METAFLOW_DATASTORE_SYSROOT_S3": s3_root,
            "METAFLOW_DATATOOLS_S3ROOT": f"{s3_root}/data",
            "METAFLOW_CARD_S3ROOT": f"{s3_root}/mf.cards",
            image_var: spec.image,
            "SMALLBOAT_COMPUTE": compute,
            "SMALLBOAT_IMAGE": spec.image,
            "SMALLBOAT_TRAIN_GPUS": str(spec.train_gpus),
        }
    )
    return env


def render(spec: DeploySpec, settings: Settings, flow: str) -> dict[str, Any]:
    """Run Metaflow's deployer for one flow (`TrainFlow` or `MonitorFlow`); its JSON."""
    spec.check()
    if flow not in FLOWS:
        raise SmallboatError(f"no flow {flow!r}: one of {', '.join(FLOWS)}")
    group = TARGETS[spec.target][0]
    environment = "environment:vars=" + json.dumps(step_environment(spec), sort_keys=True)
    command = [
        sys.executable,
        flow_file(FLOWS[flow]),
        "--no-pylint",
        "--with",
        environment,
        group,
        "create",
        "--only-json",
    ]
    settings.ensure_home()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=generation_environment(spec, settings),
            cwd=str(settings.home_dir),
            timeout=GENERATE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SmallboatError(
            f"{group} create for {flow} took over {GENERATE_TIMEOUT_S} s: is S3 reachable?"
        ) from None
    if done.returncode != 0:
        raise SmallboatError(f"{group} create for {flow} failed: {_last_error(done.stderr)}")
    try:
        loaded = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise SmallboatError(
            f"{group} create for {flow} printed no JSON ({error}): {done.stdout[:200]!r}"
        ) from None
    if not isinstance(loaded, dict):
        raise SmallboatError(f"{group} create for {flow} printed {type(loaded).__name__}, not {{}}")
    return loaded


def _last_error(stderr: str) -> str:
    """The line of Metaflow's or boto3's output that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else "(no output)"


def write_deployment(spec: DeploySpec, settings: Settings, out: Path) -> list[Path]:
    """Write `<flow>.<target>.json` for both flows into `out`; the paths written."""
    spec.check()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for flow in FLOWS:
        document = render(spec, settings, flow)
        path = out / f"{flow.lower()}.{spec.target}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        written.append(path)
    return written

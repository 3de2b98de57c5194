"""`smallboat deploy`: Metaflow's own deployers write TrainFlow and MonitorFlow as Argo Workflows
templates and Step Functions state machines, offline, with resources from `flows/compute.py`, the
foreach as a parallel map, every step's environment and the datastore on S3.

Generating needs S3 (Metaflow uploads the code package the artifact points at) and, for Step
Functions, AWS Batch (it registers the job definition) and Step Functions (it looks for an earlier
deployment). Here those are moto's server on 127.0.0.1, reached through boto3's own
AWS_ENDPOINT_URL; Metaflow and boto3 run unchanged."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from smallboat.cli import app

pytestmark = pytest.mark.slow

IMAGE = "registry.example.com/smallboat:1.2.3"
S3_ROOT = "s3://smallboat-deploy/metaflow"
MLFLOW = "http://mlflow.smallboat.svc:5000"
QUEUE = "smallboat-queue"
HEAVY = {"prepare", "train", "recommend"}
TRAIN_STEPS = {
    "start", "transform", "prepare", "prod2vec", "train", "join",
    "recommend", "evaluate", "card", "register", "end",
}  # fmt: skip
MONITOR_STEPS = {"start", "landing", "warehouse", "compute", "card", "end"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _aws_setup(endpoint: str) -> None:
    """The bucket, and a Batch job queue on a managed EC2 compute environment."""
    kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    boto3.client("s3", **kw).create_bucket(Bucket="smallboat-deploy")
    ec2, iam, batch = (boto3.client(name, **kw) for name in ("ec2", "iam", "batch"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="sb", Description="sb", VpcId=vpc)["GroupId"]
    role = iam.create_role(RoleName="sb-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    profile = iam.create_instance_profile(InstanceProfileName="sb")["InstanceProfile"]["Arn"]
    env = batch.create_compute_environment(
        computeEnvironmentName="sb-ce",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 16,
            "instanceTypes": ["optimal"],
            "subnets": [subnet],
            "securityGroupIds": [group],
            "instanceRole": profile,
        },
        serviceRole=role,
    )["computeEnvironmentArn"]
    batch.create_job_queue(
        jobQueueName=QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
    )


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "METAFLOW_HOME": str(tmp_path_factory.mktemp("metaflowconfig")),
            "METAFLOW_KUBERNETES_NAMESPACE": "smallboat",
            "METAFLOW_BATCH_JOB_QUEUE": QUEUE,
            "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": "arn:aws:iam::123456789012:role/sb-task",
            "METAFLOW_SFN_IAM_ROLE": "arn:aws:iam::123456789012:role/sb-sfn",
            "METAFLOW_SFN_DYNAMO_DB_TABLE": "smallboat-sfn",
            "SMALLBOAT_HOME": str(tmp_path_factory.mktemp("home")),
        }.items():
            mp.setenv(name, value)
        try:
            _aws_setup(endpoint)
            yield endpoint
        finally:
            server.stop()


@pytest.fixture(scope="module")
def written(aws: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both targets' files, through the CLI as a user runs it."""
    out = tmp_path_factory.mktemp("deploy")
    documents = {}
    for target in ("argo", "step-functions"):
        result = CliRunner().invoke(
            app,
            [
                "deploy", "--target", target, "--out", str(out), "--image", IMAGE,
                "--s3-root", S3_ROOT, "--mlflow-uri", MLFLOW, "--train-gpus", "1",
                "--env", "SNOWFLAKE_ACCOUNT=acme-xy12345",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        for flow in ("trainflow", "monitorflow"):
            path = out / f"{flow}.{target}.json"
            assert f"wrote {path}" in result.output.replace("\n", "")
            documents[f"{flow}.{target}"] = json.loads(path.read_text())
    return documents


def _env(entries: list[dict[str, Any]], key: str, value: str) -> dict[str, str]:
    return {e[key]: str(e[value]) for e in entries if isinstance(e.get(value), str)}


def _check_step_env(env: dict[str, str], step: str) -> None:
    assert env["SMALLBOAT_DBT_TARGET"] == "snowflake", step
    assert env["SMALLBOAT_MLFLOW_URI"] == MLFLOW, step
    assert env["SNOWFLAKE_ACCOUNT"] == "acme-xy12345", step
    assert env["METAFLOW_DEFAULT_DATASTORE"] == "s3", step
    assert env["METAFLOW_DATASTORE_SYSROOT_S3"] == S3_ROOT, step


def _argo_steps(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t["container"] for t in document["spec"]["templates"] if "container" in t}


@pytest.mark.parametrize(
    ("flow", "steps"), [("trainflow", TRAIN_STEPS), ("monitorflow", MONITOR_STEPS)]
)
def test_argo_workflow_template(written: dict[str, Any], flow: str, steps: set[str]) -> None:
    document = written[f"{flow}.argo"]
    assert document["kind"] == "WorkflowTemplate"
    assert document["metadata"]["namespace"] == "smallboat"
    containers = _argo_steps(document)
    assert steps <= set(containers)
    for step in steps:
        container = containers[step]
        assert container["image"] == IMAGE, step
        _check_step_env(_env(container["env"], "name", "value"), step)
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        if step in HEAVY and flow == "trainflow":
            assert (requests["cpu"], requests["memory"]) == ("2", "8000M"), step
        else:
            assert (requests["cpu"], requests["memory"]) == ("1", "4096M"), step
        assert limits.get("nvidia.com/gpu") == (
            "1" if (flow, step) == ("trainflow", "train") else None
        ), step


def test_argo_foreach_is_a_parallel_fan_out(written: dict[str, Any]) -> None:
    spec = written["trainflow.argo"]["spec"]
    dags = {t["name"]: t["dag"]["tasks"] for t in spec["templates"] if "dag" in t}
    fanned = [task for task in dags["TrainFlow"] if task.get("withParam")]
    # One DAG task per grid entry, over prod2vec's split count, each running the train step.
    assert [task["withParam"] for task in fanned] == [
        "{{tasks.prod2vec.outputs.parameters.num-splits}}"
    ]
    assert [task["template"] for task in dags[fanned[0]["template"]]] == ["train"]
    assert spec["parallelism"] > 1  # the branches run at the same time


def _sfn_tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = {}
    for name, state in states.items():
        if state["Type"] == "Map":
            tasks.update(_sfn_tasks(state["Iterator"]["States"]))
        elif state.get("Resource") == "arn:aws:states:::batch:submitJob.sync":
            tasks[name] = state
    return tasks


@pytest.mark.parametrize(
    ("flow", "steps"), [("trainflow", TRAIN_STEPS), ("monitorflow", MONITOR_STEPS)]
)
def test_step_functions_state_machine(
    written: dict[str, Any], aws: str, flow: str, steps: set[str]
) -> None:
    tasks = _sfn_tasks(written[f"{flow}.step-functions"]["States"])
    assert set(tasks) == steps
    batch = boto3.client("batch", endpoint_url=aws, region_name="us-east-1")
    for step, state in tasks.items():
        parameters = state["Parameters"]
        assert parameters["JobQueue"] == QUEUE, step
        overrides = parameters["ContainerOverrides"]
        _check_step_env(_env(overrides["Environment"], "Name", "Value"), step)
        wanted = {r["Type"]: r["Value"] for r in overrides["ResourceRequirements"]}
        heavy = step in HEAVY and flow == "trainflow"
        assert (wanted["VCPU"], wanted["MEMORY"]) == (("2", "8000") if heavy else ("1", "4096"))
        assert wanted.get("GPU") == ("1" if (flow, step) == ("trainflow", "train") else None)
        # The image lives in the Batch job definition Metaflow registered while generating.
        [definition] = batch.describe_job_definitions(jobDefinitions=[parameters["JobDefinition"]])[
            "jobDefinitions"
        ]
        assert definition["containerProperties"]["image"] == IMAGE, step


def test_step_functions_foreach_is_a_map_state(written: dict[str, Any]) -> None:
    states = written["trainflow.step-functions"]["States"]
    maps = {name: s for name, s in states.items() if s["Type"] == "Map"}
    assert list(maps) == ["*train"]
    assert maps["*train"]["Iterator"]["StartAt"] == "train"
    assert maps["*train"]["MaxConcurrency"] > 1
    assert states[maps["*train"]["Next"]] is states["join"]


def test_code_package_is_in_the_s3_datastore(written: dict[str, Any], aws: str) -> None:
    env = _env(_argo_steps(written["trainflow.argo"])["train"]["env"], "name", "value")
    url = env["METAFLOW_CODE_URL"]
    assert url.startswith(S3_ROOT + "/TrainFlow/"), url
    bucket, key = url.removeprefix("s3://").split("/", 1)
    head = boto3.client("s3", endpoint_url=aws, region_name="us-east-1").head_object(
        Bucket=bucket, Key=key
    )
    assert head["ContentLength"] > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--s3-root", "/data/metaflow", "--mlflow-uri", MLFLOW], "is not an S3 URL"),
        (
            ["--s3-root", S3_ROOT, "--mlflow-uri", "sqlite:///m.db"],
            "need an MLflow tracking server",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["deploy", "--target", "argo", "--out", str(tmp_path), "--image", IMAGE, *args]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output

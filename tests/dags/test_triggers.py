"""The EMR step wait in the triggerer, against moto's EMR API on 127.0.0.1 (the test drives the states)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from infra.local.emr import REGION, emr_backend
from tests.dags.helpers import aws_connection_to

POLL = 0.05


@pytest.fixture
def step(airflow_home, moto_endpoint, monkeypatch):
    """A cluster with one step on moto; returns (cluster id, step id, moto's step object)."""
    import boto3

    aws_connection_to(moto_endpoint, REGION, monkeypatch)
    client = boto3.client("emr", endpoint_url=moto_endpoint, region_name=REGION)
    cluster_id = client.run_job_flow(
        Name="trigger-test",
        ReleaseLabel="emr-7.13.0",
        Instances={"InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True, "MasterInstanceType": "m5.xlarge"},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    step_id = client.add_job_flow_steps(
        JobFlowId=cluster_id,
        Steps=[{"Name": "hmm-em t iteration 1", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}],
    )["StepIds"][0]
    moto_step = next(s for s in emr_backend().clusters[cluster_id].steps if s.id == step_id)
    moto_step.state = "RUNNING"
    return cluster_id, step_id, moto_step


def new_trigger(cluster_id: str, step_id: str, poll_seconds: float = POLL, commit: Any = None) -> Any:
    # Airflow is imported once the airflow_home fixture has configured it (tests/conftest.py).
    from hmm.orchestration.triggers import EmrStepDoneTrigger

    return EmrStepDoneTrigger(cluster_id, step_id, poll_seconds, "aws_default", commit=commit)


def run_trigger(trigger: Any, finish: Any, on_look: int) -> tuple[list[Any], int]:
    """The trigger's events when the step ends just before its ``on_look``-th look; and its looks."""
    from hmm.orchestration import emr

    looks = 0
    real_state = emr.step_state

    def counted(client: Any, cluster_id: str, step_id: str) -> str:
        nonlocal looks
        looks += 1
        if looks == on_look:
            finish()
        return real_state(client, cluster_id, step_id)

    async def events() -> list[Any]:
        return [event async for event in trigger.run()]

    emr.step_state, saved = counted, emr.step_state
    try:
        return asyncio.run(events()), looks
    finally:
        emr.step_state = saved


def test_the_trigger_fires_once_when_the_step_completes(step):
    cluster_id, step_id, moto_step = step
    trigger = new_trigger(cluster_id, step_id)
    events, looks = run_trigger(trigger, lambda: setattr(moto_step, "state", "COMPLETED"), on_look=4)
    assert [event.payload for event in events] == [{"state": "COMPLETED"}]
    assert looks == 4  # three looks at a RUNNING step, one DescribeStep each, then the one that saw it end


def test_the_trigger_fires_once_the_iteration_is_committed_while_emr_still_says_running(step, s3_root, tmp_path):
    """The COMMIT is the truth: the wait goes on before the step's process has stopped and EMR has noticed."""
    from hmm.training import steps
    from hmm.training.spec import TrainingSpec
    from tests.conftest import write_categorical_parquet
    from tests.dags.helpers import SPEC

    cluster_id, step_id, moto_step = step
    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=10)[0]
    spec = TrainingSpec.from_dict({**SPEC, "data": data_uri})
    trigger = new_trigger(cluster_id, step_id, commit=[s3_root, "t", 0])

    events, looks = run_trigger(trigger, lambda: steps.init_training(s3_root, "t", spec, engine="local"), on_look=2)
    assert [event.payload for event in events] == [{"state": "COMMITTED"}]
    assert looks == 2  # the COMMIT appeared during the second look at the step, and no DescribeStep after it
    assert moto_step.state == "RUNNING"


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_a_failed_step_fires_with_emr_s_reason(step, state):
    cluster_id, step_id, moto_step = step

    def fail() -> None:
        moto_step.last_state_change_reason = "Spark driver exited with code 3"
        moto_step.state = state

    events, _ = run_trigger(new_trigger(cluster_id, step_id), fail, on_look=2)
    (event,) = events
    assert event.payload["state"] == "FAILED"
    assert f"EMR step {step_id} (hmm-em t iteration 1) is {state}" in event.payload["reason"]
    assert "Spark driver exited with code 3" in event.payload["reason"]


def test_the_trigger_serializes_to_an_importable_class(step):
    cluster_id, step_id, _ = step
    import importlib

    path, kwargs = new_trigger(cluster_id, step_id, 5.0, commit=["s3://b/store", "t", 3]).serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert kwargs == {
        "cluster_id": cluster_id,
        "step_id": step_id,
        "poll_seconds": 5.0,
        "aws_conn_id": "aws_default",
        "commit": ["s3://b/store", "t", 3],
        "commit_poll_seconds": 1.0,
    }


def test_an_unreachable_emr_endpoint_fails_the_wait_instead_of_waiting_forever(airflow_home, monkeypatch):
    import socket

    from botocore.exceptions import EndpointConnectionError

    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    aws_connection_to(closed, REGION, monkeypatch)

    async def events() -> list[Any]:
        return [event async for event in new_trigger("j-GONE", "s-GONE").run()]

    with pytest.raises(EndpointConnectionError, match=re.escape(closed)):
        asyncio.run(events())

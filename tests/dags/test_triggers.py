"""The EMR step wait in the triggerer, against moto's EMR API on 127.0.0.1 (the test drives the states)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from hmm.orchestration.triggers import EmrStepDoneTrigger
from tests.dags.test_dag_emr import ACCOUNT, REGION

POLL = 0.05


@pytest.fixture
def step(moto_endpoint, monkeypatch):
    """A cluster with one step on moto; returns (cluster id, step id, moto's step object)."""
    import boto3
    from moto.emr.models import emr_backends

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": moto_endpoint, "region_name": REGION},
            }
        ),
    )
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
    moto_step = next(s for s in emr_backends[ACCOUNT][REGION].clusters[cluster_id].steps if s.id == step_id)
    moto_step.state = "RUNNING"
    return cluster_id, step_id, moto_step


def run_trigger(trigger: EmrStepDoneTrigger, finish: Any, after: float) -> tuple[list[Any], int]:
    """The trigger's events while another thread ends the step ``after`` seconds in; and its looks."""
    from hmm.orchestration import tasks

    looks = 0
    real_state = tasks.emr_step_state

    def counted(client: Any, cluster_id: str, step_id: str) -> str:
        nonlocal looks
        looks += 1
        return real_state(client, cluster_id, step_id)

    async def events() -> list[Any]:
        return [event async for event in trigger.run()]

    timer = threading.Timer(after, finish)
    timer.start()
    tasks.emr_step_state, saved = counted, tasks.emr_step_state
    try:
        return asyncio.run(events()), looks
    finally:
        tasks.emr_step_state = saved
        timer.cancel()


def test_the_trigger_fires_once_when_the_step_completes(step):
    cluster_id, step_id, moto_step = step
    trigger = EmrStepDoneTrigger(cluster_id, step_id, POLL, "aws_default")
    started = time.monotonic()
    events, looks = run_trigger(trigger, lambda: setattr(moto_step, "state", "COMPLETED"), after=0.5)
    assert [event.payload for event in events] == [{"state": "COMPLETED"}]
    assert time.monotonic() - started >= 0.5  # it waited for the step, not less
    assert looks >= 2  # looked while RUNNING, then saw COMPLETED: one DescribeStep per look


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_a_failed_step_fires_with_emr_s_reason(step, state):
    cluster_id, step_id, moto_step = step

    def fail() -> None:
        moto_step.last_state_change_reason = "Spark driver exited with code 3"
        moto_step.state = state

    events, _ = run_trigger(EmrStepDoneTrigger(cluster_id, step_id, POLL, "aws_default"), fail, after=0.2)
    (event,) = events
    assert event.payload["state"] == "FAILED"
    assert f"EMR step {step_id} (hmm-em t iteration 1) is {state}" in event.payload["reason"]
    assert "Spark driver exited with code 3" in event.payload["reason"]


def test_the_trigger_serializes_to_an_importable_class(step):
    cluster_id, step_id, _ = step
    import importlib

    path, kwargs = EmrStepDoneTrigger(cluster_id, step_id, 5.0, "aws_default").serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert kwargs == {"cluster_id": cluster_id, "step_id": step_id, "poll_seconds": 5.0, "aws_conn_id": "aws_default"}

"""The EMR API calls the tasks and the triggerer make: a client, add a step once, look at a step.

Kept apart from the tasks so that :mod:`hmm.orchestration.triggers` (run by Airflow's triggerer)
and :mod:`hmm.orchestration.tasks` use the same calls without importing each other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from hmm.orchestration import decisions as orchestration

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"


def client(aws_conn_id: str = AWS_CONN_ID) -> Any:
    """A boto3 EMR client of the Airflow connection ``aws_conn_id``."""
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    return EmrHook(aws_conn_id=aws_conn_id, emr_conn_id=None).conn


def submit_step(emr_client: Any, cluster_id: str, step: Mapping[str, Any]) -> str:
    """Add ``step`` to the cluster unless a step of that name is pending, running or completed there."""
    steps: list[dict[str, Any]] = []
    for page in emr_client.get_paginator("list_steps").paginate(ClusterId=cluster_id):
        steps.extend(page["Steps"])
    existing = orchestration.reusable_step(steps, step["Name"])
    if existing:
        log.info("reusing EMR step %s (%s) on cluster %s", existing, step["Name"], cluster_id)
        return existing
    step_id = str(emr_client.add_job_flow_steps(JobFlowId=cluster_id, Steps=[dict(step)])["StepIds"][0])
    log.info("added EMR step %s (%s) to cluster %s: %s", step_id, step["Name"], cluster_id, step["HadoopJarStep"])
    return step_id


def step_state(emr_client: Any, cluster_id: str, step_id: str) -> str:
    """The step's state; AirflowFailException with EMR's reason if it failed or was cancelled."""
    step = emr_client.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
    failure = orchestration.step_failure(step)
    if failure:
        raise AirflowFailException(failure)
    return str(step["Status"]["State"])

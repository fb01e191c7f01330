"""EMR mode under the real Airflow 3 components: an iteration's wait holds no worker slot while its step runs.

Slow (a few minutes): :class:`infra.local.airflow_services.AirflowServices` with ONE worker slot
(``parallelism=1``: the LocalExecutor runs one task process at a time), moto's S3 and EMR on
127.0.0.1 in this process, and :class:`infra.local.emr.LocalEmr` playing the cluster (each step's
job run here with the local engine, then set COMPLETED in moto). The test holds the step of
iteration 1 RUNNING until it has seen, through the REST API, ``wait_1`` deferred, and a whole
local-mode run of the DAG done meanwhile in the one slot, which it could not do if the wait held it.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from infra.local.airflow_services import AirflowServices
from infra.local.emr import LocalEmr, aws_connection, emr_backend
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import conf, records

pytestmark = pytest.mark.slow

DAG_ID = "hmm_training"


def wait_for_state(client, run_id, task_id, wanted, timeout=600.0):
    deadline = time.monotonic() + timeout
    states = {}
    while time.monotonic() < deadline:
        states = client.task_states(DAG_ID, run_id)
        if states.get(task_id) == wanted:
            return states
        assert states.get(task_id) not in ("failed", "upstream_failed"), states
        time.sleep(1.0)
    raise AssertionError(f"{task_id} of {run_id} never {wanted}: {states}")


def test_the_emr_wait_defers_and_holds_no_worker_slot_while_the_step_runs(tmp_path, moto_endpoint, monkeypatch):
    import boto3

    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=40)[0]
    bucket = f"hmm-em-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    s3_store = f"s3://{bucket}/store"
    # The components and their task processes inherit it (and the moto settings of the S3 fixture).
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(moto_endpoint))
    released = threading.Event()

    def hold(step):
        return step.name.endswith(" iteration 1") and not released.is_set()

    with (
        LocalEmr(hold=hold, log=tmp_path / "steps.log") as cluster,
        AirflowServices(tmp_path / "airflow", parallelism=1) as services,
    ):
        client = services.client()
        client.wait_for_dag(DAG_ID)
        client.unpause(DAG_ID)
        emr_conf = conf(data_uri, s3_store, tol=0.0, max_iter=1, mode="emr", engine="spark")
        response = client.trigger(DAG_ID, emr_conf, datetime(2026, 4, 6, tzinfo=UTC))
        assert response.status_code == 200, response.text
        emr_run = response.json()["dag_run_id"]
        states = wait_for_state(client, emr_run, "wait_1", "deferred")
        assert states["iteration_1"] == "success"
        (held,) = [s for s in cluster.played() if s.name.endswith(" iteration 1")]
        step = next(s for s in emr_backend().clusters[held.cluster_id].steps if s.id == held.step_id)
        assert step.state == "RUNNING"

        # The only worker slot is free: a whole local-mode run goes through it while the step runs.
        local_store = (tmp_path / "local-store").as_uri()
        response = client.trigger(
            DAG_ID, conf(data_uri, local_store, tol=0.0, max_iter=1), datetime(2026, 4, 13, tzinfo=UTC)
        )
        assert response.status_code == 200, response.text
        local_run = client.wait_for_run(DAG_ID, response.json()["dag_run_id"], timeout=900)
        assert local_run["state"] == "success", client.task_states(DAG_ID, local_run["dag_run_id"])
        assert client.task_states(DAG_ID, emr_run)["wait_1"] == "deferred"
        assert step.state == "RUNNING"
        looks_while_held = len(held.looks)

        released.set()
        finished = client.wait_for_run(DAG_ID, emr_run, timeout=900)
        states = client.task_states(DAG_ID, emr_run)
        assert finished["state"] == "success", states
        assert (states["wait_1"], states["finalize"], states["terminate_cluster"]) == ("success", "success", "success")

    # The triggerer looked at the held step (one DescribeStep every 5 s), besides wait_1's own first look.
    assert looks_while_held >= 2
    assert held.state == "COMPLETED"
    (training_id,) = {s.name.split()[1] for s in cluster.played()}
    assert max(records(s3_store, training_id)) == 1

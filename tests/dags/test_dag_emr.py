"""EMR mode under ``dag.test()`` against moto's EMR and S3 APIs on 127.0.0.1.

moto accepts clusters and steps but never runs a step (they stay RUNNING), so a
:class:`FakeCluster` plays EMR's part: each step is seen RUNNING once, then its job
runs in this process with the step's own arguments (``hmm.training.cli.main``, local engine)
and the step becomes COMPLETED, or it is set FAILED or CANCELLED with a reason.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

import hmm
from hmm.orchestration import decisions as orchestration
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store
from infra.local.emr import REGION, emr_backend, local_job
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import SPEC, aws_connection_to, conf, records, reference, run_job_here, task_states

DATE = datetime(2026, 2, 2, tzinfo=UTC)
TOL = 1000.0  # stops the training at iteration 2 on the test data
EMR = {"bundle_root": "s3://hmm-em-artifacts/bundle", "log_uri": "s3://hmm-em-logs/emr/", "core_instance_count": 3}
#: The bundle of the code under test: a new training runs the version of the hmm-em the DAG imports.
BUNDLE = f"s3://hmm-em-artifacts/bundle/{hmm.__version__}"


class FakeCluster:
    """Moves moto's steps along, one at a time in order, as EMR would with StepConcurrencyLevel 1."""

    def __init__(self, outcomes=None):
        self.outcomes = outcomes or {}  # step name -> (state, reason) to end it with instead of running it
        self.looks = Counter()

    def advance(self, cluster_id):
        steps = emr_backend().clusters[cluster_id].steps
        step = next((s for s in steps if s.state in ("PENDING", "RUNNING")), None)
        if step is None:
            return
        self.looks[step.id] += 1
        if self.looks[step.id] == 1:
            step.state = "RUNNING"
        elif step.name in self.outcomes:
            step.state, step.last_state_change_reason = self.outcomes[step.name]
        else:
            step.state = "COMPLETED" if run_job_here(local_job(step.args)) == 0 else "FAILED"


@pytest.fixture
def emr(moto_endpoint, monkeypatch):
    """aws_default pointing at moto; a fake cluster driven whenever a task looks at a step."""
    from hmm.orchestration import emr
    from hmm.orchestration import tasks as airflow_tasks

    aws_connection_to(moto_endpoint, REGION, monkeypatch)
    cluster = FakeCluster()
    real_state = emr.step_state

    def step_state(client, cluster_id, step_id):
        cluster.advance(cluster_id)
        return real_state(client, cluster_id, step_id)

    monkeypatch.setattr(emr, "step_state", step_state)
    monkeypatch.setattr(airflow_tasks, "STEP_POLL_SECONDS", 0.01)
    return cluster


@pytest.fixture
def sent_configs(monkeypatch):
    """Every run_job_flow request the create_cluster task sends."""
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    sent = []
    real = EmrHook.create_job_flow

    def create_job_flow(self, job_flow_overrides):
        sent.append(job_flow_overrides)
        return real(self, job_flow_overrides)

    monkeypatch.setattr(EmrHook, "create_job_flow", create_job_flow)
    return sent


@pytest.fixture
def data_uri(tmp_path):
    return write_categorical_parquet(str(tmp_path / "data"), n_sequences=60)[0]


def cluster_steps(cluster_id):
    return [(s.name, s.args, s.state) for s in emr_backend().clusters[cluster_id].steps]


def cluster_of(run):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(XComModel.value)
            .filter(XComModel.run_id == run.run_id, XComModel.task_id == "create_cluster")
            .filter(XComModel.key == "return_value")
            .scalar()
        )


def training_id(data_uri, **changes):
    return orchestration.derive_training_id(TrainingSpec.from_dict({**SPEC, "data": data_uri, **changes}), DATE)


def test_emr_mode_creates_the_cluster_adds_one_step_per_iteration_and_terminates(
    dag, emr, sent_configs, s3_root, data_uri, tmp_path
):
    run_conf = conf(data_uri, s3_root, tol=TOL, max_iter=10, mode="emr", engine="spark", emr=EMR)
    training = training_id(data_uri, tol=TOL, max_iter=10)
    run = dag.test(logical_date=DATE, run_conf=run_conf)
    assert run.state == "success"
    states = task_states(run)
    assert (states["create_cluster"], states["terminate_cluster"], states["watcher"]) == (
        "success",
        "success",
        "skipped",
    )

    # The request that reached EMR is the one hmm.orchestration.decisions renders for these params (whose
    # every field test_orchestration pins), with this run's settings in it.
    (sent,) = sent_configs
    assert sent == orchestration.job_flow_config(EMR, training, hmm.__version__)
    assert sent["Instances"]["InstanceGroups"][1]["InstanceCount"] == 3
    assert sent["LogUri"] == "s3://hmm-em-logs/emr/"
    assert sent["BootstrapActions"][0]["ScriptBootstrapAction"] == {"Path": f"{BUNDLE}/bootstrap.sh", "Args": [BUNDLE]}
    assert {"Key": "hmm-em:training-id", "Value": training} in sent["Tags"]
    cluster_id = cluster_of(run)
    assert emr_backend().clusters[cluster_id].state == "TERMINATED"

    steps = cluster_steps(cluster_id)
    assert [name for name, _, _ in steps] == [
        f"hmm-em {training} init",
        f"hmm-em {training} iteration 1",
        f"hmm-em {training} iteration 2",
        f"hmm-em {training} finalize",
    ]
    assert {state for _, _, state in steps} == {"COMPLETED"}
    # No --py-files: the steps import the wheel that the bundle's bootstrap action installed.
    submit = ["spark-submit", "--deploy-mode", "cluster"]
    assert steps[2][1] == [
        *submit,
        f"{BUNDLE}/jobs/em_iteration.py",
        "--store",
        s3_root,
        "--training-id",
        training,
        "--iteration",
        "2",
    ]
    init_args = steps[0][1]
    assert init_args[:8] == [*submit, f"{BUNDLE}/jobs/init_training.py", "--store", s3_root, "--training-id", training]
    assert init_args[8] == "--spec"
    assert TrainingSpec.from_json(init_args[9].encode()) == TrainingSpec.from_dict(
        {**SPEC, "data": data_uri, "tol": TOL, "max_iter": 10}
    )
    assert steps[3][1] == [*submit, f"{BUNDLE}/jobs/finalize.py", "--store", s3_root, "--training-id", training]

    expected = reference(f"file://{tmp_path}/reference", data_uri, tol=TOL, max_iter=10)
    final = records(s3_root, training)
    assert max(final) == 2 and final[2]["params_sha256"] == expected["params_sha256"]
    assert Training(open_store(s3_root), training).spec().code_version == hmm.__version__


@pytest.mark.parametrize(
    ("failing", "state", "reason", "failed_task"),
    [
        ("iteration 1", "FAILED", "Step failed: java.lang.OutOfMemoryError: Java heap space", "wait_1"),
        ("init", "CANCELLED", "Cancelled by the cluster's owner", "init"),
    ],
)
def test_a_failed_or_cancelled_step_fails_fast_with_its_reason_and_the_cluster_is_still_terminated(
    dag, emr, sent_configs, s3_root, data_uri, tmp_path, capfd, monkeypatch, failing, state, reason, failed_task
):
    run_conf = conf(data_uri, s3_root, tol=TOL, max_iter=10, mode="emr", engine="spark", emr=EMR)
    training = training_id(data_uri, tol=TOL, max_iter=10)
    emr.outcomes = {f"hmm-em {training} {failing}": (state, reason)}
    failed = dag.test(logical_date=DATE, run_conf=run_conf)
    assert failed.state == "failed"
    states = task_states(failed)
    assert (states[failed_task], states["finalize"]) == ("failed", "upstream_failed")
    assert (states["terminate_cluster"], states["watcher"]) == ("success", "failed")
    cluster_id = cluster_of(failed)
    assert emr_backend().clusters[cluster_id].state == "TERMINATED"
    step_id = next(s.id for s in emr_backend().clusters[cluster_id].steps if s.name.endswith(failing))
    assert f"EMR step {step_id} (hmm-em {training} {failing}) is {state}: {reason}" in capfd.readouterr().out
    if failing == "init":
        return

    # Resumed on the same date after a deploy of newer code: a new cluster gets steps for the
    # uncommitted iterations only, and runs the code that created the training.
    emr.outcomes = {}
    monkeypatch.setattr(orchestration, "__version__", "99.0")
    resumed = dag.test(logical_date=DATE, run_conf=run_conf)
    assert resumed.state == "success"
    resumed_steps = cluster_steps(cluster_of(resumed))
    names = [name for name, _, _ in resumed_steps]
    assert names == [f"hmm-em {training} iteration 1", f"hmm-em {training} iteration 2", f"hmm-em {training} finalize"]
    assert {args[3].rsplit("/jobs/", 1)[0] for _, args, _ in resumed_steps} == {BUNDLE}
    assert sent_configs[-1]["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"] == [BUNDLE]
    expected = reference(f"file://{tmp_path}/reference", data_uri, tol=TOL, max_iter=10)
    assert records(s3_root, training)[2]["params_sha256"] == expected["params_sha256"]


def test_a_re_run_task_reuses_its_step_unless_that_step_failed(moto_endpoint):
    import boto3

    from hmm.orchestration import emr

    client = boto3.client("emr")
    cluster_id = client.run_job_flow(
        Name="reuse",
        ReleaseLabel="emr-7.13.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    step = orchestration.emr_step(
        "iterate", orchestration.check_emr(EMR), "s3://store-bucket/x", "t-1", hmm.__version__, iteration=4
    )
    first = emr.submit_step(client, cluster_id, step)
    assert emr.submit_step(client, cluster_id, step) == first
    emr_backend().clusters[cluster_id].steps[0].state = "COMPLETED"
    assert emr.submit_step(client, cluster_id, step) == first
    emr_backend().clusters[cluster_id].steps[0].state = "FAILED"
    second = emr.submit_step(client, cluster_id, step)
    assert second != first
    assert [s.id for s in emr_backend().clusters[cluster_id].steps] == [first, second]

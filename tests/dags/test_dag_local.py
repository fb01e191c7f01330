"""The DAG end to end in local mode under ``dag.test()``, against a real store.

Steps run as real job processes (``engine=local``: python + pyarrow, ~5 s each here, and
one run with real ``spark-submit``), except in the long continuation test, which runs each
job's exact command line through ``hmm.training.cli.main`` in this process to stay fast.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from hmm.orchestration import decisions as orchestration
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import (
    SPEC,
    conf,
    fault_in_iteration,
    jobs_in_this_process,
    recorded_commands,
    records,
    reference,
    task_states,
)

DATE = datetime(2026, 1, 5, tzinfo=UTC)
#: On the test data the second EM update gains ~720: this tol stops the training there.
TOL = 1000.0


@pytest.fixture
def data_uri(tmp_path):
    return write_categorical_parquet(str(tmp_path / "data"), n_sequences=60)[0]


def training_id(data_uri, date=DATE, **changes):
    spec = TrainingSpec.from_dict({**SPEC, "data": data_uri, **changes})
    return orchestration.derive_training_id(spec, date)


def model_events(training):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        return [e.extra for e in events.filter(AssetModel.name == "hmm-em-model") if e.extra["training_id"] == training]


def test_a_failed_run_resumes_on_the_same_date_and_a_backfill_does_nothing(
    dag, tmp_path, data_uri, s3_root, monkeypatch, capfd
):
    store = s3_root
    run_conf = conf(data_uri, store, tol=TOL, max_iter=10)
    expected = reference(f"file://{tmp_path}/reference", data_uri, tol=TOL, max_iter=10)
    training = training_id(data_uri, tol=TOL, max_iter=10)

    # Iteration 1 commits, then its process is killed: the task fails, the run fails.
    with fault_in_iteration(monkeypatch, 1, "after-commit"):
        failed = dag.test(logical_date=DATE, run_conf=run_conf)
    assert failed.state == "failed"
    states = task_states(failed)
    assert (states["init"], states["iteration_1"], states["wait_1"]) == ("success", "failed", "upstream_failed")
    assert (states["finalize"], states["watcher"]) == ("upstream_failed", "failed")
    assert "job em_iteration was killed by signal 9 (SIGKILL)" in capfd.readouterr().out
    before = records(store, training)
    assert sorted(before) == [0, 1]

    # A new run of the same logical date derives the same training id and continues at 2.
    with recorded_commands(monkeypatch) as commands:
        resumed = dag.test(logical_date=DATE, run_conf=run_conf)
    assert resumed.state == "success"
    assert [c[c.index("--iteration") + 1] for c in commands if "--iteration" in c] == ["2"]
    after = records(store, training)
    assert {k: after[k] for k in before} == before  # nothing committed was recomputed or rewritten
    assert max(after) == expected["iteration"] == 2 and after[2]["converged"]
    assert after[2]["params_sha256"] == expected["params_sha256"]  # bit for bit the in-process training
    log = capfd.readouterr().out
    assert "iteration    2 [committed] log-likelihood" in log and "delta +" in log
    assert f"COMMIT 2: {json.dumps(after[2], sort_keys=True)}" in log
    assert f"log-likelihood gain {after[2]['improvement']:.6g} below tol={TOL}" in log
    published = Training(open_store(store), training).published()
    assert published["iteration"] == 2
    assert model_events(training) == [{"training_id": training, **published}]

    # A backfill of the finished date: every slot passes through, nothing runs, nothing is written.
    objects = {key: open_store(store).read(key) for key in open_store(store).list("")}
    with recorded_commands(monkeypatch) as commands:
        again = dag.test(logical_date=DATE, run_conf=run_conf)
    assert again.state == "success"
    assert commands == []
    assert task_states(again)["finalize"] == "skipped"
    assert {key: open_store(store).read(key) for key in open_store(store).list("")} == objects
    assert len(model_events(training)) == 1


def test_a_run_out_of_slots_hands_over_to_a_continuation_run(dag, tmp_path, data_uri, monkeypatch):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    slots = len([t for t in dag.task_ids if t.startswith("iteration_")])
    defaults = dag.params.dump()
    store = f"file://{tmp_path}/store"
    run_conf = conf(data_uri, store, tol=0.0, max_iter=slots + 1)
    expected = reference(f"file://{tmp_path}/reference", data_uri, tol=0.0, max_iter=slots + 1)
    training = training_id(data_uri, tol=0.0, max_iter=slots + 1)

    with jobs_in_this_process(monkeypatch) as commands:
        first = dag.test(logical_date=DATE, run_conf=run_conf)
    assert first.state == "success"
    assert [c[c.index("--iteration") + 1] for c in commands if "--iteration" in c] == [
        str(k) for k in range(1, slots + 1)
    ]
    states = task_states(first)
    assert (states[f"wait_{slots}"], states["continue_training"], states["finalize"]) == (
        "success",
        "success",
        "skipped",
    )
    assert sorted(records(store, training)) == list(range(slots + 1))
    with create_session() as session:
        continuation = session.query(DagRun).filter(DagRun.run_id == f"hmm_em_continue__{training}__{slots}").one()
        assert continuation.state == "queued"  # dag.test() does not start it; a scheduler would
        continuation_conf = dict(continuation.conf)
    assert continuation_conf == {**defaults, **run_conf, "training_id": training}  # self-contained

    # The continuation (another date: the training id comes from the conf) finishes the training.
    earlier = records(store, training)
    with jobs_in_this_process(monkeypatch) as commands:
        second = dag.test(logical_date=datetime(2026, 1, 12, tzinfo=UTC), run_conf=continuation_conf)
    assert second.state == "success"
    assert [c[c.index("--iteration") + 1] for c in commands if "--iteration" in c] == [str(slots + 1)]
    final = records(store, training)
    assert {k: final[k] for k in earlier} == earlier
    assert max(final) == slots + 1 and final[slots + 1]["params_sha256"] == expected["params_sha256"]
    assert Training(open_store(store), training).published() is not None


def test_the_runs_spark_connect_server_runs_the_iteration_of_a_resumed_training(
    dag, tmp_path, spark_servers, monkeypatch
):
    """Real local Spark (engine=spark, ~30 s here): the run's start_spark task starts a Spark Connect server,
    the step is a python process on it (no spark-submit), stop_spark stops it. Iterations 0 and 1 are
    committed beforehand in this process, the run resumes the training by its id and runs iteration 2."""
    from hmm.orchestration import connect

    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=20)[0]
    store = f"file://{tmp_path}/store"
    spec = TrainingSpec.from_dict({**SPEC, "data": data_uri, "tol": 0.0, "max_iter": 2})
    steps.init_training(store, "on-spark", spec, engine="local")
    steps.em_iteration(store, "on-spark", 1, engine="local")
    run_conf = conf(data_uri, store, tol=0.0, max_iter=2, engine="spark", training_id="on-spark")
    with recorded_commands(monkeypatch) as commands:
        run = dag.test(logical_date=DATE, run_conf=run_conf)
    assert run.state == "success"
    assert task_states(run)["start_spark"] == task_states(run)["stop_spark"] == "success"
    (server,) = spark_servers
    (iterate,) = [c for c in commands if "--iteration" in c]
    assert iterate[0] == sys.executable and iterate[1].endswith("/jobs/em_iteration.py")
    assert iterate[iterate.index("--remote") + 1] == server["url"]
    assert server["url"].startswith(f"sc://127.0.0.1:{server['port']}/;session_id=")
    assert not connect.alive(server)  # stopped by the teardown
    training = Training(open_store(store), "on-spark")
    assert [r["step"]["engine"] for r in training.records()] == ["local", "local", "spark"]
    assert training.converged() and training.latest() == 2
    assert training.published() is not None
    reference(f"file://{tmp_path}/reference", data_uri, tol=0.0, max_iter=2)
    in_process = Training(open_store(f"file://{tmp_path}/reference"), "reference").load_params(2)
    on_spark = training.load_params(2)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_allclose(getattr(on_spark, name), getattr(in_process, name), rtol=1e-9)


def test_a_failed_run_still_stops_its_spark_connect_server(dag, tmp_path, spark_servers, monkeypatch, capfd):
    """The teardown stops the run's server whatever happened: here the first iteration's step is killed."""
    from hmm.orchestration import connect

    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=20)[0]
    store = f"file://{tmp_path}/store"
    run_conf = conf(data_uri, store, tol=0.0, max_iter=2, engine="spark")
    with fault_in_iteration(monkeypatch, 1, "after-commit"):
        failed = dag.test(logical_date=DATE, run_conf=run_conf)
    assert failed.state == "failed"
    states = task_states(failed)
    assert (states["start_spark"], states["init"], states["iteration_1"]) == ("success", "success", "failed")
    assert (states["stop_spark"], states["watcher"]) == ("success", "failed")
    assert "job em_iteration was killed by signal 9 (SIGKILL)" in capfd.readouterr().out
    (server,) = spark_servers
    assert not connect.alive(server) and not connect.connections(server["port"])

"""infra/local/dag_runner.py: the DAG run on this machine as `make demo` runs it, continuation runs included.

The runner shares the tests' Airflow home (one per process: Airflow reads its configuration
once). Each job's exact command line runs in this process (``jobs_in_this_process``) to stay fast.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hmm.training.commits import Training
from hmm.training.store import open_store
from infra.local.dag_runner import LocalAirflow
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import conf, jobs_in_this_process

DATE = datetime(2026, 2, 2, tzinfo=UTC)


@pytest.fixture
def runner(airflow_home):
    return LocalAirflow(airflow_home).start()


def test_a_training_longer_than_the_slots_runs_its_continuation_and_resumes_without_work(
    runner, tmp_path, monkeypatch, capsys
):
    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=60)[0]
    store = f"file://{tmp_path}/store"
    slots = sum(1 for task_id in runner.dag.task_ids if task_id.startswith("iteration_"))
    run_conf = conf(data_uri, store, tol=0.0, max_iter=slots + 2, training_id="runner")

    with jobs_in_this_process(monkeypatch) as commands:
        result = runner.train(run_conf, DATE)
    assert [state for _, state, _ in result.runs] == ["success", "success"]
    assert result.runs[1][0] != result.runs[0][0]
    iterations = [c[c.index("--iteration") + 1] for c in commands if "--iteration" in c]
    assert iterations == [str(k) for k in range(1, slots + 3)]
    assert result.published is not None and result.published["iteration"] == slots + 2
    training = Training(open_store(store), "runner")
    assert training.committed() == list(range(slots + 3))
    out = capsys.readouterr().out
    assert "iteration    0 [committed] initial parameters (60 sequences" in out
    assert f"iteration    {slots + 2} [committed] log-likelihood" in out and "converged" in out
    assert "all iteration slots used: running the continuation run it queued" in out

    # Again: the same run resumes the published training; no step runs, nothing is written.
    objects = {key: training.store.read(key) for key in training.store.list("")}
    with jobs_in_this_process(monkeypatch) as commands:
        again = runner.train(run_conf, DATE)
    assert commands == [] and [state for _, state, _ in again.runs] == ["success"]
    assert {key: training.store.read(key) for key in training.store.list("")} == objects
    assert f"training runner: iterations 0-{slots + 2} are committed already" in capsys.readouterr().out


def test_a_failed_run_raises_with_the_run_and_the_training_named(runner, tmp_path, monkeypatch):
    from infra.local.dag_runner import DagRunError

    store = f"file://{tmp_path}/store"
    missing = (tmp_path / "no-data").as_uri()
    with jobs_in_this_process(monkeypatch), pytest.raises(DagRunError, match="of training failing is failed"):
        runner.train(conf(missing, store, training_id="failing"), DATE)


def test_one_process_holds_one_airflow_home(airflow_home, tmp_path):
    with pytest.raises(RuntimeError, match="in a process of its own"):
        LocalAirflow(tmp_path / "another-home").start()

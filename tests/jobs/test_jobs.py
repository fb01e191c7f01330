"""The jobs as the cluster runs them: separate processes, killed with SIGKILL, resumed."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store

REPO = Path(__file__).resolve().parents[2]


def job(name, *args, fault=None, engine="local", timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
    env.pop("HMM_EM_FAULT", None)
    if fault:
        env["HMM_EM_FAULT"] = fault
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / f"{name}.py"), *args, *(["--engine", engine] if engine else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spec_json(data_uri, max_iter=3):
    return json.dumps(
        {
            "model": "categorical",
            "n_components": 3,
            "data": data_uri,
            "id_col": "id",
            "tol": 0.0,
            "max_iter": max_iter,
            "seed": 3,
        }
    )


def final_parameters(root, training_id):
    training = Training(open_store(root), training_id)
    latest = training.latest()
    return latest, training.record(latest)["params_sha256"], training.load_params(latest)


@pytest.fixture
def uninterrupted(file_root, categorical_data):
    data_uri, _, _ = categorical_data
    spec = TrainingSpec.from_dict(json.loads(spec_json(data_uri)))
    steps.train(file_root, "baseline", spec, engine="local", progress=lambda line: None)
    return data_uri, final_parameters(file_root, "baseline")


@pytest.mark.parametrize(
    ("root", "fault", "params_written", "committed"),
    [
        ("file_root", "before-params", False, False),
        ("file_root", "before-commit", True, False),
        ("file_root", "after-commit", True, True),
        ("s3_root", "before-commit", True, False),
    ],
)
def test_killed_iteration_resumes_to_bit_identical_parameters(
    request, uninterrupted, root, fault, params_written, committed
):
    store_root = request.getfixturevalue(root)
    data_uri, (last, digest, baseline) = uninterrupted
    common = ["--store", store_root, "--training-id", "crashy"]
    assert job("init_training", *common, "--spec", spec_json(data_uri)).returncode == 0
    assert job("em_iteration", *common, "--iteration", "1").returncode == 0

    killed = job("em_iteration", *common, "--iteration", "2", fault=fault)
    assert killed.returncode == -signal.SIGKILL
    keys = open_store(store_root).list("trainings/crashy/iterations/2/")
    assert any("/params-" in k for k in keys) is params_written
    assert ("trainings/crashy/iterations/2/COMMIT" in keys) is committed

    rerun = job("em_iteration", *common, "--iteration", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert ("[exists]" if committed else "[committed]") in rerun.stdout
    for k in range(3, last + 1):
        assert job("em_iteration", *common, "--iteration", str(k)).returncode == 0
    latest, resumed_digest, resumed = final_parameters(store_root, "crashy")
    assert latest == last
    assert resumed_digest == digest
    for name in ("startprob_", "transmat_", "emissionprob_"):
        assert np.array_equal(getattr(resumed, name), getattr(baseline, name))
    finalized = job("finalize", "--store", store_root, "--training-id", "crashy", engine=None)
    assert finalized.returncode == 0 and "report" in finalized.stdout


def test_job_errors_are_one_line_and_non_zero(file_root, categorical_data):
    data_uri, _, _ = categorical_data
    missing = job("em_iteration", "--store", file_root, "--training-id", "ghost", "--iteration", "1")
    assert missing.returncode == 3
    assert (
        missing.stderr.strip() == f"hmm-em iterate: error: training 'ghost' does not exist in {file_root}: "
        "run init_training first"
    )
    hostile = job("init_training", "--store", file_root, "--training-id", "../../etc", "--spec", spec_json(data_uri))
    assert hostile.returncode == 2 and "training_id '../../etc' is invalid" in hostile.stderr
    scheme = job("finalize", "--store", "http://example.com/x", "--training-id", "ok", engine=None)
    assert scheme.returncode == 2 and "only file:// and s3:// are allowed" in scheme.stderr
    assert open_store(file_root).list("") == []


def spark_submit(name, *args):
    """A job as an EMR step runs it: spark-submit of jobs/<name>.py, with this environment's Spark."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    command = [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[2]"]
    command += ["--conf", "spark.ui.enabled=false", str(REPO / "jobs" / f"{name}.py"), *args]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


@pytest.mark.spark
def test_spark_submit_runs_each_job_to_the_parameters_of_a_local_training(file_root, uninterrupted):
    """init_training, em_iteration and finalize under spark-submit, as the EMR steps run them (on
    each Spark version `make test` covers); the Spark engine commits what the local engine does."""
    data_uri, (last, digest, baseline) = uninterrupted
    common = ["--store", file_root, "--training-id", "submitted"]
    assert "init: committed: iteration 0 of submitted" in spark_submit(
        "init_training", *common, "--spec", spec_json(data_uri)
    )
    assert "iteration    1 [committed]" in spark_submit("em_iteration", *common, "--iteration", "1")
    for k in range(2, last + 1):
        steps.em_iteration(file_root, "submitted", k, engine="local")
    assert "finalize: published: model" in spark_submit("finalize", *common)

    training = Training(open_store(file_root), "submitted")
    assert [training.record(k)["step"]["engine"] for k in (0, 1, 2)] == ["spark", "spark", "local"]
    latest, submitted_digest, submitted = final_parameters(file_root, "submitted")
    assert (latest, submitted_digest) == (last, digest)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        assert np.array_equal(getattr(submitted, name), getattr(baseline, name))

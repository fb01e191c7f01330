"""Shared fixtures: real services on loopback, started and stopped by the tests."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from infra.local.s3 import local_s3

# The executors' split cache (hmm.distributed.split_cache) of this test run: a folder of its own,
# set before any Spark starts so that its Python workers inherit it, removed at the end.
if "HMM_EM_SPLIT_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["HMM_EM_SPLIT_CACHE"] = tempfile.mkdtemp(prefix="hmm-em-test-split-cache-")
    atexit.register(shutil.rmtree, os.environ["HMM_EM_SPLIT_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 HTTP API (moto server) on 127.0.0.1, for the whole test session (``make local-stack``'s)."""
    with local_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_root(moto_endpoint):
    """A fresh bucket on the moto server; returns an s3:// root URI inside it."""
    import boto3

    bucket = f"hmm-em-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/root"


@pytest.fixture
def file_root(tmp_path):
    return f"file://{tmp_path}/store"


@pytest.fixture(params=["file", "s3"])
def store_root(request):
    """Each store contract test runs against a directory and against S3."""
    return request.getfixturevalue(f"{request.param}_root")


@pytest.fixture(scope="session")
def connect_spark(airflow_home, moto_endpoint, tmp_path_factory):
    """A Spark Connect session on a local[2] Spark Connect server (Spark 4), as a local DAG run's steps have.

    The server runs under :mod:`hmm.orchestration.connect`, started after the local S3 so its Python
    workers inherit the S3 settings; stopped at the end of the test session.
    """
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from hmm.orchestration import connect
    from hmm.orchestration.tasks import spark_submit_path

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parents[1]), env.get("PYTHONPATH")) if p)
    conf = {"spark.ui.enabled": "false", "spark.sql.execution.arrow.maxRecordsPerBatch": "64"}
    argv = connect.server_command(spark_submit_path(), "local[2]", conf, ["-XX:TieredStopAtLevel=1"])
    server = connect.start(argv, env, tmp_path_factory.mktemp("connect"))
    session = ConnectSession.builder.remote(server["url"]).getOrCreate()
    try:
        yield session
    finally:
        session.stop()  # while the server is up: a client of a gone server retries its exit calls for minutes
        connect.stop(server["pid"])


@pytest.fixture(scope="session")
def spark(moto_endpoint):
    """One real local[2] Spark session for the whole run (start-up costs ~15 s).

    Started after the local S3 so its Python workers inherit the S3 settings, as
    EMR executors have the instance role.
    """

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("hmm-em-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def write_categorical_parquet(directory, n_sequences=400, n_features=6, seed=0, files=2):
    """Sequences from a known 3-state model as Parquet files (id, sequence); returns (uri, X, lengths)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    transmat = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    emission = rng.dirichlet(np.full(n_features, 0.5), size=3)
    lengths = rng.integers(1, 40, size=n_sequences)
    sequences = []
    for length in lengths:
        state = rng.integers(3)
        symbols = []
        for _ in range(length):
            symbols.append(int(rng.choice(n_features, p=emission[state])))
            state = rng.choice(3, p=transmat[state])
        sequences.append(symbols)
    sequences[0] = list(range(n_features))  # every symbol occurs
    lengths[0] = n_features
    os.makedirs(directory, exist_ok=True)
    per_file = -(-n_sequences // files)
    for f in range(files):
        rows = range(f * per_file, min((f + 1) * per_file, n_sequences))
        table = pa.table(
            {
                "id": pa.array(list(rows), pa.int64()),
                "sequence": pa.array([sequences[i] for i in rows], pa.list_(pa.int32())),
            }
        )
        pq.write_table(table, os.path.join(directory, f"part-{f:05d}.parquet"))
    X = np.concatenate([np.asarray(s) for s in sequences])[:, None]
    return f"file://{directory}", X, np.asarray(lengths)


@pytest.fixture
def categorical_data(tmp_path):
    return write_categorical_parquet(str(tmp_path / "data"))


# ------------------------------------------------------------------ Airflow
# A real Airflow 3 for the DAG tests (tests/dags, tests/infra): SQLite metadata DB in a temporary
# AIRFLOW_HOME, migrated once per session. Airflow reads its configuration when first imported,
# so nothing here imports it at module level: the fixture sets the environment, migrates, then
# the tests import.

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # Steps started by tasks find the repository and run Spark workers on this python.
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    saved = {key: os.environ.get(key) for key in settings}
    root_logging = (logging.root.level, list(logging.root.handlers))
    os.environ.update(settings)
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, check=False, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    yield home
    # Airflow configured logging for its tasks; later tests (and py4j at exit) get the usual root logger back.
    logging.root.setLevel(root_logging[0])
    logging.root.handlers[:] = root_logging[1]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def loaded_dag(airflow_home):
    """The hmm_training DAG as the DAG processor loads it, with the waits' looks at EMR steps shortened for tests."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    loaded = bag.dags["hmm_training"]
    for task in loaded.tasks:
        if task.task_id.startswith("wait_"):
            task.poll_seconds = 0.1
    defaults = {key: copy.deepcopy(loaded.params.get_param(key).value) for key in loaded.params}
    return loaded, defaults


@pytest.fixture
def dag(loaded_dag):
    """The DAG with its params' defaults restored.

    ``dag.test()`` runs tasks in this process, and merging a run's conf into the params
    sets the values of the DAG's own Param objects; a worker process parses the DAG afresh.
    """
    loaded, defaults = loaded_dag
    for owner in [loaded, *loaded.tasks]:
        for key in owner.params:
            if key in defaults:
                owner.params.get_param(key).value = copy.deepcopy(defaults[key])
    return loaded

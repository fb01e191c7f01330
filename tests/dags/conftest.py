"""A real Airflow 3 for the DAG tests: SQLite metadata DB in a temporary AIRFLOW_HOME, migrated once.

Airflow reads its configuration when first imported, so nothing here imports it at module
level: the session fixture sets the environment, migrates the database, then imports.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


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
    """The hmm_training DAG as the DAG processor loads it, with the sensors' waits shortened for tests."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    loaded = bag.dags["hmm_training"]
    for task in loaded.tasks:
        if task.task_id.startswith("wait_"):
            task.poke_interval = 0.1
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

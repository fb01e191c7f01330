"""Parsing the DAG file loads no model code and none of hmm-em's heavy libraries.

Every Airflow task process parses the DAG file before it runs its task, so what the
file imports is paid by every task; the tasks import the models, Spark and pyarrow
inside their callables. Measured in a fresh interpreter, against a baseline of the
Airflow modules the DAG file itself imports, and hmm.orchestration.resources, which adds the EMR
operators to both DAGs (the amazon provider brings boto3, for one).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import DAGS
from tests.core.test_imports import HEAVY, MODEL_MODULES

#: Adds the EMR operators to both DAGs (read as text here: importing it would import Airflow before its home is set).
RESOURCES = DAGS.parent / "hmm" / "orchestration" / "resources.py"
DAG_FILES = {"hmm_training": DAGS / "hmm_training.py", "hmm_decode": DAGS / "hmm_decode.py"}
#: Airflow itself loads more of its modules while it parses; everything else in HEAVY must stay out.
NOT_AT_PARSE_TIME = tuple(name for name in HEAVY if name != "airflow")

PARSE = """
import ast, importlib, json, sys
from pathlib import Path

dag_file = Path(sys.argv[1])
airflow_modules = set()
for node in ast.walk(ast.parse(dag_file.read_text() + chr(10) + Path(sys.argv[2]).read_text())):
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
    names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
    airflow_modules.update(name for name in names if name.split(".")[0] == "airflow")
for name in sorted(airflow_modules):
    importlib.import_module(name)
from airflow.dag_processing.dagbag import DagBag

baseline = set(sys.modules)
bag = DagBag(dag_folder=str(dag_file))
print(json.dumps({
    "airflow_modules": sorted(airflow_modules),
    "errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "added": sorted(set(sys.modules) - baseline),
}))
"""


@pytest.mark.parametrize("dag_id", sorted(DAG_FILES))
def test_parsing_the_dag_file_adds_no_heavy_library_and_no_model(airflow_home, dag_id):
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAG_FILES[dag_id]), str(RESOURCES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["dags"] == [dag_id]
    assert "airflow.sdk" in parsed["airflow_modules"]  # the baseline really holds the DAG's Airflow imports
    added = set(parsed["added"])
    assert any(name.startswith("hmm.") for name in added)  # the DAG's hmm imports happened after the baseline
    assert sorted({name.split(".")[0] for name in added} & set(NOT_AT_PARSE_TIME)) == []
    assert sorted(name for name in added if name in MODEL_MODULES) == []

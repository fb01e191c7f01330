"""`make local-stack` end to end: a moto S3 on 127.0.0.1, the demo data and the store on s3://, the DAG.

It runs as the Makefile runs it, in a process of its own (Airflow reads its configuration once per
process), on the first 200 paragraphs and 3 iterations: about a minute here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hmm
from infra.local import stack

REPO = Path(__file__).resolve().parents[2]


def test_local_stack_trains_against_a_local_s3_and_stops_it(tmp_path):
    output = tmp_path / "stack"
    small = ["--max-sequences", "200", "--max-iter", "3", "--tol", "0"]
    finished = subprocess.run(
        [sys.executable, "-m", "infra.local.stack", "--output", str(output), *small],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    out = finished.stdout
    assert "local S3: moto server at http://127.0.0.1:" in out
    assert f"data:     s3://{stack.BUCKET}/data/letters/" in out
    model_uri = f"s3://{stack.BUCKET}/store/trainings/{stack.TRAINING_ID}/model/3/model.npz"
    assert f"model:  {model_uri}" in out
    # Progress from the store as each COMMIT landed, then the stop.
    assert "iteration    0 [committed] initial parameters (200 sequences" in out
    assert "iteration    3 [committed] log-likelihood" in out and "converged" in out
    assert out.rstrip().splitlines()[-1].startswith("local S3 stopped; 1 DAG run(s)")
    # Airflow's own output went to the log, not to the terminal.
    assert "[DAG TEST]" not in out and "[DAG TEST]" in (output / "airflow.log").read_text()

    published = json.loads((output / "model" / "PUBLISHED").read_text())
    assert published["iteration"] == 3 and published["model"] == model_uri
    model = hmm.load(str(output / "model" / "model.npz"))
    assert model.emissionprob_.shape == (2, 27)
    assert (output / "model" / "report.md").exists()


def test_the_stack_conf_is_valid_dag_params():
    from hmm.orchestration import decisions as orchestration

    settings = orchestration.check_params(stack.training_conf("s3://b-1/data/", "s3://b-1/store", 1.0, 5))
    assert (settings.mode, settings.engine, settings.store) == ("local", "spark", "s3://b-1/store")
    assert settings.spec.data == "s3://b-1/data/" and settings.spec.max_iter == 5

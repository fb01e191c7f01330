"""Under the real Airflow 3 components: a training that publishes triggers hmm_decode through the
``hmm-em-model`` asset, and the decode run writes the output of the published model.

Slow (a few minutes): :class:`infra.local.airflow_services.AirflowServices` with the scheduler's
job schedule on (asset-triggered runs are created by it), driven only through the REST API v2.
hmm_training's own weekly run, which the unpause starts with the default params, fails in
validate (its default data does not exist here) and publishes nothing.
"""

from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
import pytest

from hmm.orchestration import decisions as orchestration
from hmm.training.commits import Training
from hmm.training.decode import SUCCESS_KEY
from hmm.training.store import open_store
from infra.local.airflow_services import AirflowServices
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import conf

pytestmark = pytest.mark.slow


def test_a_published_model_triggers_hmm_decode_which_decodes_with_it(tmp_path, monkeypatch):
    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=40, files=2)[0]
    store = (tmp_path / "store").as_uri()
    monkeypatch.setenv("HMM_EM_DECODE_ENGINE", "local")  # the asset-triggered run's engine: no JVM per step
    monkeypatch.setenv("HMM_EM_DATA_URI", (tmp_path / "no-data").as_uri())  # hmm_training's scheduled run fails
    with AirflowServices(tmp_path / "airflow", scheduled_runs=True) as services:
        client = services.client()
        for dag_id in ("hmm_training", "hmm_decode"):
            client.wait_for_dag(dag_id)
            client.unpause(dag_id)
        training_conf = conf(data_uri, store, tol=0.0, max_iter=1)
        response = client.trigger("hmm_training", training_conf, None)
        assert response.status_code == 200, response.text
        trained = client.wait_for_run("hmm_training", response.json()["dag_run_id"], timeout=1200)
        assert trained["state"] == "success", client.task_states("hmm_training", trained["dag_run_id"])
        events = client.asset_events("hmm-em-model")
        events = [e for e in events if (e["extra"] or {}).get("model", "").startswith(store)]
        assert len(events) == 1
        training_id = events[0]["extra"]["training_id"]

        deadline = time.monotonic() + 600
        while not (runs := client.runs("hmm_decode")) and time.monotonic() < deadline:
            time.sleep(2)
        assert len(runs) == 1 and runs[0]["run_type"] == "asset_triggered", runs
        decoded = client.wait_for_run("hmm_decode", runs[0]["dag_run_id"], timeout=900)
        states = client.task_states("hmm_decode", decoded["dag_run_id"])
        assert decoded["state"] == "success", states
        assert (states["create_cluster"], states["decode"], states["watcher"]) == ("skipped", "success", "skipped")

    published = Training(open_store(store), training_id).published()
    output = orchestration.default_decode_output(
        store, training_id, published["iteration"], data_uri, ["viterbi", "log_likelihood"], "sequence", "id"
    )
    manifest = json.loads(open_store(output).read(SUCCESS_KEY))
    assert manifest["model"] == {
        "training_id": training_id,
        "iteration": published["iteration"],
        "source": published["model"],
    }
    assert manifest["n_rows"] == 40
    ids = pq.read_table(output.removeprefix("file://")).column("id").to_pylist()
    assert sorted(ids) == list(range(40))

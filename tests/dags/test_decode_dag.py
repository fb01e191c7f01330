"""The hmm_decode DAG under ``dag.test()``: local mode with real job processes, EMR mode against moto
(the recorded-calls style of test_dag_emr), bad confs refused before anything is written."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.orchestration import decisions as orchestration
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store
from tests.conftest import DAGS, write_categorical_parquet
from tests.dags.helpers import SPEC, recorded_commands, task_states
from tests.dags.test_dag_emr import EMR, cluster_of, cluster_steps, emr, emr_backend, sent_configs  # noqa: F401

BUNDLE = f"s3://hmm-em-artifacts/bundle/{hmm.__version__}"


@pytest.fixture(scope="module")
def loaded_decode_dag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "hmm_decode.py"))
    assert bag.import_errors == {}
    loaded = bag.dags["hmm_decode"]
    return loaded, {key: copy.deepcopy(loaded.params.get_param(key).value) for key in loaded.params}


@pytest.fixture
def decode_dag(loaded_decode_dag):
    """The DAG with its params' defaults restored (dag.test() merges a run's conf into them)."""
    loaded, defaults = loaded_decode_dag
    for owner in [loaded, *loaded.tasks]:
        for key in owner.params:
            if key in defaults:
                owner.params.get_param(key).value = copy.deepcopy(defaults[key])
    return loaded


def publish(store, tmp_path, n_sequences=60):
    data_uri, X, lengths = write_categorical_parquet(str(tmp_path / "data"), n_sequences=n_sequences, files=2)
    spec = TrainingSpec.from_dict({**SPEC, "data": data_uri, "max_iter": 2})
    steps.train(store, "trained", spec, engine="local", progress=lambda line: None)
    training = Training(open_store(store), "trained")
    return data_uri, X, lengths, training.load_params(training.published()["iteration"])


def output_of(run):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = (
            session.query(XComModel.value)
            .filter(XComModel.run_id == run.run_id, XComModel.task_id == "decode", XComModel.key == "return_value")
            .scalar()
        )
    return value if isinstance(value, dict) else json.loads(value)


def test_local_mode_decodes_into_the_default_output_and_a_rerun_does_nothing(decode_dag, tmp_path, caplog):
    store = f"file://{tmp_path}/store"
    data_uri, X, lengths, model = publish(store, tmp_path)
    run_conf = {"store": store, "training_id": "trained", "engine": "local", "outputs": ["viterbi", "filtered"]}
    run = decode_dag.test(run_conf=run_conf)
    assert run.state == "success"
    states = task_states(run)
    assert (states["needs_cluster"], states["create_cluster"], states["decode"]) == ("success", "skipped", "success")
    assert (states["terminate_cluster"], states["watcher"]) == ("skipped", "skipped")
    assert (states["start_spark"], states["stop_spark"]) == ("skipped", "skipped")  # engine local: no Spark
    summary = output_of(run)
    iteration = Training(open_store(store), "trained").published()["iteration"]
    expected_output = orchestration.default_decode_output(
        store, "trained", iteration, data_uri, ["viterbi", "filtered"], "sequence", "id"
    )
    assert summary["output"] == expected_output and summary["n_rows"] == 60
    table = pq.read_table(expected_output.removeprefix("file://")).sort_by("id")
    assert table.column("id").to_pylist() == list(range(60))
    np.testing.assert_array_equal(np.concatenate(table.column("viterbi").to_pylist()), model.predict(X, lengths))
    filtered = np.concatenate([np.asarray(f) for f in table.column("filtered").to_pylist()])
    assert np.array_equal(filtered, model.predict_filtered_proba(X, lengths))

    folder = Path(expected_output.removeprefix("file://"))
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = decode_dag.test(run_conf=run_conf)
    assert again.state == "success"
    assert "is finished already: nothing to decode" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written


def test_local_mode_with_spark_decodes_on_the_runs_spark_connect_server(
    decode_dag, tmp_path, spark_servers, monkeypatch
):
    """Real local Spark (~30 s here): start_spark starts the run's Spark Connect server, the decode step is a
    python process on it (``--remote``, no spark-submit), stop_spark stops it; the output is the library's."""
    from hmm.orchestration import connect

    store = f"file://{tmp_path}/store"
    _, X, lengths, model = publish(store, tmp_path, n_sequences=20)
    run_conf = {"store": store, "training_id": "trained", "engine": "spark", "outputs": ["viterbi"]}
    with recorded_commands(monkeypatch) as commands:
        run = decode_dag.test(run_conf=run_conf)
    assert run.state == "success"
    states = task_states(run)
    assert (states["start_spark"], states["decode"], states["stop_spark"]) == ("success", "success", "success")
    (server,) = spark_servers
    (command,) = commands
    assert command[0] == sys.executable and command[1].endswith("/jobs/decode.py")
    assert command[command.index("--remote") + 1] == server["url"]
    assert not connect.alive(server)  # stopped by the teardown
    table = pq.read_table(output_of(run)["output"].removeprefix("file://")).sort_by("id")
    np.testing.assert_array_equal(np.concatenate(table.column("viterbi").to_pylist()), model.predict(X, lengths))

    # The output is finished: the next run starts no Spark at all.
    again = decode_dag.test(run_conf=run_conf)
    assert again.state == "success"
    assert task_states(again)["start_spark"] == "skipped" and len(spark_servers) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"training_id": "nope"}, "training 'nope' does not exist"),
        ({"id_col": "key"}, "has no id column 'key'"),
        ({"outputs": ["states"]}, "param 'outputs'"),
        ({"training_id": None}, "no model to decode"),
    ],
)
def test_a_bad_conf_fails_validate_and_writes_nothing(decode_dag, tmp_path, capfd, caplog, changes, message):
    store = f"file://{tmp_path}/store"
    publish(store, tmp_path, n_sequences=20)
    before = open_store(store).list("")
    run_conf = {"store": store, "training_id": "trained", "engine": "local", **changes}
    try:
        run = decode_dag.test(run_conf=run_conf)
    except Exception as error:  # the trigger form's JSON schema refuses some confs before the run
        assert "outputs" in str(error)
        return
    assert run.state == "failed"
    states = task_states(run)
    assert (states["validate"], states["decode"], states["watcher"]) == ("failed", "upstream_failed", "failed")
    assert message in caplog.text + capfd.readouterr().out
    assert open_store(store).list("") == before  # no decodes/ written


def test_emr_mode_runs_one_decode_step_on_its_cluster_and_terminates_it(
    decode_dag,
    emr,  # noqa: F811 (the fixture of test_dag_emr)
    sent_configs,  # noqa: F811
    s3_root,
    tmp_path,
):
    data_uri = publish(s3_root, tmp_path)[0]
    run_conf = {
        "store": s3_root,
        "training_id": "trained",
        "mode": "emr",
        "emr": EMR,
        "outputs": ["viterbi", "log_likelihood"],
    }
    run = decode_dag.test(run_conf=run_conf)
    assert run.state == "success"
    states = task_states(run)
    assert (states["create_cluster"], states["decode"], states["terminate_cluster"], states["watcher"]) == (
        "success",
        "success",
        "success",
        "skipped",
    )
    assert (states["start_spark"], states["stop_spark"]) == ("skipped", "skipped")
    iteration = Training(open_store(s3_root), "trained").published()["iteration"]
    (sent,) = sent_configs
    assert sent == orchestration.job_flow_config({**orchestration.EMR_DEFAULTS, **EMR}, "trained", hmm.__version__)
    cluster_id = cluster_of(run)
    assert emr_backend().clusters[cluster_id].state == "TERMINATED"
    output = orchestration.default_decode_output(
        s3_root, "trained", iteration, data_uri, ["viterbi", "log_likelihood"], "sequence", "id"
    )
    ((name, args, state),) = cluster_steps(cluster_id)
    assert (name, state) == (orchestration.decode_step_name("trained", output), "COMPLETED")
    assert args == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        f"{BUNDLE}/jobs/decode.py",
        "--store",
        s3_root,
        "--training-id",
        "trained",
        "--data",
        data_uri,
        "--output",
        output,
        "--outputs",
        "viterbi,log_likelihood",
        "--sequence-col",
        "sequence",
        "--id-col",
        "id",
    ]
    manifest = json.loads(open_store(output).read("_SUCCESS"))
    assert manifest["n_rows"] == 60 and manifest["model"]["training_id"] == "trained"

    # The output is finished: a second run creates no cluster at all.
    again = decode_dag.test(run_conf=run_conf)
    assert again.state == "success"
    assert task_states(again)["create_cluster"] == "skipped" and len(sent_configs) == 1


def test_the_model_event_names_the_store_and_the_training():
    extras = [
        {"training_id": "old", "model": "s3://bucket/root/trainings/old/model/3/model.npz"},
        {"training_id": "new", "model": "file:///srv/store/trainings/new/model/12/model.npz", "iteration": 12},
    ]
    assert orchestration.model_from_asset_events(extras) == ("file:///srv/store", "new")
    assert orchestration.model_from_asset_events(extras[:1]) == ("s3://bucket/root", "old")
    assert orchestration.model_from_asset_events([]) is None
    assert orchestration.model_from_asset_events([{"unrelated": 1}]) is None
    with pytest.raises(ValueError, match="is not under trainings/x/"):
        orchestration.model_from_asset_events([{"training_id": "x", "model": "s3://bucket/elsewhere/model.npz"}])
    with pytest.raises(ValueError, match="training_id"):
        orchestration.model_from_asset_events([{"training_id": "../x", "model": "s3://b/trainings/../x/model/1/m"}])


def test_default_outputs_differ_by_what_is_decoded_and_step_names_by_output():
    base = ("s3://bucket/store", "t", 4, "s3://bucket/data", ["viterbi"], "sequence", "id")
    first = orchestration.default_decode_output(*base)
    assert first.startswith("s3://bucket/store/decodes/t/4-")
    assert orchestration.default_decode_output(*base) == first
    assert orchestration.default_decode_output(*base[:4], ["viterbi", "posterior"], "sequence", "id") != first
    assert orchestration.default_decode_output(*base[:3], "s3://bucket/other", *base[4:]) != first
    assert orchestration.decode_step_name("t", first) != orchestration.decode_step_name("t", first + "x")

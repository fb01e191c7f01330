"""Trainings as committed iterations: steps, idempotency, conflicts, checksums (local engine)."""

import json
import os
import threading

import numpy as np
import pytest

import hmm
from hmm.core.sequences import InvalidSequenceError
from hmm.training import steps
from hmm.training.commits import Training, TrainingError
from hmm.training.spec import InvalidSpecError, TrainingSpec
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet


def spec_for(data_uri, **overrides):
    raw = {
        "model": "categorical",
        "n_components": 3,
        "data": data_uri,
        "id_col": "id",
        "tol": 1e-4,
        "max_iter": 6,
        "seed": 7,
    }
    raw.update(overrides)
    return TrainingSpec.from_dict(raw)


def snapshot(store_root):
    store = open_store(store_root)
    return {key: store.read(key) for key in store.list("")}


def test_training_equals_the_in_memory_library(store_root, categorical_data):
    data_uri, X, lengths = categorical_data
    spec = spec_for(data_uri)
    steps.init_training(store_root, "t1", spec, engine="local")
    training = Training(open_store(store_root), "t1")
    reference = training.load_params(0)
    reference.set_params(init_params="", n_iter=1)
    for k in range(1, 5):
        result = steps.em_iteration(store_root, "t1", k, engine="local")
        assert result["status"] == "committed" and result["iteration"] == k
        reference.fit(X, lengths)
        assert result["log_likelihood"] == pytest.approx(reference.monitor_.history[-1], rel=1e-12)
        committed = training.load_params(k)
        np.testing.assert_allclose(committed.emissionprob_, reference.emissionprob_, rtol=1e-9)
        np.testing.assert_allclose(committed.transmat_, reference.transmat_, rtol=1e-9)
    assert training.committed() == [0, 1, 2, 3, 4]


def test_initial_parameters_follow_the_seed_like_the_library(file_root, categorical_data):
    data_uri, X, lengths = categorical_data
    steps.init_training(file_root, "seeded", spec_for(data_uri), engine="local")
    initial = Training(open_store(file_root), "seeded").load_params(0)
    library = hmm.CategoricalHMM(3, random_state=7, n_iter=0, tol=1e-4)
    library._init(X, lengths)
    np.testing.assert_array_equal(initial.startprob_, library.startprob_)
    np.testing.assert_array_equal(initial.transmat_, library.transmat_)
    np.testing.assert_array_equal(initial.emissionprob_, library.emissionprob_)


def test_steps_are_idempotent(store_root, categorical_data):
    data_uri, _, _ = categorical_data
    spec = spec_for(data_uri)
    assert steps.init_training(store_root, "t2", spec, engine="local")["status"] == "committed"
    steps.em_iteration(store_root, "t2", 1, engine="local")
    before = snapshot(store_root)
    assert steps.init_training(store_root, "t2", spec, engine="local")["status"] == "exists"
    assert steps.em_iteration(store_root, "t2", 1, engine="local")["status"] == "exists"
    assert snapshot(store_root) == before


def test_a_different_spec_for_an_existing_training_changes_nothing(file_root, categorical_data):
    data_uri, _, _ = categorical_data
    steps.init_training(file_root, "t3", spec_for(data_uri), engine="local")
    before = snapshot(file_root)
    with pytest.raises(TrainingError, match=r"already exists with a different spec \(fields \['n_components'\]"):
        steps.init_training(file_root, "t3", spec_for(data_uri, n_components=4), engine="local")
    assert snapshot(file_root) == before


def test_spec_json_records_the_code_that_created_the_training_and_newer_code_resumes_it(
    file_root, categorical_data, monkeypatch
):
    data_uri, _, _ = categorical_data
    given = spec_for(data_uri, code_version="9.9.9")  # a version in a given spec is not believed
    steps.init_training(file_root, "versioned", given, engine="local")
    training = Training(open_store(file_root), "versioned")
    assert json.loads(open_store(file_root).read("trainings/versioned/spec.json"))["code_version"] == hmm.__version__
    assert training.spec().code_version == hmm.__version__
    assert training.spec() == given  # the code version takes no part in what is trained

    # A deploy of newer code: the same spec is the same training, and spec.json keeps its version.
    monkeypatch.setattr(steps, "__version__", "99.0")
    before = snapshot(file_root)
    assert steps.init_training(file_root, "versioned", spec_for(data_uri), engine="local")["status"] == "exists"
    assert steps.em_iteration(file_root, "versioned", 1, engine="local")["step"]["code_version"] == "99.0"
    assert training.spec().code_version == hmm.__version__
    assert before.items() <= snapshot(file_root).items()


def test_a_spec_json_from_before_code_versions_loads_with_the_version_unknown(file_root):
    store = open_store(file_root)
    old = {
        "model": "categorical",
        "n_components": 3,
        "data": "file:///data",
        "sequence_col": "sequence",
        "id_col": None,
        "tol": 0.01,
        "max_iter": 100,
        "seed": 0,
        "model_args": {},
    }
    store.write("trainings/old/spec.json", json.dumps(old, sort_keys=True, indent=2).encode())
    spec = Training(store, "old").spec()
    assert spec.code_version is None
    assert spec.definition() == old
    assert spec.to_json(recorded=False) == json.dumps(old, sort_keys=True, indent=2).encode()


def test_iteration_without_its_predecessor_is_refused(file_root, categorical_data):
    data_uri, _, _ = categorical_data
    steps.init_training(file_root, "t4", spec_for(data_uri), engine="local")
    with pytest.raises(
        TrainingError,
        match=r"iteration 2 of training 't4' is not committed \(latest committed: 0\); "
        r"run iteration 1 first",
    ):
        steps.em_iteration(file_root, "t4", 3, engine="local")
    with pytest.raises(TrainingError, match=r"training 'nope' does not exist"):
        steps.em_iteration(file_root, "nope", 1, engine="local")


def test_corrupt_parameters_are_refused(store_root, categorical_data):
    data_uri, _, _ = categorical_data
    steps.init_training(store_root, "t5", spec_for(data_uri), engine="local")
    store = open_store(store_root)
    record = json.loads(store.read("trainings/t5/iterations/0/COMMIT"))
    store.write(record["params_key"], store.read(record["params_key"]) + b"tampered")
    with pytest.raises(TrainingError, match=r"parameters of iteration 0 of training 't5' are corrupt: .* has SHA-256"):
        steps.em_iteration(store_root, "t5", 1, engine="local")
    assert Training(store, "t5").committed() == [0]


def test_two_concurrent_writers_commit_exactly_once(store_root, categorical_data):
    data_uri, _, _ = categorical_data
    steps.init_training(store_root, "t6", spec_for(data_uri), engine="local")
    results = []
    barrier = threading.Barrier(2)

    def writer():
        barrier.wait()
        results.append(steps.em_iteration(store_root, "t6", 1, engine="local")["status"])

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) in (["committed", "lost"], ["committed", "exists"])
    keys = open_store(store_root).list("trainings/t6/iterations/1/")
    assert keys.count("trainings/t6/iterations/1/COMMIT") == 1
    Training(open_store(store_root), "t6").load_params(1)  # the committed params verify


def test_train_runs_to_convergence_and_publishes(store_root, categorical_data):
    data_uri, X, lengths = categorical_data
    spec = spec_for(data_uri, max_iter=50, tol=0.5)
    lines = []
    result = steps.train(store_root, "t7", spec, engine="local", progress=lines.append)
    training = Training(open_store(store_root), "t7")
    latest = training.latest()
    assert training.converged() and latest < 50
    assert len(lines) == latest + 1 and "converged" in lines[-1]
    store = open_store(store_root)
    files = store.list("trainings/t7/model/")
    for name in ("model.npz", "report.json", "report.md", "log_likelihood.png", "parameters.png", "PUBLISHED"):
        assert f"trainings/t7/model/{latest}/{name}" in files
    assert result["iteration"] == latest and result["report"].endswith(f"trainings/t7/model/{latest}/report.md")
    assert training.published() == {k: v for k, v in result.items() if k != "status"}
    published = hmm.core.persistence.loads(store.read(f"trainings/t7/model/{latest}/model.npz"))
    library = training.load_params(0)
    library.set_params(init_params="", n_iter=50, tol=0.5)
    library.fit(X, lengths)
    np.testing.assert_allclose(published.emissionprob_, library.emissionprob_, rtol=1e-9)
    assert library.monitor_.iter == latest
    assert steps.finalize(store_root, "t7")["status"] == "exists"
    with pytest.raises(TrainingError, match="converged at iteration"):
        steps.em_iteration(store_root, "t7", latest + 1, engine="local")


def test_bad_rows_are_reported_by_id_and_nothing_is_written(tmp_path, file_root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = tmp_path / "bad"
    directory.mkdir()
    table = pa.table({"id": [100, 101, 102], "sequence": pa.array([[0, 1], [1, -4, 0], [2]], pa.list_(pa.int32()))})
    pq.write_table(table, directory / "part-0.parquet")
    with pytest.raises(InvalidSequenceError, match=r"sequence id=101, position 1: symbol -4 is negative"):
        steps.init_training(file_root, "bad", spec_for(f"file://{directory}"), engine="local")
    assert open_store(file_root).list("") == []


def test_missing_column_is_named(file_root, categorical_data):
    data_uri, _, _ = categorical_data
    with pytest.raises(InvalidSequenceError, match=r"has no column 'symbols'"):
        steps.init_training(file_root, "t8", spec_for(data_uri, sequence_col="symbols"), engine="local")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "hidden"}, r"spec field 'model' is 'hidden'; choose one of"),
        ({"tol": -1}, r"spec field 'tol' is -1; it must be a finite number >= 0"),
        ({"n_components": 0}, r"spec field 'n_components' is 0; it must be a positive integer"),
        ({"data": "ftp://host/data"}, r"spec field 'data' 'ftp://host/data' has scheme 'ftp'"),
        ({"max_iter": 2.5}, r"spec field 'max_iter' is 2.5"),
        ({"seed": -3}, r"spec field 'seed' is -3"),
        ({"sequence_col": "a;b"}, r"spec field 'sequence_col' is 'a;b'"),
        ({"model_args": {"rm_rf": 1}}, r"spec field 'model_args' has unknown argument\(s\) \['rm_rf'\]"),
        ({"surprise": 1}, r"spec has unknown field\(s\) \['surprise'\]"),
        ({"code_version": "1.0 --conf x"}, r"spec field 'code_version' is '1.0 --conf x'; a version is"),
        ({"code_version": "../1.0"}, r"spec field 'code_version' is '../1.0'"),
    ],
)
def test_bad_specs_are_refused(overrides, message):
    with pytest.raises(InvalidSpecError, match=message):
        spec_for("file:///data", **overrides)


@pytest.mark.parametrize("training_id", ["../escape", "a/b", "", "x" * 200, "-lead", "dot..dot"])
def test_hostile_training_ids_are_refused(file_root, training_id):
    with pytest.raises(InvalidSpecError, match=r"training_id .* is invalid"):
        Training(open_store(file_root), training_id)


def test_spark_engine_matches_local_engine(spark, tmp_path):
    data_uri, _, _ = write_categorical_parquet(str(tmp_path / "data"), n_sequences=300, files=3)
    spec = spec_for(data_uri, max_iter=3)
    local_root, spark_root = f"file://{tmp_path}/local", f"file://{tmp_path}/spark"
    steps.train(local_root, "same", spec, engine="local", progress=lambda line: None)
    steps.train(spark_root, "same", spec, engine="spark", spark=spark, progress=lambda line: None)
    local = Training(open_store(local_root), "same")
    on_spark = Training(open_store(spark_root), "same")
    assert local.committed() == on_spark.committed() == [0, 1, 2, 3]
    # The same splits and batches, added in the same order: bit for bit.
    np.testing.assert_array_equal(on_spark.history(), local.history())
    for k in on_spark.committed():
        np.testing.assert_array_equal(on_spark.load_params(k).emissionprob_, local.load_params(k).emissionprob_)
        np.testing.assert_array_equal(on_spark.load_params(k).transmat_, local.load_params(k).transmat_)


def test_a_training_published_by_earlier_code_stays_published_and_can_publish_later_iterations(file_root):
    """Code before iteration-addressed models wrote model/PUBLISHED (naming its iteration) and model/model.npz."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        data_uri, _, _ = write_categorical_parquet(f"{folder}/data", n_sequences=60)
        steps.init_training(file_root, "old", spec_for(data_uri, max_iter=3, tol=0.0), engine="local")
        steps.em_iteration(file_root, "old", 1, engine="local")
        training = Training(open_store(file_root), "old")
        legacy = {"iteration": 1, "converged": False, "model": "m", "report": "r", "files": ["model.npz"]}
        root = file_root[len("file://") :]
        os.makedirs(f"{root}/trainings/old/model")
        with open(f"{root}/trainings/old/model/PUBLISHED", "w") as file:
            json.dump(legacy, file)
        assert training.published() == legacy and training.published(1) == legacy
        assert steps.finalize(file_root, "old")["status"] == "exists"
        steps.em_iteration(file_root, "old", 2, engine="local")
        steps.em_iteration(file_root, "old", 3, engine="local")
        assert steps.finalize(file_root, "old")["status"] == "published"
        assert training.published()["iteration"] == 3 and training.published(1) == legacy

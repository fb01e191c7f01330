"""The decode step: a published model and Parquet data -> Parquet outputs keyed by id, idempotent,
equal to the library bit for bit on both engines, resumed after SIGKILL, hostile input refused."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.training import steps
from hmm.training.cli import main
from hmm.training.commits import Training
from hmm.training.decode import decode
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet

REPO = Path(__file__).resolve().parents[2]
ALL = "viterbi,log_likelihood,posterior,filtered"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A training published in a file store, and its data in 4 Parquet files (4 splits)."""
    root = tmp_path_factory.mktemp("decode")
    data_uri, X, lengths = write_categorical_parquet(str(root / "data"), n_sequences=400, files=4)
    store = f"file://{root}/store"
    spec = TrainingSpec.from_dict(
        {"model": "categorical", "n_components": 3, "data": data_uri, "id_col": "id", "max_iter": 3, "seed": 1}
    )
    steps.train(store, "t", spec, engine="local", progress=lambda line: None)
    training = Training(open_store(store), "t")
    model = training.load_params(training.published()["iteration"])
    return {"data": data_uri, "X": X, "lengths": lengths, "store": store, "model": model, "root": root}


def read_output(uri):
    """The committed output as a table sorted by id (pyarrow skips the _ objects, as Spark does)."""
    table = pq.read_table(uri.removeprefix("file://"))
    return table.sort_by("id")


def snapshot(uri):
    store = open_store(uri)
    return {key: store.read(key) for key in store.list("")}


def run_cli(*args):
    return main(["decode", *args])


@pytest.mark.spark
def test_decode_equals_the_library_bit_for_bit_on_both_engines(request, published, tmp_path):
    model, X, lengths = published["model"], published["X"], published["lengths"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    expected_states = model.predict(X, lengths)
    expected_posteriors = model.predict_proba(X, lengths)
    expected_filtered = model.predict_filtered_proba(X, lengths)
    expected_ll = model.infer_batch(X[:, 0], offsets, ["log_likelihood"])["log_likelihood"]
    outputs = {}
    for engine in ("local", "spark"):
        spark = request.getfixturevalue("spark") if engine == "spark" else None
        output = f"file://{tmp_path}/{engine}"
        result = decode(
            output,
            published["data"],
            store_uri=published["store"],
            training_id="t",
            outputs=ALL,
            engine=engine,
            spark=spark,
        )
        assert result["status"] == "decoded" and result["n_rows"] == 400 and result["n_parts"] == 4
        table = read_output(output)
        assert table.column("id").to_pylist() == list(range(400))  # every id exactly once
        rows = table.to_pydict()
        np.testing.assert_array_equal(np.concatenate(rows["viterbi"]), expected_states)
        assert np.array_equal(np.concatenate([np.asarray(p) for p in rows["posterior"]]), expected_posteriors)
        assert np.array_equal(np.concatenate([np.asarray(p) for p in rows["filtered"]]), expected_filtered)
        assert np.array_equal(np.asarray(rows["log_likelihood"]), expected_ll)
        for i in (0, 7, 399):
            sequence = X[offsets[i] : offsets[i + 1]]
            assert rows["log_likelihood"][i] == model.score(sequence)
        outputs[engine] = snapshot(output)
    # Both engines write the same parts, byte for byte; the manifests differ only in time and version.
    parts = sorted(k for k in outputs["local"] if k.startswith("part-"))
    assert parts == [f"part-0000{i}.parquet" for i in range(4)]
    assert all(outputs["local"][k] == outputs["spark"][k] for k in parts)
    manifest = json.loads(outputs["local"]["_SUCCESS"])
    for key in parts:
        assert manifest["parts"][key]["sha256"] == hashlib.sha256(outputs["local"][key]).hexdigest()
    assert manifest["outputs"] == ["viterbi", "log_likelihood", "posterior", "filtered"]
    assert manifest["model"]["iteration"] == Training(open_store(published["store"]), "t").published()["iteration"]


def test_a_finished_output_is_not_recomputed(published, tmp_path, capsys):
    output = f"file://{tmp_path}/out"
    common = ["--store", published["store"], "--training-id", "t", "--data", published["data"], "--output", output]
    assert run_cli(*common, "--engine", "local") == 0
    assert "decode: decoded: 400 sequences in 4 part(s) (0 committed before)" in capsys.readouterr().out
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert run_cli(*common, "--engine", "local") == 0
    assert "decode: exists: 400 sequences in 4 part(s)" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before
    # A model file of the same bytes is the same decode.
    model_file = f"{published['root']}/store/trainings/t/model/{_published_iteration(published)}/model.npz"
    same = ["--model-file", model_file, "--data", published["data"], "--output", output, "--engine", "local"]
    assert run_cli(*same) == 0
    assert "decode: exists" in capsys.readouterr().out


def _published_iteration(published):
    return Training(open_store(published["store"]), "t").published()["iteration"]


def decode_job(*args, fault=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable}
    env.pop("HMM_EM_FAULT", None)
    if fault:
        env["HMM_EM_FAULT"] = fault
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "decode.py"), *args, "--engine", "local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_kill_9_after_the_first_part_then_a_rerun_gives_every_id_exactly_once(published, tmp_path):
    output = f"file://{tmp_path}/killed"
    common = ["--store", published["store"], "--training-id", "t", "--data", published["data"], "--output", output]
    killed = decode_job(*common, "--outputs", ALL, fault="after-decode-part")
    assert killed.returncode == -9, killed.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert written == ["_DECODE.json", "part-00000.parquet"]  # no _SUCCESS: the output is not finished
    first = (tmp_path / "killed" / "part-00000.parquet").stat()

    resumed = decode_job(*common, "--outputs", ALL)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "400 sequences in 4 part(s) (1 committed before)" in resumed.stdout
    again = (tmp_path / "killed" / "part-00000.parquet").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not written twice
    ids = read_output(output).column("id").to_pylist()
    assert ids == list(range(400))
    # Exactly what an uninterrupted decode writes.
    clean = f"file://{tmp_path}/clean"
    decode(clean, published["data"], store_uri=published["store"], training_id="t", outputs=ALL, engine="local")
    resumed_objects, clean_objects = snapshot(output), snapshot(clean)
    assert {k: v for k, v in resumed_objects.items() if k.startswith("part-")} == {
        k: v for k, v in clean_objects.items() if k.startswith("part-")
    }
    assert json.loads(resumed_objects["_SUCCESS"])["parts"] == json.loads(clean_objects["_SUCCESS"])["parts"]


# ------------------------------------------------------------------ hostile input: one line, nothing written


@pytest.fixture
def gaussian_file(tmp_path):
    model = hmm.GaussianHMM(2)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    model.means_ = np.array([[0.0, 1.0], [3.0, 4.0]])
    model.covars_ = np.ones((2, 2))
    path = tmp_path / "gaussian.npz"
    model.save(path)
    return str(path)


@pytest.fixture
def small_categorical_file(tmp_path):
    model = hmm.CategoricalHMM(2, n_features=3)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    model.emissionprob_ = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    path = tmp_path / "small.npz"
    model.save(path)
    return str(path)


def hostile_cases(published, tmp_path, gaussian_file, small_categorical_file):
    store, data = published["store"], published["data"]
    return {
        "unknown training": (["--store", store, "--training-id", "nope"], 2, "training 'nope' does not exist"),
        "unknown file": (["--model-file", str(tmp_path / "none.npz")], 2, "does not exist"),
        "not a model file": (
            ["--model-file", data.removeprefix("file://") + "/part-00000.parquet"],
            2,
            "is not an hmm-em model file",
        ),
        "gaussian on symbols": (
            ["--model-file", gaussian_file],
            2,
            "does not fit the model (a GaussianHMM, n_features=2)",
        ),
        "too few symbols": (["--model-file", small_categorical_file], 2, "is outside [0, 3)"),
        "no id column": (["--store", store, "--training-id", "t", "--id-col", "key"], 2, "has no id column 'key'"),
        "no sequence column": (
            ["--store", store, "--training-id", "t", "--sequence-col", "seq"],
            2,
            "has no sequence column 'seq'",
        ),
        "bad outputs": (["--store", store, "--training-id", "t", "--outputs", "viterbi,states"], 2, "choose one or"),
        "two models": (
            ["--store", store, "--training-id", "t", "--model-file", gaussian_file],
            2,
            "one of the two",
        ),
        "id named like an output": (
            ["--store", store, "--training-id", "t", "--id-col", "viterbi"],
            2,
            "cannot be named like an output",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown training",
        "unknown file",
        "not a model file",
        "gaussian on symbols",
        "too few symbols",
        "no id column",
        "no sequence column",
        "bad outputs",
        "two models",
        "id named like an output",
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    capsys, published, tmp_path, gaussian_file, small_categorical_file, case
):
    args, code, message = hostile_cases(published, tmp_path, gaussian_file, small_categorical_file)[case]
    output = tmp_path / "out"
    store_before = snapshot(published["store"])
    assert run_cli(*args, "--data", published["data"], "--output", f"file://{output}", "--engine", "local") == code
    err = capsys.readouterr().err
    assert err.startswith("hmm-em decode: error: ") and err.count("\n") == 1 and message in err, err
    assert not output.exists()
    assert snapshot(published["store"]) == store_before


def test_a_training_without_a_published_model_is_refused(capsys, published, tmp_path):
    spec = TrainingSpec.from_dict({"model": "categorical", "n_components": 2, "data": published["data"], "seed": 0})
    steps.init_training(published["store"], "unpublished", spec, engine="local")
    output = tmp_path / "out"
    args = ["--store", published["store"], "--training-id", "unpublished", "--data", published["data"]]
    assert run_cli(*args, "--output", f"file://{output}", "--engine", "local") == 2
    assert "has no published model" in capsys.readouterr().err
    assert not output.exists()


def test_an_output_holding_something_else_is_refused_and_left_alone(capsys, published, tmp_path):
    common = ["--store", published["store"], "--training-id", "t", "--data", published["data"], "--engine", "local"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert run_cli(*common, "--output", f"file://{foreign}") == 3
    assert "already holds 1 object(s) (e.g. notes.txt) and no decode" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    done = f"file://{tmp_path}/done"
    assert run_cli(*common, "--output", done) == 0
    before = snapshot(done)
    assert run_cli(*common, "--output", done, "--outputs", "viterbi,posterior") == 3
    assert "fields ['outputs'] differ" in capsys.readouterr().err
    assert run_cli(*common, "--output", done, "--id-col", "id", "--sequence-col", "sequence") == 0  # the same decode
    other_data = write_categorical_parquet(str(tmp_path / "other"), n_sequences=50, files=1)[0]
    other = ["--store", published["store"], "--training-id", "t", "--data", other_data, "--engine", "local"]
    assert run_cli(*other, "--output", done) == 3
    assert "fields ['data', 'files'] differ" in capsys.readouterr().err
    assert snapshot(done) == before

    # An unfinished output of another decode (a claim, no _SUCCESS) is refused the same way.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    claim = json.loads(before["_DECODE.json"])
    (unfinished / "_DECODE.json").write_text(json.dumps({**claim, "model_sha256": "0" * 64}))
    assert run_cli(*common, "--output", f"file://{unfinished}") == 3
    assert "fields ['model_sha256'] differ" in capsys.readouterr().err
    assert [p.name for p in unfinished.iterdir()] == ["_DECODE.json"]


def test_a_bad_row_past_the_first_batch_is_named_by_id_and_nothing_is_finished(capsys, published, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = pa.table({"id": pa.array([1, 2], pa.int64()), "sequence": pa.array([[0, 1], [2]], pa.list_(pa.int32()))})
    bad = pa.table({"id": pa.array([3, 4], pa.int64()), "sequence": pa.array([[0], [1, 99]], pa.list_(pa.int32()))})
    pq.write_table(good, data / "a.parquet")
    pq.write_table(bad, data / "b.parquet")
    output = tmp_path / "out"
    args = ["--store", published["store"], "--training-id", "t", "--data", f"file://{data}"]
    assert run_cli(*args, "--output", f"file://{output}", "--engine", "local") == 2
    err = capsys.readouterr().err
    assert "file b.parquet, batch 0: sequence id=4, position 1: symbol 99 is outside" in err, err
    assert not (output / "_SUCCESS").exists()


def test_decode_to_s3_with_batches_smaller_than_a_split(published, s3_root, monkeypatch, tmp_path):
    """An S3 output (conditional writes of a real S3 API), parts of several row groups each."""
    from hmm.distributed import sources

    monkeypatch.setattr(sources, "BATCH_ROWS", 17)  # 100 rows per file: 6 batches, 6 row groups per part
    output = f"{s3_root}/decoded"
    common = {"store_uri": published["store"], "training_id": "t", "outputs": ALL, "engine": "local"}
    first = decode(output, published["data"], **common)
    assert (first["status"], first["n_rows"], first["n_parts"]) == ("decoded", 400, 4)
    store = open_store(output)
    assert store.list("") == ["_DECODE.json", "_SUCCESS", *(f"part-0000{i}.parquet" for i in range(4))]
    tables = [pq.read_table(pa.BufferReader(store.read(f"part-0000{i}.parquet"))) for i in range(4)]
    assert [pq.ParquetFile(pa.BufferReader(store.read("part-00000.parquet"))).num_row_groups] == [6]
    table = pa.concat_tables(tables).sort_by("id")
    assert table.column("id").to_pylist() == list(range(400))
    model, X, lengths = published["model"], published["X"], published["lengths"]
    assert np.array_equal(
        np.concatenate([np.asarray(p) for p in table.column("posterior").to_pylist()]), model.predict_proba(X, lengths)
    )
    before = {key: store.read(key) for key in store.list("")}
    assert decode(output, published["data"], **common)["status"] == "exists"
    assert {key: store.read(key) for key in store.list("")} == before


def test_an_unreachable_output_store_is_exit_4_and_one_line(capsys, published, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    args = ["--store", published["store"], "--training-id", "t", "--data", published["data"], "--engine", "local"]
    assert run_cli(*args, "--output", "s3://bucket/decoded") == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3://bucket/decoded/_SUCCESS" in err and "Could not connect" in err, err

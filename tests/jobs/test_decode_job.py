"""jobs/decode.py as an EMR step runs it: spark-submit, the Spark engine, against a local decode."""

import json

import pytest

from hmm.training import steps
from hmm.training.decode import decode
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet
from tests.jobs.test_jobs import spark_submit


@pytest.mark.spark
def test_spark_submit_decode_writes_the_parts_a_local_decode_writes(tmp_path, file_root):
    data_uri = write_categorical_parquet(str(tmp_path / "data"), n_sequences=200, files=3)[0]
    spec = TrainingSpec.from_dict({"model": "categorical", "n_components": 3, "data": data_uri, "id_col": "id"})
    steps.train(file_root, "t", spec, engine="local", progress=lambda line: None)
    outputs = "viterbi,log_likelihood,posterior,filtered"
    local = f"file://{tmp_path}/local"
    decode(local, data_uri, store_uri=file_root, training_id="t", outputs=outputs, engine="local")

    submitted = f"file://{tmp_path}/submitted"
    common = ["--store", file_root, "--training-id", "t", "--data", data_uri, "--output", submitted]
    printed = spark_submit("decode", *common, "--outputs", outputs)
    assert "decode: decoded: 200 sequences in 3 part(s) (0 committed before)" in printed
    assert "decode: exists: 200 sequences" in spark_submit("decode", *common, "--outputs", outputs)

    ours, theirs = open_store(submitted), open_store(local)
    parts = [key for key in theirs.list("") if key.startswith("part-")]
    assert len(parts) == 3 and [key for key in ours.list("") if key.startswith("part-")] == parts
    assert all(ours.read(key) == theirs.read(key) for key in parts)  # bit for bit, both engines
    assert json.loads(ours.read("_SUCCESS"))["parts"] == json.loads(theirs.read("_SUCCESS"))["parts"]

"""Hostile input and faults against the training layer: names, URIs, specs, stored objects, store faults, races.

Issue 10's defect classes each have a regression test here (``test_class_<n>_...``); the
parametrised campaigns after them try each input's hostile family. The rule every case checks:
one line naming the object and the rule, the documented exit code (2 bad input, 3 a training
that cannot do what was asked or a corrupt stored object, 4 a store that cannot be used), and
nothing committed, published or lost.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from hmm.core import persistence
from hmm.distributed.uris import InvalidURIError, check_uri
from hmm.orchestration.decisions import check_emr, check_params
from hmm.training import cli, steps
from hmm.training.commits import DataChangedError, Training, TrainingError
from hmm.training.spec import InvalidSpecError, TrainingSpec, check_training_id
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet


def raw_spec(data_uri: str, **overrides) -> dict:
    raw = {"model": "categorical", "n_components": 3, "data": data_uri, "id_col": "id", "tol": 0.0, "max_iter": 8}
    raw.update(overrides)
    return raw


def snapshot(store_uri: str) -> dict[str, bytes]:
    store = open_store(store_uri)
    return {key: store.read(key) for key in store.list("")}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """``hmm-em`` in this process: exit code and stderr (which must be one line when not empty)."""
    code = cli.main(list(argv), own_process=False)
    err = capsys.readouterr().err
    if code != 0:
        assert err.count("\n") == 1 and err.startswith(f"hmm-em {argv[0]}: error: "), err
    return code, err


def common(store: str, training_id: str = "t") -> list[str]:
    return ["--store", store, "--training-id", training_id, "--engine", "local"]


@pytest.fixture
def data(tmp_path):
    return write_categorical_parquet(str(tmp_path / "data"), n_sequences=120, files=2)


@pytest.fixture
def started(file_root, data):
    """A file-store training with iterations 0-2 committed (8 iterations planned, tol 0)."""
    data_uri = data[0]
    steps.init_training(file_root, "t", TrainingSpec.from_dict(raw_spec(data_uri)), engine="local")
    for k in (1, 2):
        steps.em_iteration(file_root, "t", k, engine="local")
    return file_root, data_uri


# ----------------------------------------------------------------- the classes of issue 10


def test_class_1_a_slow_report_of_an_older_iteration_never_contradicts_the_published_marker(started, monkeypatch):
    store_uri, _ = started
    from hmm.training import report

    entered, release = threading.Event(), threading.Event()
    build = report.build_report

    def slow_build(spec, records, model):
        if len(records) == 3:  # the report of iteration 2: held until iteration 3 is published
            entered.set()
            assert release.wait(60)
        return build(spec, records, model)

    monkeypatch.setattr(report, "build_report", slow_build)
    results = {}
    slow = threading.Thread(target=lambda: results.update(slow=steps.finalize(store_uri, "t")))
    slow.start()
    assert entered.wait(60)
    steps.em_iteration(store_uri, "t", 3, engine="local")
    results["fast"] = steps.finalize(store_uri, "t")
    release.set()
    slow.join(60)
    assert results["slow"]["iteration"] == 2 and results["fast"]["iteration"] == 3
    training = Training(open_store(store_uri), "t")
    marker = training.published()
    assert marker["iteration"] == 3
    # Every file the marker names holds the bytes it records, and the model is iteration 3's.
    for name, digest in marker["files"].items():
        assert hashlib.sha256(training.store.read(training.model_key(3, name))).hexdigest() == digest
    published = persistence.loads(training.store.read(training.model_key(3, "model.npz")))
    np.testing.assert_array_equal(published.emissionprob_, training.load_params(3).emissionprob_)
    assert json.loads(training.store.read(training.model_key(3, "report.json")))["final_iteration"] == 3
    older = json.loads(training.store.read(training.model_key(2, "report.json")))
    assert older["final_iteration"] == 2 and [r["iteration"] for r in older["iterations"]] == [0, 1, 2]


def test_class_2_a_nan_prior_is_refused_before_iteration_0_and_invalid_parameters_are_never_committed(
    capsys, file_root, data
):
    spec = json.dumps(raw_spec(data[0], model_args={"emissionprob_prior": float("nan")}))
    assert "NaN" in spec
    code, err = run_cli(capsys, "train", *common(file_root), "--spec", spec)
    assert code == 2 and "NaN is not a number JSON allows" in err
    assert snapshot(file_root) == {}
    # The commit itself refuses parameters that fail the model's checks, whatever produced them.
    steps.init_training(file_root, "t", TrainingSpec.from_dict(raw_spec(data[0])), engine="local")
    training = Training(open_store(file_root), "t")
    model = training.load_params(0)
    model.emissionprob_[0, 0] = np.nan
    before = snapshot(file_root)
    with pytest.raises(TrainingError, match=r"produced invalid parameters \(emissionprob_ contains non-finite"):
        training.commit(1, model, {"log_likelihood": 0.0, "converged": False}, training.spec())
    assert snapshot(file_root) == before


@pytest.mark.parametrize("change", ["added", "removed", "changed"])
def test_class_3_data_that_changed_after_init_is_refused_naming_the_change(capsys, started, change, tmp_path):
    store_uri, data_uri = started
    folder = data_uri[len("file://") :]
    if change == "added":
        write_categorical_parquet(str(tmp_path / "more"), n_sequences=10, files=1, seed=5)
        os.rename(tmp_path / "more" / "part-00000.parquet", f"{folder}/part-00009.parquet")
        name = "part-00009.parquet"
    elif change == "removed":
        os.unlink(f"{folder}/part-00001.parquet")
        name = "part-00001.parquet"
    else:
        write_categorical_parquet(str(tmp_path / "other"), n_sequences=60, files=1, seed=9)
        os.replace(tmp_path / "other" / "part-00000.parquet", f"{folder}/part-00001.parquet")
        name = "part-00001.parquet"
    before = snapshot(store_uri)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 2 and f"changed since iteration 0 ({change} {name})" in err and "nothing committed" in err
    assert snapshot(store_uri) == before


def test_class_3_counts_are_compared_even_for_a_training_without_a_file_pin(file_root, data, tmp_path):
    data_uri = data[0]
    spec = TrainingSpec.from_dict(raw_spec(data_uri))
    steps.init_training(file_root, "pinned", spec, engine="local")
    training = Training(open_store(file_root), "legacy")
    source = Training(open_store(file_root), "pinned")
    record = {k: v for k, v in source.record(0).items() if k not in ("data", "params_key", "params_sha256")}
    training.create(spec)
    training.commit(0, source.load_params(0), record, spec)  # as code before data pins wrote it
    write_categorical_parquet(str(tmp_path / "more"), n_sequences=10, files=1, seed=5)
    os.rename(tmp_path / "more" / "part-00000.parquet", f"{data_uri[7:]}/part-00009.parquet")
    with pytest.raises(DataChangedError, match=r"130 sequences and \d+ observations, iteration 0 had 120"):
        steps.em_iteration(file_root, "legacy", 1, engine="local")
    assert training.committed() == [0]


def test_class_5_an_early_report_does_not_block_publishing_the_final_model(capsys, started):
    store_uri, _ = started
    assert run_cli(capsys, "report", "--store", store_uri, "--training-id", "t")[0] == 0
    code, _ = run_cli(capsys, "resume", *common(store_uri))
    assert code == 0
    training = Training(open_store(store_uri), "t")
    assert training.published_iterations() == [2, 8]
    assert training.published()["iteration"] == 8 and training.published()["converged"] is True
    assert training.published(2)["converged"] is False


def test_class_6_iterations_without_their_spec_are_never_adopted(capsys, started, tmp_path):
    store_uri, data_uri = started
    store_dir = store_uri[len("file://") :]
    os.unlink(f"{store_dir}/trainings/t/spec.json")
    other = json.dumps(raw_spec(data_uri, n_components=2))
    before = snapshot(store_uri)
    code, err = run_cli(capsys, "init", *common(store_uri), "--spec", other)
    assert code == 3 and "has committed iterations 0..2 but no spec.json" in err
    assert snapshot(store_uri) == before


def test_class_6_a_replaced_spec_json_is_detected_by_the_commits_digest(capsys, started):
    store_uri, data_uri = started
    store_dir = store_uri[len("file://") :]
    replaced = TrainingSpec.from_dict(raw_spec(data_uri, seed=99))
    with open(f"{store_dir}/trainings/t/spec.json", "wb") as file:
        file.write(replaced.to_json())
    before = snapshot(store_uri)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3 and "iterations/2/COMMIT was computed under another spec" in err
    assert snapshot(store_uri) == before


@pytest.mark.parametrize(
    ("model_args", "message"),
    [
        ({"emissionprob_prior": [1, 2, 3]}, r"does not give a usable categorical model on this data"),
        ({"emissionprob_prior": "1.0"}, r"'model_args.emissionprob_prior' is '1.0'; it must be a finite number"),
        ({"transmat_prior": {"a": 1}}, r"'model_args.transmat_prior' is .*it must be a finite number"),
        ({"n_features": 4.5}, r"'model_args.n_features' is 4.5; it must be a positive integer"),
        ({"params": 5}, r"'model_args.params' is 5; it must be a string"),
        ([1, 2], r"'model_args' is list; it must be a JSON object"),
    ],
)
def test_class_7_model_args_that_would_fail_later_are_refused_before_anything_is_written(
    capsys, file_root, data, model_args, message
):
    spec = json.dumps(raw_spec(data[0], model_args=model_args))
    code, err = run_cli(capsys, "init", *common(file_root), "--spec", spec)
    assert code == 2, err
    assert re.search(message, err), err
    assert snapshot(file_root) == {}


def test_class_8_a_spec_that_never_ends_or_blocks_is_refused_at_once(capsys, file_root, tmp_path):
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    for source, message in [
        ("/dev/zero", "spec file '/dev/zero' is not a regular file"),
        (str(fifo), f"spec file '{fifo}' is not a regular file"),
    ]:
        code, err = run_cli(capsys, "init", *common(file_root), "--spec", source)
        assert code == 2 and message in err
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * (2 << 20) + b"}")
    code, err = run_cli(capsys, "init", *common(file_root), "--spec", str(big))
    assert code == 2 and "at most 1048576 are allowed" in err
    assert snapshot(file_root) == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [("training_id", "nl\n"), ("sequence_col", "seq\n"), ("id_col", "id\n"), ("code_version", "0.1\n")],
)
def test_class_9_a_trailing_newline_is_not_part_of_a_name(field, value, data):
    if field == "training_id":
        with pytest.raises(InvalidSpecError, match=r"training_id 'nl\\n' is invalid"):
            check_training_id(value)
    else:
        with pytest.raises(InvalidSpecError, match=f"spec field '{field}' is"):
            TrainingSpec.from_dict(raw_spec(data[0], **{field: value}))


def test_class_9_dag_params_and_iteration_numbers_take_ascii_only(capsys, started):
    with pytest.raises(InvalidSpecError, match=r"param 'emr.bundle_root' is 's3://bucket/x\\n'"):
        check_emr({"bundle_root": "s3://bucket/x\n"})
    store_uri, _ = started
    for iteration in ("\u0663", "3\n", "03", "1e3", "-1", "0", "9999999999"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["iterate", *common(store_uri), "--iteration", iteration], own_process=False)
        assert exit_info.value.code == 2
        assert "iteration must be an integer in [1, 999999999]" in capsys.readouterr().err
    # A key whose iteration folder holds other digits is not an iteration.
    store_dir = store_uri[len("file://") :]
    os.makedirs(f"{store_dir}/trainings/t/iterations/\u0663")
    with open(f"{store_dir}/trainings/t/iterations/\u0663/COMMIT", "w") as file:
        file.write("{}")
    assert Training(open_store(store_uri), "t").committed() == [0, 1, 2]


@pytest.mark.parametrize("suffix", ["#/../../etc", "?versionId=1", ";type=a", "/%2e%2e/etc"])
def test_class_10_uris_with_fragment_query_parameters_or_escapes_are_refused(suffix, tmp_path):
    with pytest.raises(InvalidURIError, match=r"contains '[#?;%]'; a URI here is a plain path"):
        check_uri(f"file://{tmp_path}/data{suffix}", "spec field 'data'")


def test_class_11_an_unreachable_s3_endpoint_is_one_line_and_exit_4(capsys, monkeypatch, data):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for argv in (
        ["status", "--store", "s3://bucket/x", "--training-id", "t"],
        ["iterate", *common("s3://bucket/x"), "--iteration", "1"],
        ["report", "--store", "s3://bucket/x", "--training-id", "t"],
        ["init", *common("s3://bucket/x"), "--spec", json.dumps(raw_spec(data[0]))],
    ):
        code, err = run_cli(capsys, *argv)
        assert code == 4 and "s3://bucket/x/trainings/t/" in err and "Could not connect to the endpoint URL" in err


def test_class_11_missing_credentials_are_one_line_and_exit_4(capsys, monkeypatch, moto_endpoint, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found first
    code, err = run_cli(capsys, "status", "--store", "s3://bucket/x", "--training-id", "t")
    assert code == 4 and "Unable to locate credentials" in err


@pytest.mark.parametrize("where", ["params", "commit"])
@pytest.mark.parametrize("cause", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_class_11_a_full_disk_or_read_only_store_leaves_nothing_behind(capsys, monkeypatch, started, where, cause):
    store_uri, _ = started
    before = snapshot(store_uri)
    real_fsync = os.fsync
    written = []

    def failing_fsync(fd):
        written.append(fd)
        # The parameters are the first object an iteration writes, COMMIT the second.
        if (where == "params" and len(written) == 1) or (where == "commit" and len(written) == 2):
            raise OSError(cause, os.strerror(cause))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 4 and os.strerror(cause) in err and errno.errorcode[cause] in err
    after = snapshot(store_uri)
    store_dir = store_uri[len("file://") :]
    temporaries = [n for _, _, names in os.walk(store_dir) for n in names if n.endswith(".tmp")]
    assert temporaries == []
    assert "trainings/t/iterations/3/COMMIT" not in after
    assert {k: v for k, v in after.items() if k in before} == before
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")[0] == 0  # and it resumes


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{}", "it records iteration None"),
        (b"", "is corrupt"),
        (b'{"iteration": 2, "params_k', "is corrupt"),
        (b"\x00\xff garbage", "is corrupt"),
        (b"[2]", "is corrupt"),
    ],
)
def test_class_11_12_a_garbage_commit_is_exit_3_naming_its_key(capsys, started, content, problem):
    store_uri, _ = started
    path = f"{store_uri[len('file://') :]}/trainings/t/iterations/2/COMMIT"
    with open(path, "wb") as file:
        file.write(content)
    before = snapshot(store_uri)
    for argv in (
        ["iterate", *common(store_uri), "--iteration", "3"],
        ["status", "--store", store_uri, "--training-id", "t"],
    ):
        code, err = run_cli(capsys, *argv)
        assert code == 3 and f"stored COMMIT {store_uri}/trainings/t/iterations/2/COMMIT is corrupt" in err
        assert problem in err
    assert snapshot(store_uri) == before


def test_class_11_a_params_key_with_dot_dot_is_a_corrupt_commit(capsys, started):
    store_uri, _ = started
    path = f"{store_uri[len('file://') :]}/trainings/t/iterations/2/COMMIT"
    record = json.loads(Path(path).read_bytes())
    record["params_key"] = "trainings/t/iterations/../../../../etc/passwd"
    with open(path, "w") as file:
        json.dump(record, file)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3 and "params_key 'trainings/t/iterations/../../../../etc/passwd' is not this iteration" in err


def test_class_11_huge_and_deep_inputs_are_one_short_line(capsys, file_root):
    code, err = run_cli(capsys, "init", *common(file_root), "--spec", '{"model_args": ' + "[" * 100_000)
    assert code == 2 and "spec is nested too deeply" in err
    huge = "file:///" + "a" * 10_000_000
    code, err = run_cli(capsys, "validate", "--spec", json.dumps(raw_spec(huge)), "--engine", "local")
    assert code == 2 and "spec is 10000106 bytes long; at most 1048576 are allowed" in err
    with pytest.raises(InvalidSpecError, match=r"spec field 'data' is 10000008 characters long; at most 512") as error:
        check_params({**raw_spec(huge), "store": "file:///tmp/store"})
    assert len(str(error.value)) < 200
    for argv in (
        ["--store", "file:///" + "s" * 100_000, "--training-id", "t"],
        ["--store", "file:///s", "--training-id", "t" * 100_000],
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["status", *argv], own_process=False)
        assert exit_info.value.code == 2 and len(capsys.readouterr().err) < 600


# ----------------------------------------------------------------------- campaign: names

BAD_TRAINING_IDS = [
    "",
    " ",
    "a b",
    "a/b",
    "..",
    "a..b",
    "-lead",
    ".hidden",
    "_x",
    "x" * 129,
    "nl\n",
    "tab\t",
    "caf\u00e9",
    "\u0663",
    "a\x00b",
    "a:b",
    "a%2fb",
    5,
    None,
    ["a"],
]


@pytest.mark.parametrize("training_id", BAD_TRAINING_IDS, ids=repr)
def test_hostile_training_ids_are_refused(training_id):
    with pytest.raises(InvalidSpecError, match=r"training_id .* is invalid: use 1-128 letters"):
        check_training_id(training_id)


BAD_URIS = [
    ("file:///x#frag", "contains '#'"),
    ("file:///x?q=1", "contains '?'"),
    ("file:///x;p", "contains ';'"),
    ("file:///x/%2e%2e/etc", "contains '%'"),
    ("file:///x/../y", "must not contain '..'"),
    ("file:///x/./y", "must not contain '..', '.'"),
    ("file:///x//y", "or empty path segments"),
    ("file://host/x", "must be an absolute file:///path"),
    ("file:relative", "has scheme ''"),
    ("FILE:///x", "has scheme 'FILE'"),
    ("s3://a b/x", "contains spaces"),
    ("s3://AB-bucket/x", "must name a bucket as S3 does"),
    ("s3://ab/x", "must name a bucket as S3 does"),
    ("s3://", "must name a bucket as S3 does"),
    ("s3:///x", "must name a bucket as S3 does"),
    ("s3://bucket..name/x", "must name a bucket as S3 does"),
    ("s3://-bucket/x", "must name a bucket as S3 does"),
    ("s3://" + "b" * 64 + "/x", "must name a bucket as S3 does"),
    ("http://example.com/x", "has scheme 'http'"),
    ("file:///x\n", "contains spaces, control or non-ASCII"),
    ("file:///x y", "contains spaces, control or non-ASCII"),
    ("file:///caf\u00e9", "contains spaces, control or non-ASCII"),
    ("s3://bucket/x\x7f", "contains spaces, control or non-ASCII"),
    ("file:///" + "a" * 600, "at most 512 are allowed"),
    ("s3://bucket/a\\b", "contains '\\\\'"),
    (5, "must be a non-empty string"),
    (None, "must be a non-empty string"),
    (b"file:///x", "must be a non-empty string"),
]


@pytest.mark.parametrize(("uri", "message"), BAD_URIS, ids=lambda v: repr(v)[:40])
def test_hostile_uris_are_refused_naming_the_rule(uri, message):
    with pytest.raises(InvalidURIError) as error:
        check_uri(uri, "store URI")
    assert message in str(error.value) and str(error.value).startswith("store URI")


# ----------------------------------------------------------------------- campaign: specs

BAD_SPEC_FIELDS = [
    ({"model": "hidden"}, "spec field 'model' is 'hidden'"),
    ({"model": 5}, "spec field 'model' is 5"),
    ({"n_components": 0}, "'n_components' is 0; it must be a positive integer"),
    ({"n_components": -1}, "'n_components' is -1"),
    ({"n_components": 1.5}, "'n_components' is 1.5"),
    ({"n_components": True}, "'n_components' is True"),
    ({"n_components": "3"}, "'n_components' is '3'"),
    ({"n_components": 1_000_000}, "spec does not fit in memory: a CategoricalHMM with n_components=1000000"),
    ({"model_args": {"n_features": 10**11}}, "spec does not fit in memory"),
    ({"model": "gmm", "n_components": 3000, "model_args": {"n_mix": 3000}}, "spec does not fit in memory"),
    ({"tol": float("nan")}, "'tol' is nan; it must be a finite number >= 0"),
    ({"tol": float("inf")}, "'tol' is inf"),
    ({"tol": -1}, "'tol' is -1"),
    ({"tol": "0.1"}, "'tol' is '0.1'"),
    ({"max_iter": 0}, "'max_iter' is 0"),
    ({"max_iter": 10.0}, "'max_iter' is 10.0"),
    ({"seed": -1}, "'seed' is -1; it must be an integer in [0, 2**32)"),
    ({"seed": 2**32}, "'seed' is 4294967296"),
    ({"seed": "0"}, "'seed' is '0'"),
    ({"sequence_col": "a-b"}, "'sequence_col' is 'a-b'"),
    ({"sequence_col": "1a"}, "'sequence_col' is '1a'"),
    ({"sequence_col": ""}, "'sequence_col' is ''"),
    ({"sequence_col": 5}, "'sequence_col' is 5"),
    ({"id_col": "a b"}, "'id_col' is 'a b'"),
    ({"colour": "red"}, "unknown field(s) ['colour']"),
    ({"data": 5}, "spec field 'data' must be a non-empty string"),
    ({"model_args": "n_features=3"}, "'model_args' is str; it must be a JSON object"),
    ({"model_args": {"n_iter": 3}}, "unknown argument(s) ['n_iter']"),
    ({"model_args": {"n_features": 0}}, "'model_args.n_features' is 0"),
    ({"model_args": {"n_features": "4"}}, "'model_args.n_features' is '4'"),
    ({"model_args": {"n_features": True}}, "'model_args.n_features' is True"),
    ({"model_args": {"params": "xyz"}}, "a categorical model knows the letters 'ste'"),
    ({"model_args": {"init_params": "stm"}}, "a categorical model knows the letters 'ste'"),
    ({"model_args": {"params": "st\n"}}, "a categorical model knows the letters"),
    ({"model_args": {"algorithm": 5}}, "'model_args.algorithm' is 5; it must be a string"),
    ({"model_args": {"algorithm": "forward"}}, "does not build a CategoricalHMM"),
    ({"model_args": {"startprob_prior": float("nan")}}, "'model_args.startprob_prior' is 'nan'"),
    ({"model_args": {"startprob_prior": [1, 2]}}, "has shape (2,); it must be a number or an array that broadcasts"),
    ({"model_args": {"startprob_prior": [[1, 2], [3]]}}, "'model_args.startprob_prior' is"),
    ({"model_args": {"startprob_prior": []}}, "'model_args.startprob_prior' is '[]'"),
    ({"model_args": {"startprob_prior": [-1, 1, 1]}}, "has negative values; it must be >= 0"),
    ({"model_args": {"transmat_prior": [[1, 1], [1, 1]]}}, "'model_args.transmat_prior' has shape (2, 2)"),
    ({"model_args": {"emissionprob_prior": None}}, "'model_args.emissionprob_prior' is 'None'"),
    ({"model_args": {"emissionprob_prior": True}}, "'model_args.emissionprob_prior' is 'True'"),
    ({"model_args": {"emissionprob_prior": 10**400}}, "'model_args.emissionprob_prior' is"),
    ({"model_args": {"n_features": 4, "emissionprob_prior": [[1] * 5] * 3}}, "has shape (3, 5)"),
    ({"model": "gaussian", "model_args": {"min_covar": 0}}, "'model_args.min_covar' is 0; it must be a finite"),
    ({"model": "gaussian", "model_args": {"min_covar": "x"}}, "'model_args.min_covar' is 'x'"),
    ({"model": "gaussian", "model_args": {"covariance_type": "round"}}, "does not build a GaussianHMM"),
    ({"model": "gmm", "model_args": {"n_mix": 0}}, "'model_args.n_mix' is 0"),
    ({"model": "gmm", "model_args": {"params": "stl"}}, "a gmm model knows the letters 'stmcw'"),
    ({"model": "poisson", "model_args": {"lambdas_weight": -1}}, "has negative values"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_SPEC_FIELDS, ids=lambda v: repr(v)[:60])
def test_hostile_spec_fields_are_refused_naming_the_field(overrides, message):
    with pytest.raises(InvalidSpecError) as error:
        TrainingSpec.from_dict(raw_spec("file:///data", **overrides))
    assert message in str(error.value)


BAD_SPEC_TEXTS = [
    ("[]", "spec must be a JSON object, got list"),
    ("null", "spec must be a JSON object, got NoneType"),
    ('"spec"', "spec must be a JSON object, got str"),
    ("{", "spec is not valid JSON"),
    ("{}", "spec field 'model' is required"),
    ('{"model": "categorical", "n_components": 3, "data": "file:///d", "tol": NaN}', "NaN is not a number"),
    ('{"model": "categorical", "n_components": 3, "data": "file:///d", "tol": Infinity}', "Infinity is not a number"),
    ('{"model": "categorical", "n_components": 3, "data": "file:///d", "seed": -Infinity}', "-Infinity is not"),
    ('{"model": "categorical", "model": "gaussian", "n_components": 3, "data": "file:///d"}', "['model'] appear more"),
    ("[" * 100_000, "spec is nested too deeply"),
    (b"\xff\xfe{", "spec is not valid JSON"),
    ("{" + " " * (1 << 20) + "}", "at most 1048576 are allowed"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPEC_TEXTS, ids=lambda v: repr(v)[:40])
def test_hostile_spec_texts_are_refused(text, message):
    with pytest.raises(InvalidSpecError) as error:
        TrainingSpec.from_json(text)
    assert message in str(error.value)


def test_dag_params_refuse_what_the_cli_refuses(data):
    base = {**raw_spec(data[0]), "store": "file:///tmp/store"}
    for overrides, message in [
        ({"store": "file:///tmp/store#x"}, "param 'store' 'file:///tmp/store#x' contains '#'"),
        ({"training_id": "t\n"}, "training_id 't\\n' is invalid"),
        ({"mode": "emr\n"}, "param 'mode' is 'emr\\n'"),
        ({"emr": {"release_label": "emr-7.5.0\n"}}, "param 'emr.release_label'"),
        ({"emr": {"subnet_id": "subnet-0123abcd\n"}}, "param 'emr.subnet_id'"),
        ({"model_args": {"emissionprob_prior": "x"}}, "'model_args.emissionprob_prior' is 'x'"),
    ]:
        with pytest.raises(InvalidSpecError) as error:
            check_params({**base, **overrides})
        assert message in str(error.value)


# --------------------------------------------------------------- campaign: stored objects

CORRUPT_COMMIT_FIELDS = [
    ({"iteration": 7}, "it records iteration 7"),
    ({"iteration": True}, "it records iteration True"),
    ({"params_sha256": "zz"}, "params_sha256 'zz' is not a SHA-256"),
    ({"params_sha256": None}, "params_sha256 'None' is not a SHA-256"),
    ({"params_key": "trainings/t/iterations/1/params-0000000000000000.npz"}, "is not this iteration's parameters"),
    ({"params_key": 5}, "params_key '5' is not this iteration's parameters"),
    ({"log_likelihood": "high"}, "log_likelihood 'high' is not a number"),
    ({"log_likelihood": None}, "log_likelihood None is not a number"),
    ({"converged": "yes"}, "converged 'yes' is not true or false"),
    ({"n_sequences": -1}, "n_sequences -1 is not a count"),
    ({"n_observations": 1.5}, "n_observations 1.5 is not a count"),
    ({"spec_sha256": "0" * 63}, "spec_sha256 '000"),
]


@pytest.mark.parametrize(("fields", "problem"), CORRUPT_COMMIT_FIELDS, ids=lambda v: repr(v)[:50])
def test_corrupt_commit_fields_are_named(capsys, started, fields, problem):
    store_uri, _ = started
    path = f"{store_uri[len('file://') :]}/trainings/t/iterations/2/COMMIT"
    record = json.loads(Path(path).read_bytes())
    record.update(fields)
    with open(path, "w") as file:
        json.dump(record, file)
    before = snapshot(store_uri)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3 and "trainings/t/iterations/2/COMMIT is corrupt" in err and problem in err
    assert snapshot(store_uri) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"garbage", "stored spec"),
        (b"{}", "spec field 'model' is required"),
        (b'{"model": "categorical"}', "spec field 'n_components' is required"),
        (b"[" * 50_000, "nested too deeply"),
    ],
)
def test_a_garbage_spec_json_is_exit_3_naming_its_key(capsys, started, content, problem):
    store_uri, _ = started
    with open(f"{store_uri[len('file://') :]}/trainings/t/spec.json", "wb") as file:
        file.write(content)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3 and f"stored spec {store_uri}/trainings/t/spec.json is invalid" in err and problem in err


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x03\x04truncated", b""])
def test_garbage_parameters_with_a_matching_checksum_are_a_corrupt_object(capsys, started, content):
    """Someone replaced both the parameters and the COMMIT's checksum: the content is still checked."""
    store_uri, _ = started
    store_dir = store_uri[len("file://") :]
    commit_path = f"{store_dir}/trainings/t/iterations/2/COMMIT"
    record = json.loads(Path(commit_path).read_bytes())
    digest = hashlib.sha256(content).hexdigest()
    record["params_sha256"] = digest
    record["params_key"] = f"trainings/t/iterations/2/params-{digest[:16]}.npz"
    with open(f"{store_dir}/{record['params_key']}", "wb") as file:
        file.write(content)
    with open(commit_path, "w") as file:
        json.dump(record, file)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3 and f"stored parameters {store_uri}/{record['params_key']} are invalid" in err


def test_tampered_parameters_are_exit_3_naming_the_object(capsys, started):
    store_uri, _ = started
    record = Training(open_store(store_uri), "t").record(2)
    with open(f"{store_uri[len('file://') :]}/{record['params_key']}", "ab") as file:
        file.write(b"tampered")
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3 and f"{store_uri}/{record['params_key']} has SHA-256" in err


@pytest.mark.parametrize("content", [b"garbage", b"{}", b'{"iteration": 5, "files": {}}', b'{"iteration": 2}'])
def test_a_garbage_published_marker_is_exit_3(capsys, started, content):
    store_uri, _ = started
    assert steps.finalize(store_uri, "t")["iteration"] == 2
    with open(f"{store_uri[len('file://') :]}/trainings/t/model/2/PUBLISHED", "wb") as file:
        file.write(content)
    code, err = run_cli(capsys, "report", "--store", store_uri, "--training-id", "t")
    assert code == 3 and f"stored marker {store_uri}/trainings/t/model/2/PUBLISHED is corrupt" in err


def test_a_symlink_loop_in_the_store_is_named_and_the_listing_ends(capsys, started):
    store_uri, _ = started
    store_dir = store_uri[len("file://") :]
    os.symlink(".", f"{store_dir}/trainings/t/iterations/loop")
    assert Training(open_store(store_uri), "t").committed() == [0, 1, 2]
    os.unlink(f"{store_dir}/trainings/t/spec.json")
    os.symlink("spec.json", f"{store_dir}/trainings/t/spec.json")
    code, err = run_cli(capsys, "status", "--store", store_uri, "--training-id", "t")
    assert code == 3 and "a symbolic link loop" in err


def test_a_directory_where_an_object_belongs_is_a_broken_store(capsys, started):
    store_uri, _ = started
    store_dir = store_uri[len("file://") :]
    os.unlink(f"{store_dir}/trainings/t/spec.json")
    os.mkdir(f"{store_dir}/trainings/t/spec.json")
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 3, err


def test_s3_objects_corrupted_in_place_are_named(capsys, s3_root, data):
    steps.init_training(s3_root, "t", TrainingSpec.from_dict(raw_spec(data[0])), engine="local")
    store = open_store(s3_root)
    store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/trainings/t/iterations/0/COMMIT", Body=b"{")
    code, err = run_cli(capsys, "iterate", *common(s3_root), "--iteration", "1")
    assert code == 3 and f"stored COMMIT {s3_root}/trainings/t/iterations/0/COMMIT is corrupt" in err


def test_a_missing_bucket_is_named(capsys, moto_endpoint):
    code, err = run_cli(capsys, "status", "--store", "s3://no-such-bucket-here/x", "--training-id", "t")
    assert code == 3 and "training 't' does not exist in s3://no-such-bucket-here/x" in err
    code, err = run_cli(capsys, "report", "--store", "s3://no-such-bucket-here/x", "--training-id", "t")
    assert code == 4 and "cannot list s3://no-such-bucket-here/x/trainings/t/iterations/: NoSuchBucket" in err


def test_store_errors_on_read_are_exit_4_and_change_nothing(capsys, monkeypatch, started):
    store_uri, _ = started
    before = snapshot(store_uri)
    real = Path.read_bytes

    def failing(self):
        if self.name == "COMMIT":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    code, err = run_cli(capsys, "iterate", *common(store_uri), "--iteration", "3")
    assert code == 4 and "cannot read" in err and "(EIO)" in err
    monkeypatch.setattr(Path, "read_bytes", real)
    assert snapshot(store_uri) == before


# -------------------------------------------------------------- campaign: concurrency


def test_two_finalizes_at_once_publish_one_consistent_model(store_root, data):
    steps.init_training(store_root, "t", TrainingSpec.from_dict(raw_spec(data[0])), engine="local")
    steps.em_iteration(store_root, "t", 1, engine="local")
    results, barrier = [], threading.Barrier(4)

    def publish():
        barrier.wait()
        results.append(steps.finalize(store_root, "t"))

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(r["status"] for r in results).count("published") == 1
    training = Training(open_store(store_root), "t")
    marker = training.published()
    assert all({k: v for k, v in r.items() if k != "status"} == marker for r in results)
    for name, digest in marker["files"].items():
        assert hashlib.sha256(training.store.read(training.model_key(1, name))).hexdigest() == digest


def test_two_inits_with_different_specs_at_once_bind_iteration_0_to_the_winner(file_root, data):
    specs = [TrainingSpec.from_dict(raw_spec(data[0], seed=s)) for s in (1, 2)]
    outcomes, barrier = {}, threading.Barrier(2)

    def init(spec):
        barrier.wait()
        try:
            outcomes[spec.seed] = steps.init_training(file_root, "t", spec, engine="local")["status"]
        except TrainingError as error:
            outcomes[spec.seed] = str(error)

    threads = [threading.Thread(target=init, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    training = Training(open_store(file_root), "t")
    winner = training.spec()
    assert outcomes[winner.seed] in ("committed", "exists")
    loser = 3 - winner.seed
    assert "already exists with a different spec (fields ['seed'] differ)" in outcomes[loser]
    assert training.record(0)["spec_sha256"] == winner.digest()
    training.load_params(0)  # bound to the spec that won

"""Trainings with candidate models (issue 13): restarts and state-count sweeps in one data pass,
held-out scores, AIC/BIC, pruning, the new spec fields' refusals, warm start and stable labels."""

from __future__ import annotations

import copy
import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.core.holdout import holdout_mask
from hmm.core.relabel import relabel
from hmm.training import cli, steps
from hmm.training.commits import Training
from hmm.training.spec import InvalidSpecError, TrainingSpec
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet

QUIET = {"progress": lambda line: None}


def raw_spec(data_uri, **overrides):
    raw = {"model": "categorical", "n_components": 3, "data": data_uri, "tol": 0.0, "max_iter": 4, "seed": 7}
    raw.update(overrides)
    return raw


def spec_for(data_uri, **overrides):
    return TrainingSpec.from_dict(raw_spec(data_uri, **overrides))


def snapshot(store_uri):
    store = open_store(store_uri)
    return {key: store.read(key) for key in store.list("")}


@pytest.fixture
def data(tmp_path):
    return write_categorical_parquet(str(tmp_path / "data"), n_sequences=150, files=3)


def candidate_trajectories(training: Training) -> dict[int, list[tuple[int, str, float | None]]]:
    """Per candidate: (iteration, params SHA-256, log-likelihood) of every iteration it ran."""
    paths: dict[int, list] = {}
    for record in training.records():
        for entry in record["candidates"]:
            if entry["iteration"] == record["iteration"]:
                paths.setdefault(entry["index"], []).append(
                    (record["iteration"], entry["params_sha256"], entry["log_likelihood"])
                )
    return paths


def single_trajectory(training: Training) -> list[tuple[int, str, float | None]]:
    return [(r["iteration"], r["params_sha256"], r["log_likelihood"]) for r in training.records()]


# ------------------------------------------------------------------ spec fields


def test_a_spec_written_by_earlier_code_keeps_its_digest_and_bytes():
    """spec.json and digest of a spec as the code before candidates wrote them (computed on lead13)."""
    written = (
        b'{\n  "code_version": "0.1.dev1+gabc",\n  "data": "file:///data/x",\n  "id_col": "id",\n'
        b'  "max_iter": 6,\n  "model": "categorical",\n  "model_args": {\n    "n_features": 6\n  },\n'
        b'  "n_components": 3,\n  "seed": 7,\n  "sequence_col": "sequence",\n  "tol": 0.0001\n}'
    )
    spec = TrainingSpec.from_json(written)
    assert spec.to_json() == written
    assert spec.digest() == "1c27dbb56879f7ec5380a0a29fa8da1545b0fd46c871d102c69f1d9c4071c428"
    # The new fields at their defaults change nothing; set, they are part of what is trained.
    explicit = TrainingSpec.from_dict({**json.loads(written), "n_init": 1, "prune_after": 5, "keep": 1})
    assert explicit.digest() == spec.digest() and not explicit.has_candidates
    assert TrainingSpec.from_dict({**json.loads(written), "n_init": 2}).digest() != spec.digest()


def test_a_training_without_candidate_fields_writes_what_it_wrote_before(file_root, data):
    steps.train(file_root, "plain", spec_for(data[0], max_iter=2), engine="local", **QUIET)
    records = Training(open_store(file_root), "plain").records()
    common = {"iteration", "params_key", "params_sha256", "spec_sha256", "log_likelihood", "improvement"}
    common |= {"converged", "n_sequences", "n_observations", "timings", "step", "committed_at"}
    assert set(records[0]) == common | {"data"}
    assert all(set(record) == common for record in records[1:])
    spec_json = json.loads(open_store(file_root).read("trainings/plain/spec.json"))
    assert not set(spec_json) & {"n_init", "prune_after", "keep", "holdout_fraction", "init_from"}


def test_candidates_are_each_number_of_states_times_n_init_seeds():
    spec = spec_for("file:///d", n_components=[2, 4], n_init=3, seed=10)
    assert spec.candidates() == [(2, 10), (2, 11), (2, 12), (4, 10), (4, 11), (4, 12)]
    assert spec.components == [2, 4] and spec.has_candidates
    assert spec_for("file:///d").candidates() == [(3, 7)]


BAD_CANDIDATE_FIELDS = [
    ({"n_init": 0}, "spec field 'n_init' is 0; it must be a positive integer"),
    ({"n_init": 1.5}, "spec field 'n_init' is 1.5"),
    ({"prune_after": 0}, "spec field 'prune_after' is 0"),
    ({"keep": 0}, "spec field 'keep' is 0"),
    ({"holdout_fraction": 1}, "spec field 'holdout_fraction' is 1; it must be a number in [0, 1)"),
    ({"holdout_fraction": -0.1}, "spec field 'holdout_fraction' is -0.1"),
    ({"holdout_fraction": "0.1"}, "spec field 'holdout_fraction' is '0.1'"),
    ({"n_components": [2, 2]}, "spec field 'n_components' is [2, 2]; it must be a positive integer or a non-empty"),
    ({"n_components": []}, "spec field 'n_components' is []"),
    ({"n_components": [2, 0]}, "spec field 'n_components' is [2, 0]"),
    ({"n_components": [2, True]}, "spec field 'n_components' is [2, True]"),
    ({"init_from": "no/such"}, "spec field 'init_from' is 'no/such': it names a training"),
    ({"init_from": 5}, "spec field 'init_from' is 5"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_CANDIDATE_FIELDS, ids=lambda v: repr(v)[:50])
def test_bad_candidate_fields_are_refused_by_the_cli_with_exit_2_and_nothing_written(
    capsys, file_root, data, overrides, message
):
    with pytest.raises(InvalidSpecError) as error:
        TrainingSpec.from_dict(raw_spec(data[0], **overrides))
    assert message in str(error.value)
    spec = json.dumps(raw_spec(data[0], **overrides))
    code = cli.main(["train", "--store", file_root, "--training-id", "t", "--engine", "local", "--spec", spec])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not os.path.exists(file_root[len("file://") :]) or snapshot(file_root) == {}


def test_an_unknown_init_from_is_refused_with_exit_2_and_nothing_written(capsys, file_root, data):
    spec = json.dumps(raw_spec(data[0], init_from="nosuch"))
    code = cli.main(["train", "--store", file_root, "--training-id", "t", "--engine", "local", "--spec", spec])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "spec field 'init_from' is 'nosuch'" in err, err
    assert not os.path.exists(file_root[len("file://") :]) or snapshot(file_root) == {}


def test_a_k_list_is_refused_when_a_prior_fits_none_of_its_sizes():
    with pytest.raises(InvalidSpecError, match=r"'model_args\.startprob_prior' has shape"):
        spec_for("file:///d", n_components=[3, 4], model_args={"startprob_prior": [1, 1, 1]})


# ----------------------------------------------------------- candidates in one pass


@pytest.mark.parametrize("holdout_fraction", [0.0, 0.3])
def test_candidates_in_one_pass_equal_separate_trainings_bit_for_bit(tmp_path, data, holdout_fraction):
    data_uri = data[0]
    root = f"file://{tmp_path}/store"
    spec = spec_for(data_uri, n_components=[2, 3], n_init=2, prune_after=50, holdout_fraction=holdout_fraction)
    steps.train(root, "all", spec, engine="local", **QUIET)
    together = Training(open_store(root), "all")
    paths = candidate_trajectories(together)
    assert sorted(paths) == [0, 1, 2, 3]
    for index, (n_components, seed) in enumerate(spec.candidates()):
        alone_id = f"alone-{index}"
        alone_spec = spec_for(data_uri, n_components=n_components, seed=seed, holdout_fraction=holdout_fraction)
        steps.train(root, alone_id, alone_spec, engine="local", **QUIET)
        alone = Training(open_store(root), alone_id)
        expected = candidate_trajectories(alone)[0] if holdout_fraction else single_trajectory(alone)
        # The same parameters' bytes (content-addressed SHA-256) and log-likelihoods, iteration by iteration.
        assert paths[index] == expected
    last = together.record(together.latest())
    assert last["converged"] and all(e["status"] == "converged" for e in last["candidates"])
    best = last["best_candidate"]
    assert last["params_sha256"] == last["candidates"][best]["params_sha256"]


def test_pruning_stops_all_but_the_best_and_never_changes_a_survivor(tmp_path, data):
    data_uri = data[0]
    root = f"file://{tmp_path}/store"
    spec = spec_for(data_uri, n_init=3, prune_after=2, keep=1, max_iter=5)
    steps.train(root, "pruned", spec, engine="local", **QUIET)
    training = Training(open_store(root), "pruned")
    second = training.record(2)["candidates"]
    order = sorted(range(3), key=lambda i: (-second[i]["log_likelihood"], i))
    assert [second[i]["status"] for i in order] == ["running", "pruned", "pruned"]
    paths = candidate_trajectories(training)
    assert [len(paths[i]) for i in order] == [6, 3, 3]  # iteration 0, and 1-5 / 1-2
    survivor = order[0]
    steps.train(root, "alone", spec_for(data_uri, seed=7 + survivor, max_iter=5), engine="local", **QUIET)
    assert paths[survivor] == single_trajectory(Training(open_store(root), "alone"))
    last = training.record(5)
    assert last["converged"] and last["best_candidate"] == survivor
    # Published: the best candidate's parameters.
    result = steps.finalize(root, "pruned")
    published = hmm.load(result["model"][len("file://") :])
    committed = training.load_params(5)
    np.testing.assert_array_equal(published.emissionprob_, committed.emissionprob_)


def test_a_k_sweep_without_a_hold_out_is_ranked_by_bic(tmp_path, data):
    root = f"file://{tmp_path}/store"
    spec = spec_for(data[0], n_components=[1, 2, 3], max_iter=3)
    steps.train(root, "sweep", spec, engine="local", **QUIET)
    last = Training(open_store(root), "sweep").record(3)
    bics = [entry["bic"] for entry in last["candidates"]]
    assert last["best_candidate"] == int(np.argmin(bics))
    report = open_store(root).read("trainings/sweep/model/3/report.md").decode()
    assert "## Candidates" in report and "| 2 | 3 | 7 | random | converged |" in report


# ------------------------------------------------------------------ hold-out and criteria


def write_string_id_data(directory, n_sequences=120, seed=3):
    """Categorical sequences with string ids in 2 files; returns (uri, sequences, ids)."""
    rng = np.random.default_rng(seed)
    sequences = [list(rng.integers(0, 4, size=rng.integers(2, 20))) for _ in range(n_sequences)]
    sequences[0] = [0, 1, 2, 3]
    ids = [f"user-{rng.integers(10**9)}-{i}" for i in range(n_sequences)]
    os.makedirs(directory, exist_ok=True)
    half = n_sequences // 2
    for part, rows in enumerate((range(half), range(half, n_sequences))):
        table = pa.table(
            {
                "uid": pa.array([ids[i] for i in rows], pa.string()),
                "sequence": pa.array([sequences[i] for i in rows], pa.list_(pa.int64())),
            }
        )
        pq.write_table(table, os.path.join(directory, f"part-{part}.parquet"), row_group_size=17)
    return f"file://{directory}", sequences, ids


@pytest.mark.parametrize("keyed_by", ["position", "id"])
def test_held_out_sequences_get_no_statistics_and_are_scored_apart(tmp_path, keyed_by):
    data_uri, sequences, ids = write_string_id_data(str(tmp_path / "data"))
    root = f"file://{tmp_path}/store"
    fraction = 0.25
    extra = {"id_col": "uid"} if keyed_by == "id" else {}
    spec = spec_for(data_uri, holdout_fraction=fraction, max_iter=2, **extra)
    steps.train(root, "h", spec, engine="local", **QUIET)
    training = Training(open_store(root), "h")
    keys = np.array(ids, dtype=object) if keyed_by == "id" else np.arange(len(sequences))
    held = holdout_mask(keys, fraction)
    assert 0 < held.sum() < len(sequences)
    train_X = np.concatenate([sequences[i] for i in np.flatnonzero(~held)])[:, None]
    train_lengths = [len(sequences[i]) for i in np.flatnonzero(~held)]
    held_X = np.concatenate([sequences[i] for i in np.flatnonzero(held)])[:, None]
    held_lengths = [len(sequences[i]) for i in np.flatnonzero(held)]
    for k in (1, 2):
        record = training.record(k)
        # Every sequence counts for the data checks; the held-out ones are named apart.
        assert record["n_sequences"] == len(sequences) and record["n_holdout_sequences"] == held.sum()
        entry = record["candidates"][0]
        before = training.load_params(k - 1)
        # The E-step ran on the sequences not held out only: the library on those gives the same update.
        library = copy.deepcopy(before)
        library.set_params(init_params="", n_iter=1)
        library.fit(train_X, train_lengths)
        np.testing.assert_allclose(training.load_params(k).emissionprob_, library.emissionprob_, rtol=1e-9)
        assert entry["log_likelihood"] == pytest.approx(before.score(train_X, train_lengths), rel=1e-10)
        assert entry["holdout_log_likelihood"] == pytest.approx(before.score(held_X, held_lengths), rel=1e-10)
        # AIC and BIC are the library's on the training data.
        assert entry["aic"] == pytest.approx(before.aic(train_X, train_lengths), rel=1e-10)
        assert entry["bic"] == pytest.approx(before.bic(train_X, train_lengths), rel=1e-10)


def test_positions_do_not_depend_on_how_files_are_cut_into_splits(tmp_path, monkeypatch):
    """Without an id column the key is the row's position in the data: files cut into runs of row
    groups (large files) hold out the same sequences."""
    from hmm.distributed import sources

    data_uri, _, _ = write_string_id_data(str(tmp_path / "data"))
    spec = spec_for(data_uri, holdout_fraction=0.3, n_init=2, max_iter=2)
    whole = f"file://{tmp_path}/whole"
    steps.train(whole, "h", spec, engine="local", **QUIET)
    monkeypatch.setattr(sources, "SPLIT_BYTES", 1)  # every row group a split of its own
    assert len(sources.ParquetSequences(data_uri, engine="local").splits()) > 2
    cut = f"file://{tmp_path}/cut"
    steps.train(cut, "h", spec, engine="local", **QUIET)
    # Other batches add the same numbers in another order: equal counts, equal scores to rounding.
    cut_records, whole_records = Training(open_store(cut), "h").records(), Training(open_store(whole), "h").records()
    for a, b in zip(cut_records[1:], whole_records[1:], strict=True):
        assert a["n_holdout_sequences"] == b["n_holdout_sequences"] > 0
        for x, y in zip(a["candidates"], b["candidates"], strict=True):
            assert x["holdout_log_likelihood"] == pytest.approx(y["holdout_log_likelihood"], rel=1e-12)
            assert x["log_likelihood"] == pytest.approx(y["log_likelihood"], rel=1e-12)


def test_hold_out_and_scores_are_identical_on_re_runs(tmp_path, data):
    spec = spec_for(data[0], n_init=2, holdout_fraction=0.2, max_iter=2)
    runs = []
    for name in ("a", "b"):
        root = f"file://{tmp_path}/{name}"
        steps.train(root, "h", spec, engine="local", **QUIET)
        runs.append(
            [
                {k: v for k, v in r.items() if k not in ("timings", "step", "committed_at")}
                for r in Training(open_store(root), "h").records()
            ]
        )
    assert runs[0] == runs[1]


# --------------------------------------------------------------------- both engines


@pytest.mark.spark
def test_candidates_and_hold_out_on_spark_equal_the_local_engine_and_separate_trainings(spark, tmp_path):
    data_uri, _, _ = write_categorical_parquet(str(tmp_path / "data"), n_sequences=200, files=3)
    spec = spec_for(data_uri, n_components=[2, 3], n_init=2, holdout_fraction=0.2, max_iter=3, prune_after=2)
    local_root, spark_root = f"file://{tmp_path}/local", f"file://{tmp_path}/spark"
    steps.train(local_root, "c", spec, engine="local", **QUIET)
    steps.train(spark_root, "c", spec, engine="spark", spark=spark, **QUIET)
    local, on_spark = Training(open_store(local_root), "c"), Training(open_store(spark_root), "c")
    strip = ("timings", "step", "committed_at", "params_key", "data")
    # Hold-out assignment, held-out scores, criteria, statuses and parameters: bit for bit.
    assert [{k: v for k, v in r.items() if k not in strip} for r in on_spark.records()] == [
        {k: v for k, v in r.items() if k not in strip} for r in local.records()
    ]
    # And each candidate equals a separate training with its seed, on Spark.
    paths = candidate_trajectories(on_spark)
    for index, (n_components, seed) in enumerate(spec.candidates()):
        alone_spec = spec_for(data_uri, n_components=n_components, seed=seed, holdout_fraction=0.2, max_iter=3)
        steps.train(spark_root, f"alone-{index}", alone_spec, engine="spark", spark=spark, **QUIET)
        alone = candidate_trajectories(Training(open_store(spark_root), f"alone-{index}"))[0]
        assert paths[index] == alone[: len(paths[index])]


# ------------------------------------------------------------ warm start and labels


def test_warm_start_relabels_the_published_model_to_the_reference(tmp_path):
    data_uri, _, _ = write_categorical_parquet(str(tmp_path / "week1"), n_sequences=300, files=2, seed=1)
    root = f"file://{tmp_path}/store"
    base = {"tol": 1e-6, "max_iter": 40, "seed": 11}
    # Every week runs the same spec but its data: week 1 finds no earlier model and starts at random.
    base.update(init_from="latest", n_init=3, holdout_fraction=0.2)
    steps.train(root, "week1", spec_for(data_uri, **base), engine="local", **QUIET)
    assert Training(open_store(root), "week1").record(0)["init_from"] is None
    reference_marker = Training(open_store(root), "week1").published()
    reference = hmm.load(reference_marker["model"][len("file://") :])
    # Week 2: new data from the same model; "latest" finds week 1 (same spec but its data).
    data2, _, _ = write_categorical_parquet(str(tmp_path / "week2"), n_sequences=300, files=2, seed=2)
    spec = spec_for(data2, **base)
    result = steps.train(root, "week2", spec, engine="local", **QUIET)
    training = Training(open_store(root), "week2")
    pin = training.record(0)["init_from"]
    assert pin["training_id"] == "week1" and pin["iteration"] == reference_marker["iteration"]
    assert training.record(0)["candidates"][0]["warm_start"]
    last = training.record(training.latest())
    best = training.load_params(training.latest())
    published = hmm.load(result["model"][len("file://") :])
    # The published model is the best candidate with its states renumbered to the reference's ...
    expected = relabel(copy.deepcopy(best), reference)
    np.testing.assert_array_equal(published.emissionprob_, np.asarray(best.emissionprob_)[expected.order])
    # ... so the best assignment of its states to the reference's is the identity.
    assert relabel(copy.deepcopy(published), reference).order == [0, 1, 2]
    report = open_store(root).read(f"trainings/week2/model/{last['iteration']}/report.md").decode()
    assert "## State labels" in report and f"= {expected.order}" in report
    assert "| warm |" in report


def publish_model(root, training_id, model):
    """A model published as ``training_id`` as finalize lays it out (model.npz and its PUBLISHED marker)."""
    from hmm.core import persistence

    store = open_store(root)
    data = persistence.dumps(model)
    key = f"trainings/{training_id}/model/1/model.npz"
    store.create_if_absent(key, data)
    marker = {"iteration": 1, "files": {"model.npz": hashlib.sha256(data).hexdigest()}, "published_at": "2026-11-22"}
    store.create_if_absent(f"trainings/{training_id}/model/1/PUBLISHED", json.dumps(marker).encode())


def test_relabelled_model_matches_the_truth_on_permuted_label_data(tmp_path):
    """The reference is the generating model with its states permuted; the published model follows its labels."""
    seed = 4
    data_uri, _, _ = write_categorical_parquet(str(tmp_path / "d"), n_sequences=600, files=2, seed=seed)
    # write_categorical_parquet's generating model (its first draw is the emission matrix).
    emission = np.random.default_rng(seed).dirichlet(np.full(6, 0.5), size=3)
    transmat = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    permutation = [2, 0, 1]
    truth = hmm.CategoricalHMM(3, n_features=6)
    truth.startprob_ = np.full(3, 1 / 3)
    truth.transmat_ = transmat[np.ix_(permutation, permutation)]
    truth.emissionprob_ = emission[permutation]
    root = f"file://{tmp_path}/store"
    publish_model(root, "truth", truth)
    # Candidate 0 starts from the reference, 3 challengers from random starts; whichever wins, the
    # published model's state i is the reference's state i.
    spec = spec_for(data_uri, init_from="truth", n_init=4, tol=1e-6, max_iter=80, seed=3)
    result = steps.train(root, "new", spec, engine="local", **QUIET)
    published = hmm.load(result["model"][len("file://") :])
    np.testing.assert_allclose(published.emissionprob_, truth.emissionprob_, atol=0.05)
    np.testing.assert_allclose(published.transmat_, truth.transmat_, atol=0.1)
    marker = Training(open_store(root), "new").published()
    last = Training(open_store(root), "new").record(marker["iteration"])
    assert last["candidates"][0]["warm_start"] and len(last["candidates"]) == 4


@pytest.mark.parametrize(
    ("reference", "overrides", "message"),
    [
        (hmm.CategoricalHMM(3, n_features=4), {}, "its model has 4 symbols, the data has symbol 5"),
        (hmm.CategoricalHMM(3, n_features=6), {"n_components": [2, 4]}, "its model has 3 states, the spec trains"),
        (hmm.PoissonHMM(3), {}, "its model is a PoissonHMM, the spec trains a CategoricalHMM"),
    ],
    ids=["symbols", "states", "kind"],
)
def test_a_reference_that_cannot_start_the_training_is_refused_naming_init_from(
    capsys, tmp_path, data, reference, overrides, message
):
    rng = np.random.default_rng(0)
    reference.startprob_ = np.full(3, 1 / 3)
    reference.transmat_ = rng.dirichlet(np.ones(3), size=3)
    if isinstance(reference, hmm.CategoricalHMM):
        reference.emissionprob_ = rng.dirichlet(np.ones(reference.n_features), size=3)
    else:
        reference.lambdas_ = rng.uniform(1, 3, size=(3, 1))
    root = f"file://{tmp_path}/store"
    publish_model(root, "ref", reference)
    before = snapshot(root)
    spec = json.dumps(raw_spec(data[0], init_from="ref", **overrides))
    code = cli.main(["train", "--store", root, "--training-id", "t", "--engine", "local", "--spec", spec])
    err = capsys.readouterr().err
    assert code == 2 and "spec field 'init_from' is 'ref': " + message in err, err
    assert snapshot(root) == before


def test_a_tampered_candidate_is_exit_3_naming_its_object_and_nothing_committed(capsys, file_root, data):
    steps.init_training(file_root, "t", spec_for(data[0], n_init=2), engine="local")
    steps.em_iteration(file_root, "t", 1, engine="local")
    entry = Training(open_store(file_root), "t").record(1)["candidates"][1]
    path = os.path.join(file_root[len("file://") :], entry["params_key"])
    os.chmod(path, 0o644)
    with open(path, "r+b") as file:
        file.write(b"garbage")
    before = snapshot(file_root)
    argv = ["iterate", "--store", file_root, "--training-id", "t", "--engine", "local", "--iteration", "2"]
    code = cli.main(argv, own_process=False)
    err = capsys.readouterr().err
    assert code == 3 and "parameters of iteration 1 (candidate 1) of training 't' are corrupt" in err, err
    assert snapshot(file_root) == before


def test_a_commit_with_a_garbled_candidate_is_exit_3(capsys, file_root, data):
    steps.init_training(file_root, "t", spec_for(data[0], n_init=2), engine="local")
    steps.em_iteration(file_root, "t", 1, engine="local")
    path = os.path.join(file_root[len("file://") :], "trainings/t/iterations/1/COMMIT")
    with open(path) as file:
        record = json.load(file)
    record["candidates"][0]["status"] = "winning"
    os.chmod(path, 0o644)
    with open(path, "w") as file:
        json.dump(record, file)
    argv = ["iterate", "--store", file_root, "--training-id", "t", "--engine", "local", "--iteration", "2"]
    code = cli.main(argv, own_process=False)
    err = capsys.readouterr().err
    assert code == 3 and "is corrupt: candidate 0 has status 'winning'" in err, err

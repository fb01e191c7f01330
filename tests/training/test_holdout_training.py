"""Hold-out in trainings (issue 13, the rest): held-out sequences stay out of the init sample, run
a forward pass only, and may stop a candidate early; a relabel test that the identity cannot pass."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hmm.core.holdout import holdout_mask
from hmm.distributed.sources import ParquetSequences
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store

QUIET = {"progress": lambda line: None}


def write_gaussian_data(directory, n_sequences=240, files=3, seed=5):
    """Scalar-frame sequences from two well-apart Gaussian states, with int ids; returns (uri, sequences, ids)."""
    rng = np.random.default_rng(seed)
    sequences, ids = [], []
    for i in range(n_sequences):
        states = np.cumsum(rng.random(rng.integers(3, 25)) < 0.2) % 2
        sequences.append((np.where(states == 0, -2.0, 3.0) + rng.normal(size=len(states))).tolist())
        ids.append(int(rng.integers(10**12)) * 10 + i % 10)
    os.makedirs(directory, exist_ok=True)
    per_file = -(-n_sequences // files)
    for f in range(files):
        rows = range(f * per_file, min((f + 1) * per_file, n_sequences))
        table = pa.table(
            {
                "id": pa.array([ids[i] for i in rows], pa.int64()),
                "sequence": pa.array([sequences[i] for i in rows], pa.list_(pa.float64())),
            }
        )
        pq.write_table(table, os.path.join(directory, f"part-{f}.parquet"), row_group_size=19)
    return f"file://{directory}", sequences, ids


def gaussian_spec(data_uri, **overrides):
    raw = {"model": "gaussian", "n_components": 3, "data": data_uri, "tol": 0.0, "max_iter": 2, "seed": 3}
    raw.update(overrides)
    return TrainingSpec.from_dict(raw)


def flat(sequences):
    return np.concatenate(sequences)[:, None], np.concatenate([[0], np.cumsum([len(s) for s in sequences])])


# ------------------------------------------------------------ (e) init sample without held-out sequences


@pytest.mark.parametrize("keyed_by", ["id", "position"])
def test_the_init_sample_holds_no_held_out_sequence(tmp_path, keyed_by):
    data_uri, sequences, ids = write_gaussian_data(str(tmp_path / "data"))
    id_col = "id" if keyed_by == "id" else None
    keys = np.array(ids) if id_col else np.arange(len(sequences))
    held = holdout_mask(keys, 0.3)
    assert 0 < held.sum() < len(sequences)
    source = ParquetSequences(data_uri, "sequence", id_col, engine="local")
    model = gaussian_spec(data_uri).build_model()
    X, offsets = source.sample(model, holdout_fraction=0.3)
    expected_X, expected_offsets = flat([sequences[i] for i in np.flatnonzero(~held)])
    np.testing.assert_array_equal(offsets, expected_offsets)
    np.testing.assert_array_equal(np.asarray(X).reshape(-1, 1), expected_X)
    # At most n_sequences of them, still skipping the held-out ones.
    X, offsets = source.sample(model, n_sequences=10, holdout_fraction=0.3)
    np.testing.assert_array_equal(offsets, flat([sequences[i] for i in np.flatnonzero(~held)[:10]])[1])
    # Without a hold-out, the sample is what it always was: the first rows.
    X, offsets = source.sample(model, n_sequences=10)
    np.testing.assert_array_equal(offsets, flat(sequences[:10])[1])


def initial_means(root, training_id):
    training = Training(open_store(root), training_id)
    return training.record(0)["params_sha256"], np.asarray(training.load_params(0).means_)


@pytest.mark.spark
def test_a_training_with_a_hold_out_initialises_from_the_other_sequences_on_both_engines(spark, tmp_path):
    data_uri, sequences, ids = write_gaussian_data(str(tmp_path / "data"))
    spec = gaussian_spec(data_uri, id_col="id", holdout_fraction=0.3)
    local, on_spark = f"file://{tmp_path}/local", f"file://{tmp_path}/spark"
    steps.init_training(local, "h", spec, engine="local")
    steps.init_training(on_spark, "h", spec, engine="spark", spark=spark)
    local_digest, local_means = initial_means(local, "h")
    spark_digest, _ = initial_means(on_spark, "h")
    assert spark_digest == local_digest  # the same initial parameters' bytes on both engines
    # They are the library's initialisation from the sequences not held out ...
    held = holdout_mask(np.array(ids), 0.3)
    model = spec.build_model()
    model.initialize_from_sample(*flat([sequences[i] for i in np.flatnonzero(~held)]))
    np.testing.assert_array_equal(local_means, model.means_)
    # ... which is not the initialisation from every sequence (the test could fail).
    everything = spec.build_model()
    everything.initialize_from_sample(*flat(sequences))
    assert not np.array_equal(local_means, everything.means_)
    # And a re-run initialises identically.
    again = f"file://{tmp_path}/again"
    steps.init_training(again, "h", spec, engine="local")
    assert initial_means(again, "h")[0] == local_digest


# ------------------------------------------------------------ (g) held-out sequences: the forward pass only


def fitted_models():
    """One fitted model of each kind, and data of it with many lengths (lanes with and without padding)."""
    import hmm

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=157)
    models = [
        hmm.CategoricalHMM(4, n_iter=3, random_state=1),
        hmm.GaussianHMM(3, covariance_type="full", n_iter=3, random_state=1),
        hmm.GaussianHMM(5, covariance_type="diag", n_iter=3, random_state=1),
        hmm.PoissonHMM(3, n_iter=3, random_state=1),
        hmm.GMMHMM(2, n_mix=2, n_iter=3, random_state=1),
    ]
    for model in models:
        if isinstance(model, hmm.CategoricalHMM):
            X = rng.integers(0, 7, size=(lengths.sum(), 1))
        elif isinstance(model, hmm.PoissonHMM):
            X = rng.poisson(3.0, size=(lengths.sum(), 2))
        else:
            X = rng.normal(size=(lengths.sum(), 2)) * 3
        model.fit(X, lengths)
        yield model, X, lengths


def test_the_forward_pass_alone_gives_the_e_steps_log_likelihood_bit_for_bit():
    for model, X, lengths in fitted_models():
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        observations = model.check_batch(X, offsets)
        expected = model.batch_statistics(observations, offsets).log_likelihood
        assert model.batch_log_likelihood(observations, offsets) == expected, type(model).__name__


# ------------------------------------------------------------ (b) early stop on the held-out score

#: Many states on little data: the held-out score rises, peaks (iterations 7 and 11 for the two
#: candidates) and falls while the training log-likelihood still climbs.
OVERFIT = {
    "model": "categorical",
    "n_components": 10,
    "id_col": "id",
    "tol": 0.0,
    "max_iter": 40,
    "seed": 3,
    "n_init": 2,
    "prune_after": 100,
    "holdout_fraction": 0.3,
}
PATIENCE = 3
STRIP = ("timings", "step", "committed_at")


@pytest.fixture
def overfit_data(tmp_path):
    from tests.conftest import write_categorical_parquet

    return write_categorical_parquet(str(tmp_path / "overfit"), n_sequences=40, files=2, seed=1)[0]


def comparable(training):
    return [{k: v for k, v in r.items() if k not in STRIP} for r in training.records()]


def expected_stops(full: Training, patience: int) -> dict[int, tuple[int, int]]:
    """Per candidate of a training without patience: (the iteration it stops at, the iteration of its best
    held-out parameters), by the rule written out again here: commit k scores iteration k - 1's parameters."""
    stops = {}
    records = full.records()
    for index in range(len(records[0]["candidates"])):
        best_score, best_at = -np.inf, None
        for record in records[1:]:
            k, score = record["iteration"], record["candidates"][index]["holdout_log_likelihood"]
            if score > best_score:
                best_score, best_at = score, k - 1
            if (k - 1) - best_at >= patience:
                stops[index] = (k, best_at)
                break
    return stops


def test_a_candidate_stops_when_its_held_out_score_turns_down_and_stands_for_its_best_parameters(
    tmp_path, overfit_data
):
    import hmm

    root = f"file://{tmp_path}/store"
    steps.train(root, "full", TrainingSpec.from_dict({**OVERFIT, "data": overfit_data}), engine="local", **QUIET)
    spec = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data, "holdout_patience": PATIENCE})
    result = steps.train(root, "early", spec, engine="local", **QUIET)
    full, early = Training(open_store(root), "full"), Training(open_store(root), "early")
    stops = expected_stops(full, PATIENCE)
    assert sorted(stops) == [0, 1] and all(stop < OVERFIT["max_iter"] for stop, _ in stops.values())
    # The training ends when the last candidate stops, well before max_iter.
    last = early.record(early.latest())
    assert early.latest() == max(stop for stop, _ in stops.values()) and last["converged"]
    for index, (stop, best_at) in stops.items():
        for record in early.records()[1:]:
            entry, same = record["candidates"][index], full.record(record["iteration"])["candidates"][index]
            if record["iteration"] < stop:  # until it stops, the candidate is the one without patience
                assert entry["status"] == "running"
                assert (entry["params_sha256"], entry["holdout_log_likelihood"]) == (
                    same["params_sha256"],
                    same["holdout_log_likelihood"],
                )
            else:  # then it is stopped, for its best held-out parameters (committed at best_at)
                assert entry["status"] == "stopped", (index, record["iteration"])
                assert f"not above iteration {best_at}'s for {PATIENCE} iteration(s)" in entry["stop_reason"]
                best = full.record(best_at)["candidates"][index]
                assert entry["params_sha256"] == best["params_sha256"]
                assert entry["best_holdout"]["iteration"] == best_at
                assert entry["best_holdout"]["holdout_log_likelihood"] == max(
                    full.record(k)["candidates"][index]["holdout_log_likelihood"] for k in range(1, stop + 1)
                )
    # Ranked by their best held-out scores; the published model is the winner's best parameters.
    best_scores = {i: last["candidates"][i]["best_holdout"]["holdout_log_likelihood"] for i in (0, 1)}
    winner = max(best_scores, key=lambda i: (best_scores[i], -i))
    assert last["best_candidate"] == winner
    stop, best_at = stops[winner]
    assert last["params_sha256"] == full.record(best_at)["candidates"][winner]["params_sha256"]
    published = hmm.load(result["model"][len("file://") :])
    winner_best = early.load_stored(
        last["candidates"][winner]["params_key"], last["candidates"][winner]["params_sha256"], "best"
    )
    np.testing.assert_array_equal(published.emissionprob_, winner_best.emissionprob_)
    report = open_store(root).read(f"trainings/early/model/{early.latest()}/report.md").decode()
    assert "stopped: held-out log-likelihood not above iteration" in report


@pytest.mark.spark
def test_early_stop_is_the_same_on_spark(spark, tmp_path, overfit_data):
    spec = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data, "holdout_patience": PATIENCE})
    local, on_spark = f"file://{tmp_path}/local", f"file://{tmp_path}/spark"
    steps.train(local, "e", spec, engine="local", **QUIET)
    steps.train(on_spark, "e", spec, engine="spark", spark=spark, **QUIET)
    strip = (*STRIP, "params_key", "data")

    def records(root):
        return [{k: v for k, v in r.items() if k not in strip} for r in Training(open_store(root), "e").records()]

    def drop_keys(value):  # params keys name the store's layout, not what was computed
        if isinstance(value, dict):
            return {k: drop_keys(v) for k, v in value.items() if k != "params_key"}
        if isinstance(value, list):
            return [drop_keys(v) for v in value]
        return value

    spark_records, local_records = drop_keys(records(on_spark)), drop_keys(records(local))
    assert spark_records == local_records
    assert {e["status"] for e in local_records[-1]["candidates"]} == {"stopped"}


def test_a_killed_iteration_resumes_to_the_same_early_stop(tmp_path, overfit_data):
    """SIGKILL the step that stops the first candidate before its COMMIT; the re-run and the rest equal a run
    that was never killed (every record but timings, bit for bit)."""
    from tests.jobs.test_jobs import job

    spec = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data, "holdout_patience": PATIENCE})
    whole, killed = f"file://{tmp_path}/whole", f"file://{tmp_path}/killed"
    steps.train(whole, "e", spec, engine="local", **QUIET)
    uninterrupted = Training(open_store(whole), "e")
    first_stop = min(
        r["iteration"] for r in uninterrupted.records() if any(e["status"] == "stopped" for e in r["candidates"])
    )
    steps.init_training(killed, "e", spec, engine="local")
    for k in range(1, first_stop):
        steps.em_iteration(killed, "e", k, engine="local")
    common = ["--store", killed, "--training-id", "e", "--iteration", str(first_stop)]
    crash = job("em_iteration", *common, fault="before-commit")
    assert crash.returncode == -9, crash.stderr
    assert first_stop not in Training(open_store(killed), "e").committed()
    steps.train(killed, "e", engine="local", **QUIET)
    assert comparable(Training(open_store(killed), "e")) == comparable(uninterrupted)


BAD_PATIENCE = [
    ({"holdout_patience": 0}, "spec field 'holdout_patience' is 0; it must be an integer in [1, 100000]"),
    ({"holdout_patience": -2}, "spec field 'holdout_patience' is -2; it must be an integer in [1, 100000]"),
    ({"holdout_patience": True}, "spec field 'holdout_patience' is True; it must be an integer in [1, 100000]"),
    ({"holdout_patience": 2.0}, "spec field 'holdout_patience' is 2.0; it must be an integer in [1, 100000]"),
    ({"holdout_patience": float("nan")}, "spec field 'holdout_patience' is nan; it must be an integer"),
    ({"holdout_patience": 100_001}, "spec field 'holdout_patience' is 100001; it must be an integer in [1, 100000]"),
    ({"holdout_patience": 10**40}, "spec field 'holdout_patience' is 10000000000000000000000000000000000000000;"),
    ({"holdout_patience": "3"}, "spec field 'holdout_patience' is '3'; it must be an integer in [1, 100000]"),
    (
        {"holdout_patience": 3, "holdout_fraction": 0},
        "spec field 'holdout_patience' is 3; it stops candidates on the held-out score, so it needs "
        "holdout_fraction > 0",
    ),
    ({"holdout_patience": 3, "holdout_fraction": None}, "spec field 'holdout_fraction' is None"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_PATIENCE, ids=lambda v: repr(v)[:40])
def test_a_bad_holdout_patience_is_one_line_exit_2_and_nothing_written(
    capsys, tmp_path, overfit_data, overrides, message
):
    import json

    from hmm.orchestration.decisions import check_params
    from hmm.training import cli
    from hmm.training.spec import InvalidSpecError

    root = f"file://{tmp_path}/store"
    raw = {**OVERFIT, "data": overfit_data, **overrides}
    with pytest.raises(InvalidSpecError) as refused:
        TrainingSpec.from_dict(raw)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    # The DAG's validate task refuses it alike (its Params are the same schema).
    with pytest.raises(InvalidSpecError) as refused:
        check_params({**raw, "store": root})
    assert message in str(refused.value)
    if any(isinstance(v, float) and v != v for v in raw.values()):
        text = json.dumps(raw)  # NaN: JSON has no such number, the spec reader refuses it first
        message = "spec is not valid JSON: NaN is not a number JSON allows"
    else:
        text = json.dumps(raw)
    for command in ("train", "validate"):
        store_args = ["--store", root, "--training-id", "t"] if command == "train" else []
        code = cli.main([command, *store_args, "--engine", "local", "--spec", text], own_process=False)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not os.path.exists(str(tmp_path / "store"))


def test_a_spec_without_holdout_patience_keeps_its_digest_and_with_it_the_field_is_in_spec_json(overfit_data):
    plain = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data})
    assert plain.holdout_patience is None and b"holdout_patience" not in plain.to_json()
    explicit_none = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data, "holdout_patience": None})
    assert explicit_none.digest() == plain.digest()
    patient = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data, "holdout_patience": 4})
    assert patient.digest() != plain.digest() and b'"holdout_patience": 4' in patient.to_json()
    assert TrainingSpec.from_json(patient.to_json()) == patient


# ------------------------------------------------------------ (d) relabelling that the identity cannot pass


def test_the_published_model_is_relabelled_by_a_non_identity_permutation_to_the_reference(tmp_path):
    """The reference has the truth's emissions with states permuted, but forbids every transition
    (EM keeps zero transitions at zero), so the warm candidate cannot win; a random challenger finds
    the truth in its own state order, and only the right non-identity permutation maps it onto the
    reference's labels."""
    import json

    import hmm
    from tests.training.test_candidates import publish_model

    emission = np.full((3, 6), 0.025)
    emission[0, :2] = emission[1, 2:4] = emission[2, 4:] = 0.45
    transmat = np.array([[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.15, 0.8]])
    truth = hmm.CategoricalHMM(3, n_features=6)
    truth.startprob_, truth.transmat_, truth.emissionprob_ = np.array([0.5, 0.3, 0.2]), transmat, emission
    rng = np.random.RandomState(0)
    sequences = [truth.sample(int(rng.randint(10, 40)), random_state=rng)[0].ravel().tolist() for _ in range(400)]
    os.makedirs(tmp_path / "data")
    table = pa.table({"id": pa.array(range(400), pa.int64()), "sequence": pa.array(sequences, pa.list_(pa.int64()))})
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    permutation = [2, 0, 1]  # reference state i is true state permutation[i]
    reference = hmm.CategoricalHMM(3, n_features=6)
    reference.startprob_, reference.transmat_ = np.full(3, 1 / 3), np.eye(3)
    reference.emissionprob_ = emission[permutation]
    root = f"file://{tmp_path}/store"
    publish_model(root, "ref", reference)
    raw = {"model": "categorical", "n_components": 3, "data": f"file://{tmp_path}/data", "tol": 1e-4}
    spec = TrainingSpec.from_dict({**raw, "max_iter": 100, "seed": 3, "n_init": 4, "init_from": "ref"})
    result = steps.train(root, "new", spec, engine="local", **QUIET)
    training = Training(open_store(root), "new")
    last = training.record(training.latest())
    assert last["candidates"][0]["warm_start"] and last["best_candidate"] != 0
    # The winner as trained (before relabelling): its state i is the true state nearest in emissions.
    winner = training.load_params(training.latest())
    found = [int(np.argmin(np.abs(emission - row).sum(axis=1))) for row in winner.emissionprob_]
    assert sorted(found) == [0, 1, 2]
    expected_order = [found.index(state) for state in permutation]
    assert expected_order != [0, 1, 2]
    report = json.loads(open_store(root).read(f"trainings/new/model/{training.latest()}/report.json"))
    assert [row["was"] for row in report["relabelling"]] == expected_order
    # The published model is the truth in the reference's labels: within 0.05 (400 sequences, ~10k
    # frames: an emission probability's sampling error is about 0.01, a transition's about 0.005).
    published = hmm.load(result["model"][len("file://") :])
    np.testing.assert_allclose(published.emissionprob_, emission[permutation], atol=0.05)
    np.testing.assert_allclose(published.transmat_, transmat[np.ix_(permutation, permutation)], atol=0.05)


# ------------------------------------------------------------ (f) "latest" from the setup's index


def weekly_spec(data_uri, **overrides):
    raw = {"model": "categorical", "n_components": 3, "data": data_uri, "tol": 0.0, "max_iter": 2, "seed": 5}
    return TrainingSpec.from_dict({**raw, "init_from": "latest", **overrides})


@pytest.fixture
def weeks(tmp_path):
    from tests.conftest import write_categorical_parquet

    return [write_categorical_parquet(str(tmp_path / f"week{i}"), n_sequences=60, files=1, seed=i)[0] for i in (1, 2)]


def index_entries(root, spec):
    prefix = f"{steps.SETUPS_PREFIX}{steps.setup_digest(spec)}/"
    store = open_store(root)
    return {key[len(prefix) :]: __import__("json").loads(store.read(key)) for key in store.list(prefix)}


def test_publishing_indexes_the_model_by_setup_and_latest_lists_only_that_index(store_root, weeks, monkeypatch):
    week1 = weekly_spec(weeks[0])
    published = steps.train(store_root, "week1", week1, engine="local", **QUIET)
    entries = index_entries(store_root, week1)
    assert len(entries) == 1
    ((name, entry),) = entries.items()
    assert name.endswith("-week1.json") and name.startswith(published["published_at"][:4])
    assert entry == {
        "training_id": "week1",
        "iteration": published["iteration"],
        "model_sha256": published["files"]["model.npz"],
        "spec_sha256": week1.digest(),
        "published_at": published["published_at"],
    }
    # The setup leaves out data and init_from; any other field makes another setup.
    assert steps.setup_digest(weekly_spec(weeks[1], init_from=None)) == steps.setup_digest(week1)
    assert steps.setup_digest(weekly_spec(weeks[1], seed=6)) != steps.setup_digest(week1)
    # A re-run of finalize creates nothing new.
    steps.finalize(store_root, "week1")
    assert index_entries(store_root, week1) == entries
    # "latest" lists the setup's index only, never all of trainings/.
    from hmm.training import store as store_module

    listed = []
    original = store_module.FileStore.list, store_module.S3Store.list

    def recording(kind):
        def list_(self, prefix):
            listed.append(prefix)
            return original[kind](self, prefix)

        return list_

    monkeypatch.setattr(store_module.FileStore, "list", recording(0))
    monkeypatch.setattr(store_module.S3Store, "list", recording(1))
    steps.init_training(store_root, "week2", weekly_spec(weeks[1]), engine="local")
    assert Training(open_store(store_root), "week2").record(0)["init_from"]["training_id"] == "week1"
    assert "trainings/" not in listed and f"{steps.SETUPS_PREFIX}{steps.setup_digest(week1)}/" in listed


def test_a_model_published_before_the_index_is_found_by_listing(tmp_path, weeks):
    root = f"file://{tmp_path}/store"
    week1 = weekly_spec(weeks[0])
    steps.train(root, "week1", week1, engine="local", **QUIET)
    for name in index_entries(root, week1):  # as a store written before the index
        path = tmp_path / "store" / steps.SETUPS_PREFIX / steps.setup_digest(week1) / name
        os.chmod(path.parent, 0o755)
        path.unlink()
    assert index_entries(root, week1) == {}
    steps.init_training(root, "week2", weekly_spec(weeks[1]), engine="local")
    assert Training(open_store(root), "week2").record(0)["init_from"]["training_id"] == "week1"


def test_two_trainings_publishing_at_the_same_moment_both_land_and_latest_picks_one_deterministically(
    tmp_path, weeks, monkeypatch
):
    root = f"file://{tmp_path}/store"
    spec = weekly_spec(weeks[0])
    monkeypatch.setattr(steps, "_now", lambda: "2026-11-30T00:00:00.000+00:00")
    for training_id in ("week-b", "week-a"):
        steps.train(root, training_id, spec, engine="local", **QUIET)
    assert sorted(index_entries(root, spec)) == [
        "20261130T000000.000Z-week-a.json",
        "20261130T000000.000Z-week-b.json",
    ]
    # Ties on published_at go to the greater training id, on every call.
    for _ in range(2):
        assert steps.latest_published(Training(open_store(root), "next"), weekly_spec(weeks[1])).id == "week-b"
    # A training never picks itself.
    assert steps.latest_published(Training(open_store(root), "week-b"), spec).id == "week-a"


# ------------------------------------------------------------ init_from checked by validate


def test_validate_refuses_an_init_from_naming_no_published_model_with_exit_2_and_writes_nothing(
    capsys, tmp_path, weeks
):
    import json

    from hmm.training import cli

    root = f"file://{tmp_path}/store"
    steps.train(root, "week1", weekly_spec(weeks[0], init_from=None), engine="local", **QUIET)
    steps.init_training(root, "unpublished", weekly_spec(weeks[0], init_from=None, seed=9), engine="local")
    before = {key: open_store(root).read(key) for key in open_store(root).list("")}

    def validate(init_from, *store):
        spec = json.dumps({**weekly_spec(weeks[1]).definition(), "init_from": init_from})
        code = cli.main(["validate", *store, "--engine", "local", "--spec", spec], own_process=False)
        return code, capsys.readouterr()

    for name in ("nosuch", "unpublished"):
        code, out = validate(name, "--store", root)
        expected = f"hmm-em validate: error: spec field 'init_from' is '{name}': the store {root}/ has no other"
        assert code == 2 and out.err.count("\n") == 1 and out.err.startswith(expected), out.err
    code, out = validate("nosuch")
    assert code == 2 and "spec field 'init_from' is 'nosuch': give --store, the store that training is in" in out.err
    code, out = validate("week1", "--store", root)
    assert code == 0 and out.out.startswith("valid: 60 sequences"), out
    code, out = validate("latest")  # none found is a first run: nothing to check
    assert code == 0, out.err
    assert {key: open_store(root).read(key) for key in open_store(root).list("")} == before


def test_the_dag_logs_why_a_training_with_stopped_candidates_ended(tmp_path, overfit_data):
    from hmm.orchestration.decisions import stop_reason

    spec = TrainingSpec.from_dict({**OVERFIT, "data": overfit_data, "holdout_patience": PATIENCE})
    record = {"iteration": 12, "improvement": 0.5, "candidates": [{"index": 0, "status": "stopped"}]}
    assert stop_reason(record, spec) == (
        "no candidate runs; candidate(s) [0] stopped early on the held-out score (holdout_patience)"
    )
    record["candidates"][0]["status"] = "converged"
    assert stop_reason(record, spec) == "log-likelihood gain 0.5 below tol=0.0"

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

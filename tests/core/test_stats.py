import numpy as np
import pytest

import hmm
from hmm.core.stats import SufficientStats


def make_stats(seed):
    rng = np.random.default_rng(seed)
    return SufficientStats(
        start=rng.random(3),
        trans=rng.random((3, 3)),
        emission={"obs": rng.random((3, 4))},
        log_likelihood=float(rng.normal()),
        n_sequences=int(rng.integers(1, 9)),
        n_observations=int(rng.integers(10, 99)),
    )


def test_addition_merges_every_field():
    a, b = make_stats(1), make_stats(2)
    total = a + b
    np.testing.assert_array_equal(total.start, a.start + b.start)
    np.testing.assert_array_equal(total.trans, a.trans + b.trans)
    np.testing.assert_array_equal(total["obs"], a["obs"] + b["obs"])
    assert total.log_likelihood == a.log_likelihood + b.log_likelihood
    assert total.n_sequences == a.n_sequences + b.n_sequences
    assert total.n_observations == a.n_observations + b.n_observations


def test_bytes_round_trip_is_lossless():
    a = make_stats(3)
    a.log_likelihood = -1234.5678901234567
    b = SufficientStats.from_bytes(a.to_bytes())
    assert b.log_likelihood == a.log_likelihood
    for x, y in ((a.start, b.start), (a.trans, b.trans), (a["obs"], b["obs"])):
        assert x.tobytes() == y.tobytes()
    assert (b.n_sequences, b.n_observations) == (a.n_sequences, a.n_observations)


def test_statistics_of_halves_add_up_to_the_whole():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 5, size=(300, 1))
    model = hmm.CategoricalHMM(3, random_state=0, n_iter=1).fit(X, [100, 100, 100])
    observations, offsets = model._prepare(X, [100, 100, 100])
    whole = model._batch_statistics(observations, offsets)
    halves = model._batch_statistics(observations[:100], offsets[:2]) + model._batch_statistics(
        observations[100:], offsets[1:] - 100, first_sequence=1
    )
    np.testing.assert_allclose(halves.trans, whole.trans, rtol=1e-12)
    np.testing.assert_allclose(halves["obs"], whole["obs"], rtol=1e-12)
    assert halves.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)
    assert halves.n_sequences == 3 and halves.n_observations == 300


def test_adding_different_models_is_refused():
    other = SufficientStats.zeros(3, {"post": np.zeros(3)})
    with pytest.raises(ValueError, match="cannot add statistics of different models"):
        make_stats(1) + other


def test_garbage_bytes_are_refused():
    with pytest.raises(ValueError, match="bad magic bytes"):
        SufficientStats.from_bytes(b"not stats")

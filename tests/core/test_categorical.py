"""CategoricalHMM against hmmlearn 0.3.3, the oracle."""

import numpy as np
import pytest
from hmmlearn import hmm as oracle

import hmm

RTOL = 1e-6


def sample_data(seed=0, n_sequences=60, n_features=6):
    """Symbols drawn from a known 3-state model, ragged lengths incl. length 1."""
    rng = np.random.default_rng(seed)
    source = oracle.CategoricalHMM(3, n_features=n_features, random_state=seed)
    source.startprob_ = np.array([0.6, 0.3, 0.1])
    source.transmat_ = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    source.emissionprob_ = rng.dirichlet(np.full(n_features, 0.5), size=3)
    lengths = rng.integers(1, 40, size=n_sequences)
    lengths[:3] = 1
    X, _ = source.sample(int(lengths.sum()), random_state=seed)
    return X, lengths


def start_params(n_components, n_features, seed):
    rng = np.random.default_rng(seed)
    return {
        "startprob_": rng.dirichlet(np.ones(n_components)),
        "transmat_": rng.dirichlet(np.ones(n_components), size=n_components),
        "emissionprob_": rng.dirichlet(np.ones(n_features), size=n_components),
    }


def set_params(model, params):
    for name, value in params.items():
        setattr(model, name, value.copy())
    return model


PRIORS = [
    {},
    {"startprob_prior": 2.0, "transmat_prior": np.full((4, 4), 1.5), "emissionprob_prior": 1.3},
]


@pytest.mark.parametrize("priors", PRIORS)
@pytest.mark.parametrize("implementation", ["log", "scaling"])
def test_parameters_match_after_every_iteration(priors, implementation):
    X, lengths = sample_data()
    params = start_params(4, 6, seed=1)
    settings = dict(n_iter=1, init_params="", implementation=implementation, **priors)
    ours = set_params(hmm.CategoricalHMM(4, n_features=6, **settings), params)
    theirs = set_params(oracle.CategoricalHMM(4, n_features=6, **settings), params)
    for _ in range(8):
        ours.fit(X, lengths)
        theirs.fit(X, lengths)
        for name in params:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=RTOL, atol=1e-12)
        assert ours.monitor_.history[-1] == pytest.approx(theirs.monitor_.history[-1], rel=1e-9)


def test_random_initialisation_and_full_fit_match():
    X, lengths = sample_data(seed=3)
    ours = hmm.CategoricalHMM(4, random_state=7, n_iter=20, tol=1e-4).fit(X, lengths)
    theirs = oracle.CategoricalHMM(4, random_state=7, n_iter=20, tol=1e-4).fit(X, lengths)
    np.testing.assert_allclose(list(ours.monitor_.history), list(theirs.monitor_.history), rtol=RTOL)
    assert ours.monitor_.iter == theirs.monitor_.iter
    assert ours.monitor_.converged == theirs.monitor_.converged
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=RTOL, atol=1e-12)
    assert ours.n_features == theirs.n_features


def test_params_letters_keep_parameters_fixed():
    X, lengths = sample_data(seed=4)
    params = start_params(3, 6, seed=2)
    ours = set_params(hmm.CategoricalHMM(3, n_features=6, params="e", init_params="", n_iter=3), params).fit(X, lengths)
    theirs = set_params(oracle.CategoricalHMM(3, n_features=6, params="e", init_params="", n_iter=3), params)
    theirs.fit(X, lengths)
    np.testing.assert_array_equal(ours.startprob_, params["startprob_"])
    np.testing.assert_array_equal(ours.transmat_, params["transmat_"])
    np.testing.assert_allclose(ours.emissionprob_, theirs.emissionprob_, rtol=RTOL)


def test_left_right_zeros_stay_zero():
    X, lengths = sample_data(seed=5)
    params = start_params(3, 6, seed=3)
    params["transmat_"] = np.array([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4], [0.0, 0.0, 1.0]])
    params["startprob_"] = np.array([1.0, 0.0, 0.0])
    ours = set_params(hmm.CategoricalHMM(3, n_features=6, init_params="", n_iter=5), params).fit(X, lengths)
    theirs = set_params(oracle.CategoricalHMM(3, n_features=6, init_params="", n_iter=5), params).fit(X, lengths)
    assert ours.transmat_[1, 0] == 0 and ours.transmat_[2, 1] == 0 and ours.startprob_[2] == 0
    np.testing.assert_allclose(ours.transmat_, theirs.transmat_, rtol=RTOL, atol=1e-12)


def test_inference_matches_with_the_same_parameters():
    X, lengths = sample_data(seed=6)
    theirs = oracle.CategoricalHMM(4, random_state=0, n_iter=5).fit(X, lengths)
    ours = set_params(
        hmm.CategoricalHMM(4, n_features=theirs.n_features),
        {n: getattr(theirs, n) for n in ("startprob_", "transmat_", "emissionprob_")},
    )
    assert ours.score(X, lengths) == pytest.approx(theirs.score(X, lengths), rel=1e-12)
    log_prob, posteriors = ours.score_samples(X, lengths)
    their_log_prob, their_posteriors = theirs.score_samples(X, lengths)
    assert log_prob == pytest.approx(their_log_prob, rel=1e-12)
    np.testing.assert_allclose(posteriors, their_posteriors, rtol=1e-9, atol=1e-12)
    for algorithm in ("viterbi", "map"):
        log_prob, states = ours.decode(X, lengths, algorithm=algorithm)
        their_log_prob, their_states = theirs.decode(X, lengths, algorithm=algorithm)
        np.testing.assert_array_equal(states, their_states)
        assert log_prob == pytest.approx(their_log_prob, rel=1e-12)
    np.testing.assert_array_equal(ours.predict(X, lengths), theirs.predict(X, lengths))
    np.testing.assert_allclose(ours.predict_proba(X, lengths), theirs.predict_proba(X, lengths), atol=1e-12)
    assert ours.aic(X, lengths) == pytest.approx(theirs.aic(X, lengths), rel=1e-12)
    assert ours.bic(X, lengths) == pytest.approx(theirs.bic(X, lengths), rel=1e-12)
    np.testing.assert_allclose(ours.get_stationary_distribution(), theirs.get_stationary_distribution(), atol=1e-12)


def test_viterbi_ties_break_like_hmmlearn():
    # Uniform parameters: every path ties; hmmlearn takes the first maximum at
    # the end and the last maximum while backtracking.
    params = {
        "startprob_": np.full(3, 1 / 3),
        "transmat_": np.full((3, 3), 1 / 3),
        "emissionprob_": np.full((3, 2), 0.5),
    }
    X = np.array([[0], [1], [0], [1]])
    ours = set_params(hmm.CategoricalHMM(3, n_features=2), params)
    theirs = set_params(oracle.CategoricalHMM(3, n_features=2), params)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_sample_matches():
    params = start_params(3, 5, seed=9)
    ours = set_params(hmm.CategoricalHMM(3, n_features=5), params)
    theirs = set_params(oracle.CategoricalHMM(3, n_features=5), params)
    for kwargs in ({}, {"currstate": 2}):
        X, states = ours.sample(50, random_state=11, **kwargs)
        their_X, their_states = theirs.sample(50, random_state=11, **kwargs)
        np.testing.assert_array_equal(X, their_X)
        np.testing.assert_array_equal(states, their_states)


def test_fit_without_lengths_is_one_sequence():
    X, _lengths = sample_data(seed=8)
    ours = hmm.CategoricalHMM(3, random_state=1, n_iter=4).fit(X)
    theirs = oracle.CategoricalHMM(3, random_state=1, n_iter=4).fit(X)
    np.testing.assert_allclose(ours.emissionprob_, theirs.emissionprob_, rtol=RTOL)


def test_one_dimensional_symbols_are_accepted():
    X, lengths = sample_data(seed=2)
    two_d = hmm.CategoricalHMM(3, random_state=1, n_iter=3).fit(X, lengths)
    one_d = hmm.CategoricalHMM(3, random_state=1, n_iter=3).fit(X.ravel(), lengths)
    np.testing.assert_array_equal(two_d.emissionprob_, one_d.emissionprob_)


def test_uint8_symbols_are_read_as_they_are():
    """uint8 symbols (what the Spark split cache hands over) skip the widening to int64 and give the
    int64 symbols' results bit for bit; one outside [0, n_features) is named as before."""
    X, lengths = sample_data(seed=3)
    narrow = X.astype(np.uint8)
    wide = hmm.CategoricalHMM(3, random_state=1, n_iter=3).fit(X, lengths)
    read = hmm.CategoricalHMM(3, random_state=1, n_iter=3).fit(narrow, lengths)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_array_equal(getattr(read, name), getattr(wide, name))
    assert read.score(narrow, lengths) == wide.score(X, lengths)
    np.testing.assert_array_equal(read.predict(narrow, lengths), wide.predict(X, lengths))
    np.testing.assert_array_equal(read.predict_proba(narrow, lengths), wide.predict_proba(X, lengths))
    narrow[5] = wide.n_features
    with pytest.raises(ValueError, match=f"symbol {wide.n_features} is outside"):
        read.score(narrow, lengths)


def test_fit_reads_symbols_below_256_as_uint8():
    """fit narrows the checked int64 symbols to uint8 once (every E-step then reads an eighth of the
    bytes): bit for bit the fit on int64 symbols; an alphabet past 256 symbols stays int64."""

    class Wide(hmm.CategoricalHMM):
        def _fit_observations(self, X):
            return X

    X, lengths = sample_data(seed=6)
    narrow = hmm.CategoricalHMM(3, random_state=1, n_iter=3).fit(X, lengths)
    wide = Wide(3, random_state=1, n_iter=3).fit(X, lengths)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_array_equal(getattr(narrow, name), getattr(wide, name))
    assert list(narrow.monitor_.history) == list(wide.monitor_.history)
    assert narrow._fit_observations(np.array([0, 5])).dtype == np.uint8
    rng = np.random.default_rng(0)
    # the edge: 256 symbols, 255 among them, narrow without wrapping
    edge = np.concatenate([rng.integers(0, 256, size=298), [255, 0]])[:, None]
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_array_equal(
            getattr(hmm.CategoricalHMM(2, n_features=256, random_state=0, n_iter=2).fit(edge, [150, 150]), name),
            getattr(Wide(2, n_features=256, random_state=0, n_iter=2).fit(edge, [150, 150]), name),
        )
    many = rng.integers(0, 300, size=(500, 1))
    large = hmm.CategoricalHMM(2, random_state=0, n_iter=2).fit(many, [250, 250])
    assert large.emissionprob_.shape == (2, 300)
    assert large._fit_observations(many[:, 0]).dtype == np.int64


@pytest.mark.parametrize(
    ("X", "lengths", "message"),
    [
        (np.zeros((0, 1), np.uint8), None, "X has no samples"),
        (np.zeros((10, 2), np.uint8), None, r"X must have shape \(n_samples, 1\)"),
        (np.zeros((20, 1), np.uint8), [5, 5], "lengths sum to 10 but X has 20 samples"),
    ],
)
def test_uint8_symbols_are_checked_like_int64(X, lengths, message):
    with pytest.raises(ValueError, match=message):
        hmm.CategoricalHMM(2, n_iter=2, random_state=0).fit(X, lengths)


def test_read_only_and_strided_uint8_symbols():
    """Arrow hands the Spark E-step read-only arrays; a column of a 2-D array is strided."""
    X, lengths = sample_data(seed=4)
    want = hmm.CategoricalHMM(3, random_state=1, n_iter=2).fit(X, lengths).emissionprob_
    read_only = X.astype(np.uint8)
    read_only.setflags(write=False)
    strided = np.repeat(X.astype(np.uint8), 2, axis=1)[:, :1]
    for narrow in (read_only, strided):
        got = hmm.CategoricalHMM(3, random_state=1, n_iter=2).fit(narrow, lengths).emissionprob_
        np.testing.assert_array_equal(got, want)


def test_small_batches_give_the_same_result():
    """Statistics summed over many kernel batches equal one big batch."""
    X, lengths = sample_data(seed=10, n_sequences=200)
    params = start_params(3, 6, seed=4)
    whole = set_params(hmm.CategoricalHMM(3, n_features=6, init_params="", n_iter=3), params).fit(X, lengths)
    pieces = set_params(hmm.CategoricalHMM(3, n_features=6, init_params="", n_iter=3), params)
    # the fused E-step takes FUSED_BATCH_FACTOR x frames_per_batch frames per call: still many calls
    pieces.frames_per_batch = 3
    assert 10 * pieces._e_step_frames_per_batch() < len(X)
    pieces.fit(X, lengths)
    np.testing.assert_allclose(pieces.emissionprob_, whole.emissionprob_, rtol=1e-12)
    np.testing.assert_allclose(list(pieces.monitor_.history), list(whole.monitor_.history), rtol=1e-12)

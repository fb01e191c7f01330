"""GaussianHMM against hmmlearn 0.3.3, the oracle, for every covariance type."""

import numpy as np
import pytest
from hmmlearn import hmm as oracle
from threadpoolctl import threadpool_limits

import hmm
from hmm.core.sequences import InvalidParameterError, InvalidSequenceError
from tests.core.oracle import assert_same_inference

RTOL = 1e-6
ATOL = 1e-10
COVARIANCE_TYPES = ["spherical", "diag", "full", "tied"]
N_STATES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """k-means (OpenMP) and BLAS on one thread: busy-waiting worker threads
    slow the many small fits here down tenfold on a loaded machine."""
    with threadpool_limits(limits=1):
        yield


def sample_data(seed=0, n_sequences=30):
    """Vectors drawn from a known 3-state model, ragged lengths incl. length 1."""
    source = oracle.GaussianHMM(N_STATES, covariance_type="full")
    source.startprob_ = np.array([0.6, 0.3, 0.1])
    source.transmat_ = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    source.means_ = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 3.0]])
    source.covars_ = np.array([0.5 * np.eye(2), [[1.0, 0.3], [0.3, 0.8]], np.eye(2)])
    lengths = np.random.default_rng(seed).integers(1, 30, size=n_sequences)
    lengths[:3] = 1
    X, _ = source.sample(int(lengths.sum()), random_state=seed)
    return X, lengths


def start_covars(covariance_type, n_features, seed):
    rng = np.random.default_rng(seed)
    if covariance_type == "spherical":
        return rng.uniform(0.5, 2.0, size=N_STATES)
    if covariance_type == "diag":
        return rng.uniform(0.5, 2.0, size=(N_STATES, n_features))
    factors = rng.normal(size=(N_STATES, n_features, n_features))
    full = factors @ factors.transpose(0, 2, 1) + np.eye(n_features)
    return full if covariance_type == "full" else full[0]


def start_params(covariance_type, n_features=2, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "startprob_": rng.dirichlet(np.ones(N_STATES)),
        "transmat_": rng.dirichlet(np.ones(N_STATES), size=N_STATES),
        "means_": rng.normal(size=(N_STATES, n_features)) * 2,
        "covars_": start_covars(covariance_type, n_features, seed),
    }


def set_params(model, params):
    for name, value in params.items():
        setattr(model, name, np.array(value, copy=True))
    return model


def emission_params(model):
    return {
        "startprob_": model.startprob_,
        "transmat_": model.transmat_,
        "means_": model.means_,
        "covars_": model._covars_,
    }


def assert_same_params(ours, theirs):
    for name in ("startprob_", "transmat_", "means_", "_covars_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=RTOL, atol=ATOL, err_msg=name)


PRIORS = {
    "spherical": {"means_prior": 0.5, "means_weight": 2.0, "covars_prior": 0.3, "covars_weight": 3.0},
    "diag": {
        "means_prior": np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]]),
        "means_weight": np.array([[1.0], [2.0], [0.5]]),
        "covars_prior": 0.2,
        "covars_weight": 2.5,
    },
    "full": {"means_prior": 0.5, "means_weight": 1.5, "covars_prior": 0.4 * np.eye(2), "covars_weight": 4.0},
    "tied": {
        "means_prior": -0.5,
        "means_weight": 0.7,
        "covars_prior": np.array([[0.5, 0.1], [0.1, 0.4]]),
        "covars_weight": 5.0,
    },
}


def priors_for(covariance_type, with_priors):
    if not with_priors:
        return {}
    return {"startprob_prior": 2.0, "transmat_prior": 1.5, **PRIORS[covariance_type]}


both_priors = pytest.mark.parametrize("with_priors", [False, True], ids=["default-priors", "priors"])
every_type = pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)


@every_type
@both_priors
def test_initialisation_matches(covariance_type, with_priors):
    X, lengths = sample_data(seed=2)
    settings = dict(
        covariance_type=covariance_type, random_state=7, n_iter=0, **priors_for(covariance_type, with_priors)
    )
    ours = hmm.GaussianHMM(N_STATES, **settings).fit(X, lengths)
    theirs = oracle.GaussianHMM(N_STATES, **settings).fit(X, lengths)
    for name in ("startprob_", "transmat_", "means_", "_covars_"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert ours.n_features == theirs.n_features == 2


@every_type
@both_priors
def test_parameters_match_after_every_iteration(covariance_type, with_priors):
    X, lengths = sample_data()
    settings = dict(
        covariance_type=covariance_type, n_iter=1, init_params="", **priors_for(covariance_type, with_priors)
    )
    params = start_params(covariance_type)
    ours = set_params(hmm.GaussianHMM(N_STATES, **settings), params)
    theirs = set_params(oracle.GaussianHMM(N_STATES, **settings), params)
    for _ in range(5):
        ours.fit(X, lengths)
        theirs.fit(X, lengths)
        assert_same_params(ours, theirs)
        assert ours.monitor_.history[-1] == pytest.approx(theirs.monitor_.history[-1], rel=1e-9)


@every_type
@both_priors
def test_full_fit_matches(covariance_type, with_priors):
    X, lengths = sample_data(seed=3)
    settings = dict(
        covariance_type=covariance_type, random_state=5, n_iter=15, tol=1e-4, **priors_for(covariance_type, with_priors)
    )
    ours = hmm.GaussianHMM(N_STATES, **settings).fit(X, lengths)
    theirs = oracle.GaussianHMM(N_STATES, **settings).fit(X, lengths)
    np.testing.assert_allclose(list(ours.monitor_.history), list(theirs.monitor_.history), rtol=RTOL)
    assert ours.monitor_.iter == theirs.monitor_.iter
    assert ours.monitor_.converged == theirs.monitor_.converged
    assert_same_params(ours, theirs)


@every_type
def test_inference_matches_with_the_same_parameters(covariance_type):
    X, lengths = sample_data(seed=6)
    theirs = oracle.GaussianHMM(N_STATES, covariance_type=covariance_type, random_state=0, n_iter=5).fit(X, lengths)
    ours = set_params(hmm.GaussianHMM(N_STATES, covariance_type=covariance_type), emission_params(theirs))
    assert_same_inference(ours, theirs, X, lengths)


@every_type
def test_sample_matches(covariance_type):
    params = start_params(covariance_type, n_features=3, seed=9)
    ours = set_params(hmm.GaussianHMM(N_STATES, covariance_type=covariance_type), params)
    theirs = set_params(oracle.GaussianHMM(N_STATES, covariance_type=covariance_type), params)
    for kwargs in ({}, {"currstate": 2}):
        X, states = ours.sample(40, random_state=11, **kwargs)
        their_X, their_states = theirs.sample(40, random_state=11, **kwargs)
        np.testing.assert_array_equal(X, their_X)
        np.testing.assert_array_equal(states, their_states)


def test_covars_property_has_full_shapes():
    X, lengths = sample_data(seed=4)
    for covariance_type in COVARIANCE_TYPES:
        ours = hmm.GaussianHMM(N_STATES, covariance_type=covariance_type, random_state=0, n_iter=2).fit(X, lengths)
        theirs = oracle.GaussianHMM(N_STATES, covariance_type=covariance_type, random_state=0, n_iter=2).fit(X, lengths)
        assert ours.covars_.shape == (N_STATES, 2, 2)
        if covariance_type == "spherical":
            # hmmlearn's fill_covars flattens the (K, D) spherical storage into
            # K * D matrices; each state's matrix is its variance times I.
            assert theirs.covars_.shape == (N_STATES * 2, 2, 2)
            np.testing.assert_allclose(ours.covars_, theirs._covars_[:, :1, None] * np.eye(2), rtol=RTOL)
        else:
            np.testing.assert_allclose(ours.covars_, theirs.covars_, rtol=RTOL, atol=ATOL)


def test_spherical_sample_uses_each_states_variance():
    """hmmlearn draws state k with covars_[k] of its flattened (K * D) list; we use state k's own variance."""
    params = start_params("spherical", seed=3)
    model = set_params(hmm.GaussianHMM(N_STATES, covariance_type="spherical"), params)
    model.covars_ = np.tile(params["covars_"][:, None], (1, 2))  # hmmlearn's fitted layout
    X, _ = model.sample(5, random_state=0, currstate=2)
    tiled = set_params(hmm.GaussianHMM(N_STATES, covariance_type="spherical"), params)
    np.testing.assert_array_equal(X, tiled.sample(5, random_state=0, currstate=2)[0])


def test_params_letters_keep_parameters_fixed():
    X, lengths = sample_data(seed=4)
    params = start_params("full")
    settings = dict(covariance_type="full", params="tm", init_params="", n_iter=3)
    ours = set_params(hmm.GaussianHMM(N_STATES, **settings), params).fit(X, lengths)
    theirs = set_params(oracle.GaussianHMM(N_STATES, **settings), params).fit(X, lengths)
    np.testing.assert_array_equal(ours.startprob_, params["startprob_"])
    np.testing.assert_array_equal(ours._covars_, params["covars_"])
    assert_same_params(ours, theirs)


def test_covariances_alone_are_trained_around_the_fixed_means():
    """params without 'm': hmmlearn skips the posterior sums its covariance update reads
    (and divides by zero posteriors); we gather them, giving the textbook update."""
    X, lengths = sample_data(seed=7)
    params = start_params("diag")
    model = set_params(hmm.GaussianHMM(N_STATES, params="c", init_params="", n_iter=1), params)
    posteriors = model.predict_proba(X, lengths)
    model.fit(X, lengths)
    weighted = np.stack([posteriors[:, k] @ (X - params["means_"][k]) ** 2 for k in range(N_STATES)])
    expected = (1e-2 + weighted) / posteriors.sum(axis=0)[:, None]
    np.testing.assert_allclose(model._covars_, expected, rtol=1e-9)
    np.testing.assert_array_equal(model.means_, params["means_"])


def test_one_feature_and_one_dimensional_x():
    X, lengths = sample_data(seed=5)
    X = X[:, :1]
    ours = hmm.GaussianHMM(2, random_state=1, n_iter=4).fit(X.ravel(), lengths)
    theirs = oracle.GaussianHMM(2, random_state=1, n_iter=4).fit(X, lengths)
    assert ours.n_features == 1
    assert_same_params(ours, theirs)


def test_small_batches_give_the_same_result():
    """Statistics summed over many kernel batches equal one big batch."""
    X, lengths = sample_data(seed=10, n_sequences=80)
    params = start_params("full", seed=4)
    whole = set_params(hmm.GaussianHMM(N_STATES, covariance_type="full", init_params="", n_iter=3), params)
    whole.fit(X, lengths)
    pieces = set_params(hmm.GaussianHMM(N_STATES, covariance_type="full", init_params="", n_iter=3), params)
    # the fused E-step takes FUSED_BATCH_FACTOR x frames_per_batch frames per call: still many calls
    pieces.frames_per_batch = 3
    assert 10 * pieces._e_step_frames_per_batch() < len(X)
    pieces.fit(X, lengths)
    np.testing.assert_allclose(pieces._covars_, whole._covars_, rtol=1e-12)
    np.testing.assert_allclose(list(pieces.monitor_.history), list(whole.monitor_.history), rtol=1e-12)


def test_statistics_survive_serialisation():
    X, lengths = sample_data(seed=11)
    for covariance_type in ("diag", "full"):
        model = set_params(hmm.GaussianHMM(N_STATES, covariance_type=covariance_type), start_params(covariance_type))
        model._check()
        stats = model._e_step(*model._prepare(X, lengths))
        copy = hmm.SufficientStats.from_bytes(stats.to_bytes())
        assert sorted(copy.emission) == sorted(stats.emission)
        for key, value in stats.emission.items():
            np.testing.assert_array_equal(copy.emission[key], value)


# ------------------------------------------------------------- bad input


def fitted_model(covariance_type="full"):
    return set_params(hmm.GaussianHMM(N_STATES, covariance_type=covariance_type), start_params(covariance_type))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_sequence_position_and_feature(bad):
    X, lengths = sample_data(seed=1)
    sequence = int(np.flatnonzero(lengths >= 3)[1])
    X[lengths[:sequence].sum() + 2, 1] = bad
    where = rf"sequence {sequence}, position 2, feature 1"
    with pytest.raises(InvalidSequenceError, match=rf"{where}: X value {bad} is not finite"):
        hmm.GaussianHMM(N_STATES).fit(X, lengths)
    with pytest.raises(InvalidSequenceError, match=where):
        fitted_model().score(X, lengths)


def test_wrong_number_of_features():
    X, lengths = sample_data(seed=1)
    with pytest.raises(InvalidSequenceError, match=r"X has 3 features per observation but the model has n_features=2"):
        fitted_model().predict(np.hstack([X, X[:, :1]]), lengths)
    model = hmm.GaussianHMM(N_STATES, n_iter=1, random_state=0).fit(X, lengths)
    with pytest.raises(InvalidSequenceError, match=r"X has 1 features per observation but the model has n_features=2"):
        model.fit(X[:, :1], lengths)


@pytest.mark.parametrize(
    ("covariance_type", "covars", "message"),
    [
        ("full", [np.eye(2), [[1.0, 2.0], [2.0, 1.0]], np.eye(2)], r"covars_ of state 1 is not symmetric positive-def"),
        ("full", [np.eye(2), np.eye(2), [[1.0, 0.5], [0.0, 1.0]]], r"covars_ of state 2 is not symmetric positive-def"),
        ("tied", [[1.0, 0.0], [0.0, -1.0]], r"covars_ of all states \(tied\) is not symmetric positive-definite"),
        ("diag", [[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]], r"covars_ of state 1, feature 1 must be positive \(got 0\)"),
        ("spherical", [1.0, 1.0, -2.0], r"covars_ of state 2 must be positive \(got -2\)"),
        ("diag", [[1.0, 1.0], [1.0, np.nan], [1.0, 1.0]], r"covars_ of state 1 is not finite"),
    ],
)
def test_invalid_covariances_are_refused(covariance_type, covars, message):
    with pytest.raises(InvalidParameterError, match=message):
        hmm.GaussianHMM(N_STATES, covariance_type=covariance_type).covars_ = covars
    # Also when the stored layout is replaced behind the setter's back.
    model = fitted_model(covariance_type)
    model._covars_ = np.array(covars, dtype=float)
    X, lengths = sample_data(seed=1)
    with pytest.raises(InvalidParameterError, match=message):
        model.score(X, lengths)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("means_", np.zeros((2, 2)), r"means_ must have shape \(3, 2\), got \(2, 2\)"),
        ("means_", np.zeros(3), r"means_ must have shape \(n_components, n_features\)"),
        (
            "_covars_",
            np.ones((3, 3)),
            r"covars_ must have shape \(n_components, n_features, n_features\) = \(3, 2, 2\)",
        ),
        ("startprob_", np.ones(2) / 2, r"startprob_ must have shape \(3,\)"),
    ],
)
def test_wrong_parameter_shapes_are_refused(name, value, message):
    model = fitted_model("full")
    setattr(model, name, value)
    X, lengths = sample_data(seed=1)
    with pytest.raises(InvalidParameterError, match=message):
        model.score(X, lengths)


def test_wrong_covariance_shape_on_assignment():
    with pytest.raises(
        InvalidParameterError, match=r"covars_ must have shape \(n_components, n_features\) = \(3, \?\)"
    ):
        hmm.GaussianHMM(N_STATES, covariance_type="diag").covars_ = np.ones((2, 2))


def test_non_finite_means_are_refused():
    model = fitted_model("diag")
    model.means_[1, 0] = np.nan
    with pytest.raises(InvalidParameterError, match=r"means_ of state 1 is not finite"):
        model.sample(3)


def test_unknown_covariance_type_is_refused():
    X, lengths = sample_data(seed=1)
    with pytest.raises(ValueError, match=r"covariance_type must be one of"):
        hmm.GaussianHMM(N_STATES, covariance_type="banded").fit(X, lengths)

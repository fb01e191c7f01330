"""GMMHMM against hmmlearn 0.3.3, the oracle, for every covariance type."""

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
N_STATES, N_MIX, N_FEATURES = 3, 2, 2
PARAMETERS = ("startprob_", "transmat_", "weights_", "means_", "covars_")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """k-means (OpenMP) and BLAS on one thread: busy-waiting worker threads
    slow the many small fits here down tenfold on a loaded machine."""
    with threadpool_limits(limits=1):
        yield


def sample_data(seed=0, n_sequences=30):
    """Vectors drawn from a known 3-state, 2-component model, ragged lengths incl. length 1."""
    source = oracle.GMMHMM(N_STATES, N_MIX, covariance_type="full")
    source.startprob_ = np.array([0.6, 0.3, 0.1])
    source.transmat_ = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    source.weights_ = np.array([[0.5, 0.5], [0.3, 0.7], [0.8, 0.2]])
    source.means_ = np.array([[[0.0, 0.0], [2.0, 0.0]], [[4.0, 4.0], [6.0, 3.0]], [[-3.0, 4.0], [-4.0, 6.0]]])
    source.covars_ = np.tile([[0.5, 0.1], [0.1, 0.4]], (N_STATES, N_MIX, 1, 1))
    lengths = np.random.default_rng(seed).integers(1, 30, size=n_sequences)
    lengths[:3] = 1
    X, _ = source.sample(int(lengths.sum()), random_state=seed)
    return X, lengths


def start_covars(covariance_type, seed):
    rng = np.random.default_rng(seed)
    if covariance_type == "spherical":
        return rng.uniform(0.5, 2.0, size=(N_STATES, N_MIX))
    if covariance_type == "diag":
        return rng.uniform(0.5, 2.0, size=(N_STATES, N_MIX, N_FEATURES))
    factors = rng.normal(size=(N_STATES, N_MIX, N_FEATURES, N_FEATURES))
    full = factors @ np.swapaxes(factors, -1, -2) + np.eye(N_FEATURES)
    return full if covariance_type == "full" else full[:, 0]


def start_params(covariance_type, seed=1):
    """Means near the data's clusters so that no component starts dead."""
    rng = np.random.default_rng(seed)
    centres = np.array([[1.0, 0.0], [5.0, 3.5], [-3.5, 5.0]])
    return {
        "startprob_": rng.dirichlet(np.ones(N_STATES)),
        "transmat_": rng.dirichlet(np.ones(N_STATES), size=N_STATES),
        "weights_": rng.dirichlet(np.ones(N_MIX) * 3, size=N_STATES),
        "means_": centres[:, None, :] + rng.normal(size=(N_STATES, N_MIX, N_FEATURES)),
        "covars_": start_covars(covariance_type, seed),
    }


def set_params(model, params):
    for name, value in params.items():
        setattr(model, name, np.array(value, copy=True))
    return model


def assert_same_params(ours, theirs, names=PARAMETERS):
    for name in names:
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=RTOL, atol=ATOL, err_msg=name)


def oracle_iteration(model, X, lengths):
    """One EM iteration of hmmlearn's ``fit`` (E-step, M-step) without its ``_init``.

    hmmlearn's GMMHMM ``_init`` runs n_components + 1 k-means even when
    ``init_params`` is empty and its result is discarded; skipping it keeps
    the test fast and changes nothing else.
    """
    stats, log_prob = model._do_estep(X, lengths)
    model._do_mstep(stats)
    return log_prob


PRIORS = {
    "spherical": {"covars_prior": -0.5, "covars_weight": 0.2},
    "diag": {"covars_prior": -1.2, "covars_weight": np.array([0.1, 0.3])},
    "full": {"covars_prior": 0.5 * np.eye(N_FEATURES), "covars_weight": -2.5},
    "tied": {"covars_prior": 0.3 * np.eye(N_FEATURES), "covars_weight": -3.0},
}


def priors_for(covariance_type, with_priors):
    if not with_priors:
        return {}
    return {
        "startprob_prior": 2.0,
        "transmat_prior": 1.5,
        "weights_prior": np.array([2.0, 1.5]),
        "means_prior": 0.3,
        "means_weight": np.array([[0.5, 1.0], [0.2, 0.2], [1.0, 0.1]]),
        **PRIORS[covariance_type],
    }


PRIOR_NAMES = ("weights_prior", "means_prior", "means_weight", "covars_prior", "covars_weight")
both_priors = pytest.mark.parametrize("with_priors", [False, True], ids=["default-priors", "priors"])
every_type = pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)


@every_type
@both_priors
def test_initialisation_matches(covariance_type, with_priors):
    X, lengths = sample_data(seed=2)
    settings = dict(
        covariance_type=covariance_type, random_state=7, n_iter=0, **priors_for(covariance_type, with_priors)
    )
    ours = hmm.GMMHMM(N_STATES, N_MIX, **settings).fit(X, lengths)
    theirs = oracle.GMMHMM(N_STATES, N_MIX, **settings).fit(X, lengths)
    for name in PARAMETERS:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    # hmmlearn replaces the priors by arrays of their full shapes; so do we.
    for name in PRIOR_NAMES:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)


def test_initialisation_of_a_state_with_too_few_points_uses_global_random():
    """A k-means cluster smaller than n_mix gets means drawn from np.random, as in hmmlearn."""
    X, lengths = sample_data(seed=2)
    X = np.vstack([X, [[80.0, -80.0]]])
    lengths = np.append(lengths, 1)
    models = []
    for library in (hmm, oracle):
        np.random.seed(12)
        models.append(library.GMMHMM(N_STATES, N_MIX, covariance_type="diag", random_state=3, n_iter=0).fit(X, lengths))
        models.append(np.random.rand())
    ours, our_next, theirs, their_next = models
    np.random.seed(12)
    assert our_next != np.random.rand()  # the fallback did draw from np.random
    for name in PARAMETERS:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert our_next == their_next


@every_type
@both_priors
def test_parameters_match_after_every_iteration(covariance_type, with_priors):
    X, lengths = sample_data()
    settings = dict(
        covariance_type=covariance_type, n_iter=1, init_params="", **priors_for(covariance_type, with_priors)
    )
    params = start_params(covariance_type)
    ours = set_params(hmm.GMMHMM(N_STATES, N_MIX, **settings), params)
    theirs = set_params(oracle.GMMHMM(N_STATES, N_MIX, **settings), params)
    theirs._check()
    for _ in range(5):
        ours.fit(X, lengths)
        their_log_prob = oracle_iteration(theirs, X, lengths)
        assert_same_params(ours, theirs)
        assert ours.monitor_.history[-1] == pytest.approx(their_log_prob, rel=1e-9)


@every_type
@both_priors
def test_full_fit_matches(covariance_type, with_priors):
    X, lengths = sample_data(seed=3)
    settings = dict(
        covariance_type=covariance_type, random_state=5, n_iter=10, tol=1e-4, **priors_for(covariance_type, with_priors)
    )
    ours = hmm.GMMHMM(N_STATES, N_MIX, **settings).fit(X, lengths)
    theirs = oracle.GMMHMM(N_STATES, N_MIX, **settings).fit(X, lengths)
    np.testing.assert_allclose(list(ours.monitor_.history), list(theirs.monitor_.history), rtol=RTOL)
    assert ours.monitor_.iter == theirs.monitor_.iter
    assert_same_params(ours, theirs)


@every_type
def test_inference_matches_with_the_same_parameters(covariance_type):
    X, lengths = sample_data(seed=6)
    theirs = oracle.GMMHMM(N_STATES, N_MIX, covariance_type=covariance_type, random_state=0, n_iter=3)
    theirs.fit(X, lengths)
    ours = set_params(
        hmm.GMMHMM(N_STATES, N_MIX, covariance_type=covariance_type), {n: getattr(theirs, n) for n in PARAMETERS}
    )
    assert_same_inference(ours, theirs, X, lengths)


@every_type
def test_sample_matches(covariance_type):
    params = start_params(covariance_type, seed=9)
    ours = set_params(hmm.GMMHMM(N_STATES, N_MIX, covariance_type=covariance_type), params)
    theirs = set_params(oracle.GMMHMM(N_STATES, N_MIX, covariance_type=covariance_type), params)
    for kwargs in ({}, {"currstate": 1}):
        X, states = ours.sample(40, random_state=11, **kwargs)
        their_X, their_states = theirs.sample(40, random_state=11, **kwargs)
        np.testing.assert_array_equal(X, their_X)
        np.testing.assert_array_equal(states, their_states)


def test_single_component_and_params_letters():
    X, lengths = sample_data(seed=4)
    settings = dict(covariance_type="full", params="smc", n_iter=3, random_state=2)
    ours = hmm.GMMHMM(N_STATES, 1, **settings).fit(X, lengths)
    theirs = oracle.GMMHMM(N_STATES, 1, **settings).fit(X, lengths)
    assert_same_params(ours, theirs)
    np.testing.assert_array_equal(ours.weights_, np.ones((N_STATES, 1)))


def test_small_batches_give_the_same_result():
    """Statistics summed over many kernel batches equal one big batch."""
    X, lengths = sample_data(seed=10, n_sequences=80)
    params = start_params("full", seed=4)
    whole = set_params(hmm.GMMHMM(N_STATES, N_MIX, covariance_type="full", init_params="", n_iter=3), params)
    whole.fit(X, lengths)
    pieces = set_params(hmm.GMMHMM(N_STATES, N_MIX, covariance_type="full", init_params="", n_iter=3), params)
    pieces.frames_per_batch = 50
    pieces.fit(X, lengths)
    np.testing.assert_allclose(pieces.covars_, whole.covars_, rtol=1e-12)
    np.testing.assert_allclose(list(pieces.monitor_.history), list(whole.monitor_.history), rtol=1e-12)


# ------------------------------------------------------------- bad input


def fitted_model(covariance_type="full"):
    return set_params(hmm.GMMHMM(N_STATES, N_MIX, covariance_type=covariance_type), start_params(covariance_type))


def test_non_finite_values_name_sequence_position_and_feature():
    X, lengths = sample_data(seed=1)
    sequence = int(np.flatnonzero(lengths >= 5)[0])
    X[lengths[:sequence].sum() + 4, 0] = np.nan
    where = rf"sequence {sequence}, position 4, feature 0"
    with pytest.raises(InvalidSequenceError, match=rf"{where}: X value nan is not finite"):
        hmm.GMMHMM(N_STATES, N_MIX).fit(X, lengths)
    with pytest.raises(InvalidSequenceError, match=where):
        fitted_model().predict_proba(X, lengths)


def test_wrong_number_of_features():
    X, lengths = sample_data(seed=1)
    with pytest.raises(InvalidSequenceError, match=r"X has 1 features per observation but the model has n_features=2"):
        fitted_model("diag").score(X[:, :1], lengths)


@pytest.mark.parametrize(
    ("covariance_type", "index", "value", "message"),
    [
        ("full", (1, 0), [[1.0, 2.0], [2.0, 1.0]], r"covars_ of state 1, mixture 0 is not symmetric positive-semidef"),
        ("full", (2, 1), [[1.0, 0.5], [0.0, 1.0]], r"covars_ of state 2, mixture 1 is not symmetric"),
        ("tied", 2, [[-1.0, 0.0], [0.0, 1.0]], r"covars_ of state 2 is not symmetric positive-semidefinite"),
        ("diag", (0, 1), [1.0, -0.5], r"covars_ of state 0, mixture 1, feature 1 must be non-negative"),
        ("spherical", (2, 0), -1.0, r"covars_ of state 2, mixture 0 must be non-negative \(got -1\)"),
        ("diag", (1, 1), [np.inf, 1.0], r"covars_ of state 1, mixture 1 is not finite"),
    ],
)
def test_invalid_covariances_are_refused(covariance_type, index, value, message):
    model = fitted_model(covariance_type)
    model.covars_[index] = value
    with pytest.raises(InvalidParameterError, match=message):
        model.sample(3)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("weights_", np.full((N_STATES, N_MIX), 0.4), r"weights_ row 0 sums to 0.8"),
        ("weights_", np.full((N_STATES, 3), 1 / 3), r"weights_ must have shape \(3, 2\), got \(3, 3\)"),
        ("means_", np.zeros((N_STATES, 3, N_FEATURES)), r"means_ must have shape \(n_components, n_mix, n_features\)"),
        ("covars_", np.ones((N_STATES, N_MIX)), r"covars_ must have shape \(n_components, n_mix, n_features, n_feat"),
    ],
)
def test_wrong_parameters_are_refused(name, value, message):
    model = fitted_model("full")
    setattr(model, name, value)
    X, lengths = sample_data(seed=1)
    with pytest.raises(InvalidParameterError, match=message):
        model.score(X, lengths)


def test_bad_settings_are_refused():
    X, lengths = sample_data(seed=1)
    with pytest.raises(ValueError, match=r"covariance_type must be one of"):
        hmm.GMMHMM(N_STATES, N_MIX, covariance_type="banded").fit(X, lengths)
    with pytest.raises(ValueError, match=r"n_mix must be a positive integer"):
        hmm.GMMHMM(N_STATES, 0).fit(X, lengths)

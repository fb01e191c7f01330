"""PoissonHMM against hmmlearn 0.3.3's, the oracle: same init, same parameters
after every EM iteration, same scores, paths and samples; and clear errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hmmlearn import hmm as oracle

import hmm
from hmm import InvalidParameterError, InvalidSequenceError, PoissonHMM

N_COMPONENTS = 3
# Ragged, with sequences of length 1 (no transition, start statistics only).
LENGTHS = [40, 1, 25, 1, 60, 7]
PRIORS = {
    "default": {},
    "priors": {
        "startprob_prior": 2.0,
        "transmat_prior": np.full((N_COMPONENTS, N_COMPONENTS), 1.5),
        "lambdas_prior": 3.0,
        "lambdas_weight": 0.5,
    },
}


def counts(seed: int = 0, lengths: list[int] = LENGTHS) -> np.ndarray:
    """Counts switching between three regimes, one feature sometimes zero."""
    rs = np.random.RandomState(seed)
    rates = np.array([[2.0, 0.3, 9.0], [12.0, 4.0, 1.0], [5.0, 0.0, 4.0]])
    regime = np.repeat(rs.randint(0, 3, size=sum(lengths) // 5 + 1), 5)[: sum(lengths)]
    return rs.poisson(rates[regime])


def start() -> dict[str, np.ndarray]:
    """An explicit starting point, shared by both libraries."""
    return {
        "startprob_": np.array([0.5, 0.3, 0.2]),
        "transmat_": np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]),
        "lambdas_": np.array([[1.0, 1.0, 8.0], [10.0, 3.0, 2.0], [4.0, 0.5, 5.0]]),
    }


def pair(**kwargs: Any) -> tuple[oracle.PoissonHMM, PoissonHMM]:
    return oracle.PoissonHMM(N_COMPONENTS, **kwargs), PoissonHMM(N_COMPONENTS, **kwargs)


def copy_parameters(source: Any, target: Any) -> None:
    for name in ("startprob_", "transmat_", "lambdas_"):
        setattr(target, name, getattr(source, name).copy())
    target.n_features = source.n_features


def assert_same_parameters(expected: Any, actual: Any, rtol: float = 1e-6) -> None:
    for name in ("startprob_", "transmat_", "lambdas_"):
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name), rtol=rtol, atol=1e-12, err_msg=name)


def test_constructor_matches_hmmlearn() -> None:
    theirs, ours = oracle.PoissonHMM().get_params(), PoissonHMM().get_params()
    # n_init (restarts, as scikit-learn's GaussianMixture has it) is ours alone; 1 is hmmlearn's fit.
    assert ours.pop("n_init") == 1
    assert ours == theirs
    assert "PoissonHMM" in hmm.__all__


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
@pytest.mark.parametrize("prior", PRIORS)
def test_same_random_state_same_init(dtype: type, prior: str) -> None:
    X = counts().astype(dtype)
    theirs, ours = pair(random_state=42, n_iter=0, **PRIORS[prior])
    theirs._init(X, np.array(LENGTHS))
    ours.fit(X, LENGTHS)
    assert_same_parameters(theirs, ours, rtol=1e-12)
    # The generator replaced the seed and was advanced the same way.
    assert isinstance(ours.random_state, np.random.RandomState)
    assert ours.random_state.rand() == theirs.random_state.rand()


@pytest.mark.parametrize("prior", PRIORS)
def test_parameters_after_each_iteration(prior: str) -> None:
    X = counts(1)
    theirs, ours = pair(init_params="", n_iter=1, **PRIORS[prior])
    for model in (theirs, ours):
        for name, value in start().items():
            setattr(model, name, value.copy())
    for iteration in range(5):
        theirs.fit(X, LENGTHS)
        ours.fit(X, LENGTHS)
        assert_same_parameters(theirs, ours)
        np.testing.assert_allclose(ours.monitor_.history, theirs.monitor_.history, rtol=1e-9, err_msg=str(iteration))


@pytest.mark.parametrize("prior", PRIORS)
def test_full_fit_history(prior: str) -> None:
    X = counts(2)
    theirs, ours = pair(random_state=3, n_iter=25, tol=1e-4, **PRIORS[prior])
    theirs.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    assert len(ours.monitor_.history) == len(theirs.monitor_.history)
    assert ours.monitor_.iter == theirs.monitor_.iter
    assert ours.monitor_.converged == theirs.monitor_.converged
    np.testing.assert_allclose(ours.monitor_.history, theirs.monitor_.history, rtol=1e-9)
    assert_same_parameters(theirs, ours)


def test_params_subset_is_respected() -> None:
    X = counts(3)
    theirs, ours = pair(init_params="", params="l", n_iter=3)
    for model in (theirs, ours):
        for name, value in start().items():
            setattr(model, name, value.copy())
    theirs.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    assert_same_parameters(theirs, ours)
    np.testing.assert_array_equal(ours.transmat_, start()["transmat_"])


def fitted_pair() -> tuple[oracle.PoissonHMM, PoissonHMM]:
    theirs, ours = pair(random_state=5, n_iter=5)
    theirs.fit(counts(4), LENGTHS)
    copy_parameters(theirs, ours)
    return theirs, ours


def test_score_and_posteriors() -> None:
    theirs, ours = fitted_pair()
    X = counts(5)
    assert ours.score(X, LENGTHS) == pytest.approx(theirs.score(X, LENGTHS), rel=1e-10)
    log_prob, posteriors = ours.score_samples(X, LENGTHS)
    their_log_prob, their_posteriors = theirs.score_samples(X, LENGTHS)
    assert log_prob == pytest.approx(their_log_prob, rel=1e-10)
    np.testing.assert_allclose(posteriors, their_posteriors, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), theirs.predict_proba(X, LENGTHS), atol=1e-10)
    assert ours.aic(X, LENGTHS) == pytest.approx(theirs.aic(X, LENGTHS), rel=1e-10)
    assert ours.bic(X, LENGTHS) == pytest.approx(theirs.bic(X, LENGTHS), rel=1e-10)


@pytest.mark.parametrize("algorithm", ["viterbi", "map"])
def test_decode(algorithm: str) -> None:
    theirs, ours = fitted_pair()
    X = counts(6)
    log_prob, states = ours.decode(X, LENGTHS, algorithm=algorithm)
    their_log_prob, their_states = theirs.decode(X, LENGTHS, algorithm=algorithm)
    np.testing.assert_array_equal(states, their_states)
    assert log_prob == pytest.approx(their_log_prob, rel=1e-10)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), theirs.predict(X, LENGTHS))


def test_sample() -> None:
    theirs, ours = fitted_pair()
    X, states = ours.sample(200, random_state=11)
    their_X, their_states = theirs.sample(200, random_state=11)
    np.testing.assert_array_equal(X, their_X)
    np.testing.assert_array_equal(states, their_states)
    X, states = ours.sample(30, random_state=12, currstate=2)
    their_X, their_states = theirs.sample(30, random_state=12, currstate=2)
    np.testing.assert_array_equal(X, their_X)
    np.testing.assert_array_equal(states, their_states)


def test_zero_rates_give_scipy_log_pmf() -> None:
    """A rate of 0 explains a count of 0 with probability 1 and nothing else (0 log 0 = 0)."""
    theirs, ours = fitted_pair()
    lambdas = theirs.lambdas_.copy()
    lambdas[0, 1] = 0.0
    lambdas[2, :] = 0.0
    theirs.lambdas_, ours.lambdas_ = lambdas, lambdas.copy()
    X = counts(7)
    X[::4] = 0
    np.testing.assert_allclose(ours._frame_log_likelihood(X.astype(float)), theirs._compute_log_likelihood(X))
    assert ours.score(X, LENGTHS) == pytest.approx(theirs.score(X, LENGTHS), rel=1e-10)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), theirs.predict(X, LENGTHS))


def test_feature_never_counted_fits_a_zero_rate() -> None:
    X = counts(8)
    X[:, 1] = 0
    theirs, ours = pair(random_state=9, n_iter=4)
    theirs.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    assert np.all(ours.lambdas_[:, 1] == 0)
    assert_same_parameters(theirs, ours)
    np.testing.assert_allclose(ours.monitor_.history, theirs.monitor_.history, rtol=1e-9)


def test_one_dimensional_x_is_one_feature() -> None:
    X = counts(9)[:, 0]
    model = PoissonHMM(2, random_state=1, n_iter=3).fit(X, LENGTHS)
    same = PoissonHMM(2, random_state=1, n_iter=3).fit(X[:, None], LENGTHS)
    assert model.n_features == 1
    np.testing.assert_array_equal(model.lambdas_, same.lambdas_)
    theirs = oracle.PoissonHMM(2, random_state=1, n_iter=3).fit(X[:, None], LENGTHS)
    assert_same_parameters(theirs, model)


def test_fit_scalars_and_fitted_attributes() -> None:
    _, ours = fitted_pair()
    assert ours._get_n_fit_scalars_per_param() == {"s": 2, "t": 6, "l": 9}
    assert PoissonHMM._fitted_emission_attributes == ("lambdas_",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.nan, "sequence 2, position 5, feature 1: count nan is not finite"),
        (np.inf, "sequence 2, position 5, feature 1: count inf is not finite"),
        (
            -1.0,
            "sequence 2, position 5, feature 1: count -1.0 is negative (Poisson counts must be non-negative integers)",
        ),
        (2.5, "sequence 2, position 5, feature 1: count 2.5 is not an integer (Poisson counts must be non-negative"),
    ],
)
def test_bad_counts_are_located(value: float, message: str) -> None:
    X = counts(10).astype(float)
    X[LENGTHS[0] + LENGTHS[1] + 5, 1] = value
    with pytest.raises(InvalidSequenceError) as error:
        PoissonHMM(2).fit(X, LENGTHS)
    assert message in str(error.value)
    assert "1 value(s) break this" in str(error.value)
    _, ours = fitted_pair()
    with pytest.raises(InvalidSequenceError, match="sequence 2, position 5, feature 1"):
        ours.score(X, LENGTHS)


def test_bad_layouts() -> None:
    _, ours = fitted_pair()
    with pytest.raises(InvalidSequenceError, match="X has 2 features per observation but the model has n_features=3"):
        ours.predict(counts(11)[:, :2])
    with pytest.raises(InvalidSequenceError, match="X must be numeric"):
        PoissonHMM(2).fit(np.array([["a"], ["b"]]))
    with pytest.raises(InvalidSequenceError, match="lengths sum to 5 but X has 134 samples"):
        PoissonHMM(2).fit(counts(11), [2, 3])


def test_constant_counts_cannot_initialise_rates() -> None:
    with pytest.raises(
        InvalidSequenceError, match=re.escape("every count in X equals 0.0 (variance 0); set lambdas_ yourself")
    ):
        PoissonHMM(2).fit(np.zeros((10, 2)))


def test_bad_parameters() -> None:
    _, ours = fitted_pair()
    ours.lambdas_ = np.ones((3, 2))
    with pytest.raises(InvalidParameterError, match=r"lambdas_ must have shape \(3, 3\), got \(3, 2\)"):
        ours.score(counts(12))
    ours.lambdas_ = -np.ones((3, 3))
    with pytest.raises(InvalidParameterError, match="lambdas_ contains negative values"):
        ours.score(counts(12))
    ours.lambdas_ = np.full((3, 3), np.nan)
    with pytest.raises(InvalidParameterError, match="lambdas_ contains non-finite values"):
        ours.sample(3)

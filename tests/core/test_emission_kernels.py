"""The compiled emission kernels (hmm.core.kernels.emissions) against plain numpy and scipy.

Sizes are chosen to hit the kernels' edges: frame counts that are not a whole number of frame
blocks (64) or lane blocks (8), fewer frames than one block, and more than one cache chunk of
lane blocks (256 frames) for the moments.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.special import gammaln

from hmm.core.covariance import cholesky_factors, diag_components, full_components
from hmm.core.kernels import emissions

FRAME_COUNTS = [1, 7, 64, 65, 300, 1001]


def random_covariances(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    a = rng.normal(size=(n, d, d))
    return a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)


@pytest.mark.parametrize("n_frames", FRAME_COUNTS)
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_gaussian_frames_are_scipys_log_densities(n_frames: int, kind: str) -> None:
    rng = np.random.default_rng(n_frames)
    n_components, n_features = 4, 3
    X = rng.normal(size=(n_frames, n_features)) * 2
    means = rng.normal(size=(n_components, n_features))
    if kind == "diag":
        variances = rng.uniform(0.3, 2.0, size=(n_components, n_features))
        covariances = np.array([np.diag(v) for v in variances])
        components = diag_components(means, variances)
    else:
        covariances = random_covariances(rng, n_components, n_features)
        components = full_components(means, cholesky_factors(covariances))
    want = np.stack(
        [scipy_stats.multivariate_normal(means[c], covariances[c]).logpdf(X) for c in range(n_components)], axis=-1
    ).reshape(n_frames, n_components)
    out = np.empty((n_frames, n_components))
    emissions.gaussian_frames(X, *components, out, emissions.NONE_1D)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    # scaled: exactly what scale_frames makes of the log-densities
    scaled, log_scale = np.empty_like(out), np.empty(n_frames)
    emissions.gaussian_frames(X, *components, scaled, log_scale)
    expected, expected_scale = out.copy(), np.empty(n_frames)
    emissions.scale_frames(expected, expected_scale)
    np.testing.assert_array_equal(log_scale, expected_scale)
    np.testing.assert_array_equal(scaled, expected)


@pytest.mark.parametrize("n_frames", FRAME_COUNTS)
def test_mixture_frames_sum_the_weighted_component_densities(n_frames: int) -> None:
    rng = np.random.default_rng(n_frames)
    n_states, n_mix, n_features = 3, 2, 2
    n = n_states * n_mix
    X = rng.normal(size=(n_frames, n_features)) * 3
    components = diag_components(rng.normal(size=(n, n_features)), rng.uniform(0.5, 2.0, size=(n, n_features)))
    weights = rng.dirichlet(np.ones(n_mix), size=n_states)
    weights[1] = [1.0, 0.0]  # a zero weight: log -inf, that component contributes nothing
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights).ravel()
    densities = np.empty((n_frames, n))
    emissions.gaussian_frames(X, *components, densities, emissions.NONE_1D)
    want = (np.exp(densities) * weights.ravel()).reshape(n_frames, n_states, n_mix).sum(axis=-1)
    frameprob, log_scale = np.empty((n_frames, n_states)), np.empty(n_frames)
    emissions.mixture_frames(X, *components, log_weights, n_mix, frameprob, log_scale)
    np.testing.assert_allclose(frameprob * np.exp(log_scale)[:, None], want, rtol=1e-13)
    assert frameprob.max(axis=1).min() >= 1.0 / n_mix  # scaled by the largest term: nothing underflows


@pytest.mark.parametrize("n_frames", FRAME_COUNTS)
@pytest.mark.parametrize("n_mix", [1, 3])
def test_mixture_weights_are_responsibilities_times_posteriors(n_frames: int, n_mix: int) -> None:
    rng = np.random.default_rng(n_frames + n_mix)
    n_states, n_features = 2, 3
    n = n_states * n_mix
    X = rng.normal(size=(n_frames, n_features))
    means, variances = rng.normal(size=(n, n_features)), rng.uniform(0.5, 2.0, size=(n, n_features))
    components = diag_components(means, variances)
    log_weights = np.log(rng.dirichlet(np.ones(n_mix), size=n_states)).ravel()
    posteriors = rng.dirichlet(np.ones(n_states), size=n_frames)
    densities = np.empty((n_frames, n))
    emissions.gaussian_frames(X, *components, densities, emissions.NONE_1D)
    weighted = np.exp(densities + log_weights).reshape(n_frames, n_states, n_mix)
    want = (weighted / weighted.sum(axis=-1, keepdims=True) * posteriors[:, :, None]).reshape(n_frames, n)
    w = np.zeros((n, emissions.lane_frames(n_frames)))
    emissions.mixture_weights(X, posteriors, *components, log_weights, n_mix, w)
    np.testing.assert_allclose(w[:, :n_frames].T, want, rtol=1e-13, atol=1e-300)
    assert not w[:, n_frames:].any()  # the lane padding stays zero


@pytest.mark.parametrize("n_frames", FRAME_COUNTS)
def test_lane_moments_are_the_weighted_sums(n_frames: int) -> None:
    rng = np.random.default_rng(n_frames)
    n_units, n_features = 3, 4
    X = rng.normal(size=(n_frames, n_features)) + 5
    weights = rng.random((n_frames, n_units))
    centres = rng.normal(size=(n_units, n_features)) + 5
    frames = emissions.lane_frames(n_frames)
    w, x = np.zeros((n_units, frames)), np.zeros((n_features, frames))
    emissions.to_lanes(weights, w)
    emissions.to_lanes(X, x)
    totals, sums = np.ones(n_units), np.ones((n_units, n_features))  # the kernel adds to what is there
    squares, lower = np.zeros((n_units, n_features)), np.zeros((n_units, n_features, n_features))
    emissions.lane_moments(
        w.reshape(n_units, -1, emissions.LANES),
        x.reshape(n_features, -1, emissions.LANES),
        centres,
        totals,
        sums,
        squares,
        lower,
    )
    centred = X[:, None, :] - centres  # (frames, units, features)
    np.testing.assert_allclose(totals, 1 + weights.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(sums, 1 + weights.T @ X, rtol=1e-13)
    np.testing.assert_allclose(squares, np.einsum("tu,tud->ud", weights, centred**2), rtol=1e-12)
    outer = np.einsum("tu,tud,tue->ude", weights, centred, centred)
    np.testing.assert_allclose(emissions.symmetric(lower), outer, rtol=1e-12, atol=1e-12)
    assert not np.triu(lower, 1).any()  # only the lower triangle is filled


def test_lane_moments_skip_the_empty_outputs() -> None:
    rng = np.random.default_rng(0)
    w, x = rng.random((2, 3, emissions.LANES)), rng.random((2, 3, emissions.LANES))
    squares = np.zeros((2, 2))
    emissions.lane_moments(w, x, np.zeros((2, 2)), emissions.NONE_1D, emissions.NONE_2D, squares, emissions.NONE_3D)
    want = np.einsum("ub,db->ud", w.reshape(2, -1), x.reshape(2, -1) ** 2)
    np.testing.assert_allclose(squares, want, rtol=1e-14)


def test_the_same_batch_gives_the_same_bits() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(333, 3))
    weights = rng.random((333, 5))
    results = []
    for _ in range(2):
        w, x = np.zeros((5, emissions.lane_frames(333))), np.zeros((3, emissions.lane_frames(333)))
        emissions.to_lanes(weights, w)
        emissions.to_lanes(X, x)
        lower = np.zeros((5, 3, 3))
        emissions.lane_moments(
            w.reshape(5, -1, emissions.LANES),
            x.reshape(3, -1, emissions.LANES),
            np.zeros((5, 3)),
            emissions.NONE_1D,
            emissions.NONE_2D,
            emissions.NONE_2D,
            lower,
        )
        results.append(lower)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("n_frames", FRAME_COUNTS)
def test_poisson_frames_are_scipys_log_pmf(n_frames: int) -> None:
    rng = np.random.default_rng(n_frames)
    n_states, n_features = 3, 2
    rates = rng.uniform(0.5, 30.0, size=(n_states, n_features))
    rates[2, 1] = 0.0  # a zero rate: count 0 has probability 1, any other count 0
    X = rng.poisson(10.0, size=(n_frames, n_features)).astype(np.float64)
    X[0, 0] = 5000.0  # beyond the table of log(n!): computed
    X[-1, 1] = 0.0
    log_factorials = gammaln(np.arange(1, 1025, dtype=np.float64))
    with np.errstate(divide="ignore"):
        log_rates = np.log(rates)
    out = np.empty((n_frames, n_states))
    emissions.poisson_frames(X, log_rates, rates.sum(axis=1), log_factorials, out, emissions.NONE_1D)
    want = scipy_stats.poisson.logpmf(X[:, None, :], rates[None]).sum(axis=-1)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    assert np.isneginf(out[X[:, 1] > 0, 2]).all() and np.isfinite(out[X[:, 1] == 0, 2]).all()


@pytest.mark.parametrize("name", ["GaussianHMM", "GMMHMM", "PoissonHMM"])
def test_a_subclass_overriding_the_frame_log_likelihood_is_used(name: str) -> None:
    """The compiled frame probabilities stand in only for the model's own densities (hmmlearn's hook)."""
    import hmm

    base = getattr(hmm, name)

    class FavoursStateOne(base):  # type: ignore[misc, valid-type]
        def _frame_log_likelihood(self, X: np.ndarray) -> np.ndarray:
            log_likelihood = super()._frame_log_likelihood(X)
            log_likelihood[:, 1] += 1000.0
            return log_likelihood

    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, size=(40, 2)).astype(np.float64)
    # params="": the parameters stay as initialised, the same in both models
    plain = base(2, n_iter=1, random_state=0, params="").fit(X)
    biased = FavoursStateOne(2, n_iter=1, random_state=0, params="").fit(X)
    # predict_proba and score go through the scaled frame probabilities (forward-backward, forward pass)
    assert (biased.predict_proba(X).argmax(axis=1) == 1).all()
    assert not (plain.predict_proba(X).argmax(axis=1) == 1).all()
    assert biased.score(X) > plain.score(X) + 1000.0

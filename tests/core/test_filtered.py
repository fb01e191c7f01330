"""predict_filtered_proba: the causal state probabilities P(state_t | x_1..x_t), a forward pass by hand."""

import numpy as np
import pytest
from scipy.stats import norm

import hmm
from hmm.core.sequences import InvalidSequenceError


def gaussian_model():
    model = hmm.GaussianHMM(2, covariance_type="diag")
    model.startprob_ = np.array([0.6, 0.4])
    model.transmat_ = np.array([[0.9, 0.1], [0.3, 0.7]])
    model.means_ = np.array([[-1.0], [2.0]])
    model.covars_ = np.array([[1.0], [0.5]])
    return model


def by_hand(model, X):
    densities = norm.pdf(X, loc=model.means_[:, 0], scale=np.sqrt(model.covars_[:, 0, 0]))
    alpha = model.startprob_ * densities[0]
    rows = [alpha / alpha.sum()]
    for t in range(1, len(X)):
        alpha = (rows[-1] @ model.transmat_) * densities[t]
        rows.append(alpha / alpha.sum())
    return np.array(rows)


def test_filtered_probabilities_are_the_normalised_forward_pass():
    model = gaussian_model()
    X = np.random.default_rng(0).normal(size=(40, 1)) * 2
    lengths = [15, 25]
    filtered = model.predict_filtered_proba(X, lengths)
    assert filtered.shape == (40, 2)
    expected = np.concatenate([by_hand(model, X[:15]), by_hand(model, X[15:])])
    np.testing.assert_allclose(filtered, expected, rtol=1e-12)
    # causal: later samples change nothing before them; the last one is the posterior
    np.testing.assert_array_equal(model.predict_filtered_proba(X[:10]), filtered[:10])
    np.testing.assert_allclose(filtered[14], model.predict_proba(X[:15])[14], rtol=1e-12)


def test_a_sample_impossible_under_every_state_is_named():
    model = hmm.CategoricalHMM(2, n_features=3)
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.array([[1.0, 0.0], [0.0, 1.0]])
    model.emissionprob_ = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(InvalidSequenceError, match="sequence 1, position 2"):
        model.predict_filtered_proba(np.array([[0], [1], [0], [1], [2]]), [2, 3])

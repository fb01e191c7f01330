"""Stable state labels: relabelling against a reference undoes any permutation of the states."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import hmm
from hmm.core.relabel import relabel
from tests.core.test_candidates import MODELS


@pytest.mark.parametrize("kind", MODELS)
def test_relabelling_a_permuted_copy_gives_back_the_reference_exactly(kind: str) -> None:
    make, data = MODELS[kind]
    X, lengths = data()
    reference = make(random_state=0, n_iter=5).fit(X, lengths)
    shuffled = copy.deepcopy(reference).permute_states([2, 0, 1] if reference.n_components == 3 else [1, 0])
    assert not np.array_equal(shuffled.transmat_, reference.transmat_)
    result = relabel(shuffled, reference)
    names = ["startprob_", "transmat_", *type(reference)._fitted_emission_attributes]
    for name in names:
        np.testing.assert_array_equal(getattr(shuffled, name), getattr(reference, name), err_msg=name)
    assert result.reference_state == list(range(reference.n_components))
    np.testing.assert_allclose(result.emission_divergence, 0.0, atol=1e-9)
    assert result.transition_change == [0.0] * reference.n_components
    np.testing.assert_array_equal(shuffled.predict(X, lengths), reference.predict(X, lengths))


def truth_categorical() -> hmm.CategoricalHMM:
    truth = hmm.CategoricalHMM(3, n_features=4)
    truth.startprob_ = np.array([0.5, 0.3, 0.2])
    truth.transmat_ = np.array([[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.15, 0.8]])
    truth.emissionprob_ = np.array([[0.7, 0.2, 0.05, 0.05], [0.05, 0.1, 0.8, 0.05], [0.1, 0.05, 0.05, 0.8]])
    return truth


@pytest.mark.parametrize("order", [[1, 2, 0], [2, 1, 0], [0, 2, 1]])
def test_a_model_trained_from_permuted_labels_matches_the_truth_after_relabelling(order: list[int]) -> None:
    truth = truth_categorical()
    X, _ = truth.sample(20_000, random_state=1)
    lengths = [200] * 100
    start = copy.deepcopy(truth).permute_states(order)
    model = hmm.CategoricalHMM(3, init_params="", n_iter=50, tol=1e-6)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        setattr(model, name, getattr(start, name).copy())
    model.n_features = 4
    model.fit(X, lengths)
    assert np.abs(model.emissionprob_ - truth.emissionprob_).max() > 0.3  # trained, still in permuted labels
    result = relabel(model, truth)
    assert result.order == np.argsort(order).tolist()
    np.testing.assert_allclose(model.emissionprob_, truth.emissionprob_, atol=0.03)
    np.testing.assert_allclose(model.transmat_, truth.transmat_, atol=0.03)
    assert max(result.emission_divergence) < 0.01


def test_gaussian_states_found_from_a_random_start_match_the_truth() -> None:
    truth = hmm.GaussianHMM(3, covariance_type="diag")
    truth.startprob_ = np.array([0.2, 0.5, 0.3])
    truth.transmat_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    truth.means_ = np.array([[0.0, 5.0], [5.0, 0.0], [-5.0, -5.0]])
    truth.covars_ = np.ones((3, 2))
    X, _ = truth.sample(6000, random_state=2)
    model = hmm.GaussianHMM(3, covariance_type="diag", random_state=5, n_iter=30).fit(X, [100] * 60)
    relabel(model, truth)
    np.testing.assert_allclose(model.means_, truth.means_, atol=0.15)
    np.testing.assert_allclose(model.transmat_, truth.transmat_, atol=0.05)


def test_different_state_counts_match_what_they_can() -> None:
    truth = truth_categorical()
    X, _ = truth.sample(5000, random_state=3)
    bigger = hmm.CategoricalHMM(4, random_state=0, n_iter=20).fit(X, [100] * 50)
    result = relabel(bigger, truth)
    assert sorted(result.order) == [0, 1, 2, 3]
    assert result.reference_state[:3] == [0, 1, 2] and result.reference_state[3] is None
    assert result.emission_divergence[3] is None and result.transition_change == [None] * 4


def test_divergences_equal_their_closed_forms() -> None:
    a, b = truth_categorical(), truth_categorical()
    b.emissionprob_ = np.array([[0.0, 0.0, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0], [0.7, 0.2, 0.05, 0.05]])
    divergence = a.state_divergence(b)
    assert divergence[0, 2] == pytest.approx(0.0, abs=1e-15)
    assert b.state_divergence(b)[0, 1] == pytest.approx(np.log(2))  # disjoint supports: ln 2
    g1, g2 = hmm.GaussianHMM(1), hmm.GaussianHMM(1)
    for model, mean, var in ((g1, 1.0, 2.0), (g2, -0.5, 0.5)):
        model.startprob_, model.transmat_ = np.ones(1), np.ones((1, 1))
        model.means_, model.covars_, model.n_features = np.array([[mean]]), np.array([[var]]), 1
    expected = (1.5**2) * (1 / 2.0 + 1 / 0.5) / 2 + (2.0 / 0.5 + 0.5 / 2.0) / 2 - 1
    assert g1.state_divergence(g2)[0, 0] == pytest.approx(expected)
    p1, p2 = hmm.PoissonHMM(2), hmm.PoissonHMM(2)
    for model, rates in ((p1, [[1.0], [0.0]]), (p2, [[2.0], [3.0]])):
        model.startprob_, model.transmat_ = np.full(2, 0.5), np.full((2, 2), 0.5)
        model.lambdas_, model.n_features = np.array(rates), 1
    divergence = p1.state_divergence(p2)
    assert divergence[0, 0] == pytest.approx((1.0 - 2.0) * np.log(1 / 2))
    assert np.isinf(divergence[1, 0])
    assert relabel(p1, p2).order == [0, 1]  # an infinite divergence is a poor match, not an error


@pytest.mark.parametrize(
    ("order", "message"),
    [([0, 0, 1], "permutation"), ([0, 1], "permutation"), ([0.0, 1.0, 2.0], "permutation"), ([0, 1, 3], "permutation")],
)
def test_permute_states_refuses_what_is_not_a_permutation(order: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        truth_categorical().permute_states(order)


def test_state_divergence_refuses_other_kinds_of_model() -> None:
    other = hmm.PoissonHMM(3)
    other.startprob_, other.transmat_, other.lambdas_, other.n_features = (
        np.full(3, 1 / 3),
        np.full((3, 3), 1 / 3),
        np.ones((3, 4)),
        4,
    )
    with pytest.raises(ValueError, match="cannot compare the states of a CategoricalHMM with a PoissonHMM"):
        truth_categorical().state_divergence(other)
    wider = truth_categorical()
    wider.emissionprob_, wider.n_features = np.full((3, 5), 0.2), 5
    with pytest.raises(ValueError, match="4 features with states of 5 features"):
        truth_categorical().state_divergence(wider)

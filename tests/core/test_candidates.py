"""Restarts (``n_init``) and candidate sets: one E-step pass per iteration, each candidate bit for bit
a separate fit with its seed, pruning that never changes a survivor."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import hmm
from hmm.core.candidates import Candidate, best, candidate_seeds, rank, run_candidates


def categorical_data(seed: int = 0) -> tuple[np.ndarray, list[int]]:
    truth = hmm.CategoricalHMM(3, random_state=seed, n_features=6)
    truth.startprob_ = np.array([0.6, 0.3, 0.1])
    truth.transmat_ = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    truth.emissionprob_ = np.array(
        [[0.5, 0.3, 0.1, 0.05, 0.03, 0.02], [0.02, 0.08, 0.5, 0.3, 0.05, 0.05], [0.05, 0.05, 0.05, 0.05, 0.3, 0.5]]
    )
    lengths = [40, 25, 60, 35, 50]
    X, _ = truth.sample(sum(lengths), random_state=seed)
    return X, lengths


def vector_data(seed: int = 0, integer: bool = False) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    lengths = [30, 45, 25, 50]
    centres = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
    states = rng.integers(0, 3, size=sum(lengths))
    if integer:
        return rng.poisson(np.abs(centres[states]) + 1.0), lengths
    return centres[states] + rng.normal(size=(sum(lengths), 2)), lengths


MODELS = {
    "categorical": (lambda **kw: hmm.CategoricalHMM(3, **kw), categorical_data),
    "gaussian-diag": (lambda **kw: hmm.GaussianHMM(3, **kw), vector_data),
    "gaussian-full": (lambda **kw: hmm.GaussianHMM(3, covariance_type="full", **kw), vector_data),
    "poisson": (lambda **kw: hmm.PoissonHMM(3, **kw), lambda: vector_data(integer=True)),
    "gmm": (lambda **kw: hmm.GMMHMM(2, n_mix=2, **kw), vector_data),
}


def fitted_state(model: hmm.BaseHMM) -> dict[str, Any]:
    names = ["startprob_", "transmat_", *type(model)._fitted_emission_attributes, "n_features"]
    state = {name: getattr(model, name) for name in names}
    state["history"] = list(model.monitor_.history)
    return state


def assert_same_fit(actual: hmm.BaseHMM, expected: hmm.BaseHMM) -> None:
    left, right = fitted_state(actual), fitted_state(expected)
    for name in right:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.mark.parametrize("kind", MODELS)
def test_best_restart_equals_the_best_separate_fit_bit_for_bit(kind: str) -> None:
    make, data = MODELS[kind]
    X, lengths = data()
    restarted = make(n_init=4, random_state=11, n_iter=8, tol=1e-4).fit(X, lengths)
    separate = [make(random_state=seed, n_iter=8, tol=1e-4).fit(X, lengths) for seed in (11, 12, 13, 14)]
    finals = [model.monitor_.history[-1] for model in separate]
    assert_same_fit(restarted, separate[int(np.argmax(finals))])
    assert restarted.n_init == 4 and restarted.random_state == 11  # settings stay the user's
    assert restarted.monitor_.history[-1] == max(finals)


def test_one_init_is_the_plain_fit_and_a_random_state_object_is_used_as_given() -> None:
    X, lengths = categorical_data()
    plain = hmm.CategoricalHMM(3, random_state=np.random.RandomState(5), n_iter=5).fit(X, lengths)
    again = hmm.CategoricalHMM(3, random_state=np.random.RandomState(5), n_iter=5, n_init=1).fit(X, lengths)
    assert_same_fit(again, plain)
    assert candidate_seeds(state := np.random.RandomState(1), 1)[0] is state


def test_candidate_seeds() -> None:
    assert candidate_seeds(7, 3) == [7, 8, 9]
    assert candidate_seeds(2**32 - 1, 2) == [2**32 - 1, 0]  # still valid seeds
    assert candidate_seeds(None, 1) == [None]
    drawn = candidate_seeds(np.random.RandomState(3), 3)
    assert drawn == candidate_seeds(np.random.RandomState(3), 3)
    assert drawn[1:] == [drawn[0] + 1, drawn[0] + 2]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_a_bad_n_init_is_refused_by_name(bad: Any) -> None:
    X, lengths = categorical_data()
    with pytest.raises(ValueError, match=r"^n_init must be a positive integer, got "):
        hmm.CategoricalHMM(3, n_init=bad).fit(X, lengths)


def test_restarts_keep_parameters_set_by_hand() -> None:
    X, lengths = categorical_data()
    start = np.array([0.2, 0.3, 0.5])
    model = hmm.CategoricalHMM(3, n_init=3, random_state=0, init_params="te", params="te")
    model.startprob_ = start
    model.fit(X, lengths)
    np.testing.assert_array_equal(model.startprob_, start)


def test_a_model_with_n_init_saves_and_loads(tmp_path: Any) -> None:
    X, lengths = categorical_data()
    model = hmm.CategoricalHMM(3, n_init=3, random_state=0, n_iter=3).fit(X, lengths)
    model.save(tmp_path / "model.npz")
    loaded = hmm.load(tmp_path / "model.npz")
    assert loaded.n_init == 3
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)


def _categorical_candidates(seeds: list[int], n_iter: int = 10) -> tuple[list[hmm.CategoricalHMM], Any, list[int]]:
    """Models initialised on one data set, the E-step of a pass over it, and each pass's model count."""
    X, lengths = categorical_data(seed=4)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    models = []
    for seed in seeds:
        model = hmm.CategoricalHMM(3, random_state=seed, n_iter=n_iter, tol=1e-6)
        models.append(model)
    observations = models[0].initialize_from_sample(X, offsets)
    for model in models[1:]:
        model.initialize_from_sample(X, offsets)
    passes: list[int] = []

    def statistics(active: list[hmm.CategoricalHMM]) -> list[Any]:
        passes.append(len(active))
        stats = []
        for model in active:
            total = model.new_statistics()
            total += model.batch_statistics(observations, offsets)
            stats.append(total)
        return stats

    return models, statistics, passes


def test_pruning_stops_the_worst_and_never_changes_a_survivor() -> None:
    seeds = [0, 1, 2, 3]
    models, statistics, passes = _categorical_candidates(seeds)
    reference = [copy.deepcopy(model) for model in models]
    candidates = run_candidates(models, statistics, prune_after=2, keep=2)
    assert passes[:2] == [4, 4]  # every candidate in each of the first two passes, then only two
    assert all(n <= 2 for n in passes[2:])
    pruned = [c for c in candidates if c.status == "pruned"]
    assert len(pruned) == 2 and all(c.iterations == 2 for c in pruned)
    survivors = [i for i, c in enumerate(candidates) if c.status != "pruned"]
    at_prune = [c.history[1] for c in candidates]
    assert min(at_prune[i] for i in survivors) >= max(c.history[1] for c in pruned)
    for index in survivors:  # a survivor equals the same model run alone
        alone = run_candidates([reference[index]], statistics)
        assert alone[0].history == candidates[index].history
        np.testing.assert_array_equal(alone[0].model.emissionprob_, candidates[index].model.emissionprob_)


def test_ranking_by_a_driver_score_and_nan_last() -> None:
    models, statistics, _ = _categorical_candidates([0, 1, 2], n_iter=2)
    order = {id(model): rank for rank, model in enumerate(models)}
    candidates = run_candidates(models, statistics, score=lambda model, stats: -order[id(model)])
    assert best(candidates).model is models[0]
    scored = [Candidate(models[0], score=float("nan")), Candidate(models[1], score=-5.0), Candidate(models[2])]
    assert rank(scored) == [1, 0, 2]


@pytest.mark.parametrize("kind", MODELS)
def test_information_criteria_from_counts_equal_aic_and_bic(kind: str) -> None:
    make, data = MODELS[kind]
    X, lengths = data()
    model = make(random_state=0, n_iter=3).fit(X, lengths)
    aic, bic = model.information_criteria(model.score(X, lengths), len(X))
    assert (aic, bic) == (model.aic(X, lengths), model.bic(X, lengths))

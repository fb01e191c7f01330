"""The models keep scikit-learn's estimator conventions without inheriting ``BaseEstimator``
(:mod:`hmm.core.estimator`): the same params, repr, clone and errors as hmmlearn's models."""

import pickle

import numpy as np
import pytest
from hmmlearn import hmm as hmmlearn_hmm
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state as sklearn_check_random_state
from sklearn.utils import get_tags

import hmm
from hmm.core.estimator import check_random_state

NAMES = ["CategoricalHMM", "GaussianHMM", "GMMHMM", "PoissonHMM"]
#: Constructor arguments away from the defaults, in every kind of value the printer formats.
CHANGED = {
    "n_components": 4,
    "random_state": 3,
    "n_iter": 100,
    "tol": 1e-5,
    "verbose": True,
    "params": "st",
    "init_params": "",
    "implementation": "scaling",
}


#: Constructor arguments of hmm-em's models that hmmlearn's lack.
HMM_EM_ONLY = ("n_init", "symbols", "unknown_symbol")


def ours_and_theirs(name, **kwargs):
    return getattr(hmm, name)(**kwargs), getattr(hmmlearn_hmm, name)(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_params_and_repr_are_hmmlearns(name):
    for kwargs in ({}, CHANGED, {**CHANGED, "startprob_prior": np.full(4, 2.0)}):
        ours, theirs = ours_and_theirs(name, **kwargs)
        mine = ours.get_params()
        # hmm-em's own arguments (restarts; named symbols), at defaults that hmmlearn's behaviour has
        assert {key: mine.pop(key) for key in HMM_EM_ONLY if key in mine} in (
            {"n_init": 1},
            {"n_init": 1, "symbols": None, "unknown_symbol": None},
        )
        assert mine.keys() == theirs.get_params().keys()
        for key, value in theirs.get_params().items():
            np.testing.assert_equal(mine[key], value, err_msg=key)
        assert repr(ours) == repr(theirs)
    assert repr(getattr(hmm, name)(n_init=3)) == f"{name}(n_init=3)"


def test_a_long_repr_is_wrapped_and_cut_as_scikit_learn_cuts_it():
    ours, theirs = ours_and_theirs("GaussianHMM", **CHANGED, covariance_type="full", means_prior=np.arange(400.0))
    assert repr(ours) == repr(theirs)
    assert "..." in repr(ours) and "\n" in repr(ours)


def test_set_params_clone_pickle():
    model = hmm.GaussianHMM(3, covariance_type="diag", random_state=1)
    assert model.set_params(n_iter=7, tol=0.5) is model
    assert (model.n_iter, model.tol) == (7, 0.5)
    assert model.set_params() is model
    with pytest.raises(ValueError, match=r"Invalid parameter 'n_itr' for estimator GaussianHMM\(.*Valid parameters"):
        model.set_params(n_itr=3)
    copy = clone(model)
    assert type(copy) is hmm.GaussianHMM and copy is not model
    assert copy.get_params() == model.get_params()
    X = np.random.default_rng(0).normal(size=(50, 2))
    model.fit(X)
    assert not hasattr(clone(model), "means_")  # clone takes the arguments, not the fit
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.means_, model.means_)
    assert again.get_params() == model.get_params()


def test_nested_params_reach_estimator_valued_arguments():
    inner = hmm.CategoricalHMM(2)
    outer = hmm.CategoricalHMM(3, random_state=inner)  # any argument holding an estimator, as in sklearn
    assert outer.get_params()["random_state__n_components"] == 2
    outer.set_params(random_state__n_components=5)
    assert inner.n_components == 5
    assert "random_state__n_components" not in outer.get_params(deep=False)


def test_scikit_learn_tools_take_the_models():
    model = hmm.CategoricalHMM(2)
    assert not isinstance(model, BaseEstimator)  # the documented difference from hmmlearn
    assert get_tags(model).estimator_type is None  # as for hmmlearn's
    assert get_tags(model) == get_tags(hmmlearn_hmm.CategoricalHMM(2))


@pytest.mark.parametrize("call", ["predict", "score", "predict_proba", "sample", "get_stationary_distribution"])
def test_an_unfitted_model_raises_scikit_learns_not_fitted_error(call):
    ours, theirs = ours_and_theirs("CategoricalHMM", n_components=2)
    X = np.array([[0], [1]])
    args = {"sample": (3,), "get_stationary_distribution": ()}.get(call, (X,))
    with pytest.raises(NotFittedError) as mine:
        getattr(ours, call)(*args)
    with pytest.raises(NotFittedError) as their:
        getattr(theirs, call)(*args)
    assert str(mine.value) == str(their.value)
    assert isinstance(mine.value, ValueError) and isinstance(mine.value, AttributeError)


def test_check_random_state_is_scikit_learns():
    for seed in (0, 7, np.int64(7), 2**31 - 1):
        np.testing.assert_array_equal(check_random_state(seed).rand(5), sklearn_check_random_state(seed).rand(5))
    state = np.random.RandomState(3)
    assert check_random_state(state) is state
    assert check_random_state(None) is np.random.mtrand._rand
    assert check_random_state(np.random) is np.random.mtrand._rand
    for bad in (1.5, "7", np.random.default_rng(0)):
        with pytest.raises(ValueError) as mine:
            check_random_state(bad)
        with pytest.raises(ValueError) as theirs:
            sklearn_check_random_state(bad)
        assert str(mine.value) == str(theirs.value)


def test_grid_search_and_pipeline_run_the_models_as_hmmlearns():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    X = np.random.default_rng(0).integers(0, 3, (200, 1))
    grid = {"n_components": [2, 3]}
    ours = GridSearchCV(hmm.CategoricalHMM(n_iter=5, random_state=0), grid, cv=2).fit(X)
    theirs = GridSearchCV(hmmlearn_hmm.CategoricalHMM(n_iter=5, random_state=0), grid, cv=2).fit(X)
    assert ours.best_params_ == theirs.best_params_
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"], rtol=1e-10)
    assert type(ours.best_estimator_) is hmm.CategoricalHMM
    pipeline = Pipeline([("hmm", hmm.CategoricalHMM(2, n_iter=3, random_state=0))]).fit(X)
    assert pipeline.score(X) == hmm.CategoricalHMM(2, n_iter=3, random_state=0).fit(X).score(X)

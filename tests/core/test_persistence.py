"""Saved models come back identical (settings, parameters, history, random
state); files that are not ours, of another format version or class are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hmm
from hmm.core import persistence

LENGTHS = [30, 1, 45, 12]


def categorical() -> tuple[hmm.BaseHMM, np.ndarray]:
    rs = np.random.RandomState(0)
    X = rs.choice(4, p=[0.4, 0.3, 0.2, 0.1], size=(sum(LENGTHS), 1))
    return hmm.CategoricalHMM(2, random_state=1, n_iter=5, emissionprob_prior=1.5).fit(X, LENGTHS), X


def poisson() -> tuple[hmm.BaseHMM, np.ndarray]:
    rs = np.random.RandomState(0)
    X = rs.poisson([3.0, 0.5], size=(sum(LENGTHS), 2))
    model = hmm.PoissonHMM(2, random_state=1, n_iter=5, transmat_prior=np.full((2, 2), 1.2), lambdas_prior=1.0)
    return model.fit(X, LENGTHS), X


def gaussian() -> tuple[hmm.BaseHMM, np.ndarray]:
    cls = getattr(hmm, "GaussianHMM", None)
    if cls is None:
        pytest.skip("hmm.GaussianHMM is not available yet")
    X = np.random.RandomState(0).normal(size=(sum(LENGTHS), 2))
    return cls(2, covariance_type="diag", random_state=1, n_iter=5).fit(X, LENGTHS), X


def gmm() -> tuple[hmm.BaseHMM, np.ndarray]:
    cls = getattr(hmm, "GMMHMM", None)
    if cls is None:
        pytest.skip("hmm.GMMHMM is not available yet")
    X = np.random.RandomState(0).normal(size=(sum(LENGTHS), 2))
    return cls(2, n_mix=2, covariance_type="diag", random_state=1, n_iter=5).fit(X, LENGTHS), X


MODELS = {"categorical": categorical, "poisson": poisson, "gaussian": gaussian, "gmm": gmm}


def assert_same_params(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        if isinstance(value, np.random.RandomState):
            assert isinstance(actual[key], np.random.RandomState)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(actual[key], value, err_msg=key)
        else:
            assert actual[key] == value, key
            assert type(actual[key]) is type(value), key


@pytest.mark.parametrize("kind", MODELS)
def test_round_trip(kind: str, tmp_path: Path) -> None:
    model, X = MODELS[kind]()
    path = tmp_path / "model.hmm"  # no .npz: the name is kept as given
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.hmm"]
    loaded = hmm.load(path)

    assert type(loaded) is type(model)
    assert_same_params(model.get_params(), loaded.get_params())
    for name in ("startprob_", "transmat_", *model._fitted_emission_attributes):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)
    assert loaded.n_features == model.n_features
    assert list(loaded.monitor_.history) == list(model.monitor_.history)
    assert loaded.monitor_.iter == model.monitor_.iter
    assert loaded.monitor_.converged == model.monitor_.converged

    assert loaded.score(X, LENGTHS) == model.score(X, LENGTHS)
    np.testing.assert_array_equal(loaded.predict(X, LENGTHS), model.predict(X, LENGTHS))
    np.testing.assert_array_equal(loaded.predict_proba(X, LENGTHS), model.predict_proba(X, LENGTHS))
    # The generator fit left behind is restored: the next draws are the same.
    np.testing.assert_array_equal(loaded.sample(10)[0], model.sample(10)[0])


def test_unfitted_model_and_seed(tmp_path: Path) -> None:
    model = hmm.PoissonHMM(3, random_state=7, params="st", algorithm="map", tol=0.5)
    persistence.save(model, tmp_path / "m.npz")
    loaded = persistence.load(str(tmp_path / "m.npz"))
    assert_same_params(model.get_params(), loaded.get_params())
    assert not hasattr(loaded, "startprob_")
    X = np.random.RandomState(2).poisson(4.0, size=(50, 1))
    np.testing.assert_array_equal(loaded.fit(X).lambdas_, model.fit(X).lambdas_)


def rewrite_header(path: Path, **changes: Any) -> None:
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    header = json.loads(str(arrays["header"][()]))
    header.update(changes)
    arrays["header"] = np.array(json.dumps(header))
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    poisson()[0].save(path)
    rewrite_header(path, format_version=2)
    with pytest.raises(ValueError, match=r"uses model file format version 2 .* reads only version 1"):
        hmm.load(path)


def test_unknown_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    poisson()[0].save(path)
    rewrite_header(path, **{"class": "os.system"})
    with pytest.raises(ValueError, match=re.escape("holds a model of unknown class 'os.system'")):
        hmm.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no saved model at .*nothing-here\.npz': the file does not exist"):
        hmm.load(tmp_path / "nothing-here.npz")


def test_not_a_model_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="is not an hmm-em model file"):
        hmm.load(path)
    with open(path, "wb") as file:
        np.savez(file, a=np.zeros(3))
    with pytest.raises(ValueError, match=re.escape("is not an hmm-em model file (no header)")):
        hmm.load(path)
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match=re.escape("is not an hmm-em model file (a single array")):
        hmm.load(tmp_path / "array.npy")


def test_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    poisson()[0].save(path)
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files if key != "fitted.lambdas_"}
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    with pytest.raises(ValueError, match=re.escape("is a damaged model file (missing entry 'fitted.lambdas_')")):
        hmm.load(path)


def test_tampered_parameters_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    model = poisson()[0]
    model.transmat_ = np.array([[0.5, 0.6], [0.5, 0.5]])
    persistence.save(model, path)
    with pytest.raises(hmm.InvalidParameterError, match=re.escape("transmat_ row 0 sums to 1.1")):
        hmm.load(path)


def test_unsavable_parameter(tmp_path: Path) -> None:
    model = hmm.PoissonHMM(2, random_state=np.random.default_rng(0))
    with pytest.raises(TypeError, match="cannot save parameter random_state="):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []  # nothing half-written

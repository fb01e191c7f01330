"""Model files written by earlier releases load, with their parameters, and predict and score as then.

The fixtures in tests/core/data/models_<commit>/ were written by that commit's code
(tests/core/data/make_fixtures.py; see tests/core/data/README.md), with what that code computed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hmm

DATA = Path(__file__).resolve().parent / "data"
#: Commit -> what it is: the last before the layered tree, and the first layered main.
RELEASES = {"bfbe36a": "flat hmm/ (before hmm/core)", "8abbdf6": "layered hmm/core"}
CASES = [
    (commit, name)
    for commit in RELEASES
    for name in sorted(json.loads((DATA / f"models_{commit}" / "expected.json").read_text())["models"])
]


def expected(commit: str) -> dict:
    return json.loads((DATA / f"models_{commit}" / "expected.json").read_text())


def test_every_model_class_and_covariance_type_has_a_fixture_of_each_release():
    for commit in RELEASES:
        recorded = expected(commit)
        assert recorded["commit"].startswith(commit)
        classes = {model["class"] for model in recorded["models"].values()}
        assert classes == {"CategoricalHMM", "GaussianHMM", "PoissonHMM", "GMMHMM"}
        assert {n for n in recorded["models"] if n.startswith("gaussian_")} == {
            f"gaussian_{kind}" for kind in ("spherical", "diag", "full", "tied")
        }
        for name in recorded["models"]:
            assert (DATA / f"models_{commit}" / f"{name}.npz").stat().st_size < 16_384


@pytest.mark.parametrize(("commit", "name"), CASES, ids=lambda v: v)
def test_an_old_model_file_loads_with_its_parameters_and_predicts_and_scores_as_then(commit, name):
    recorded = expected(commit)
    case = recorded["models"][name]
    model = hmm.load(DATA / f"models_{commit}" / f"{name}.npz")
    assert type(model).__name__ == case["class"]
    for attribute, value in case["params"].items():
        # The file holds the doubles the old code fitted; JSON kept them exactly (shortest repr).
        np.testing.assert_array_equal(getattr(model, attribute), np.asarray(value), err_msg=attribute)
    X = np.asarray(recorded["data"][case["data"]])
    lengths = recorded["lengths"]
    np.testing.assert_array_equal(model.predict(X, lengths), case["predict"])
    # Summation order may change with the kernels; the value may not, beyond rounding.
    assert model.score(X, lengths) == pytest.approx(case["score"], rel=1e-10)
    # The loaded model is a working model: it trains further from its parameters.
    model.set_params(init_params="", n_iter=1).fit(X, lengths)
    assert model.monitor_.iter == 1

"""``import hmm`` is cheap: the models, and what they need, load only when used.

Every check runs a fresh interpreter, because this test process has imported
everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import hmm

#: Libraries ``import hmm`` must not load (the models need the first three and part of scipy; scikit-learn
#: only for what is rare: its repr, k-means initialisation, the not-fitted error; the rest belong to the
#: Spark, S3, Airflow and report layers, and to spec validation, which imports jsonschema when it runs).
HEAVY = (
    "numba",
    "llvmlite",
    "scipy",
    "sklearn",
    "pyspark",
    "pyarrow",
    "pandas",
    "boto3",
    "airflow",
    "matplotlib",
    "jsonschema",
)
#: hmm modules that load numba, scipy, scikit-learn or the Spark layer.
MODEL_MODULES = (
    "hmm.core.base",
    "hmm.core.kernels",
    "hmm.core.covariance",
    "hmm.core.categorical",
    "hmm.core.gaussian",
    "hmm.core.gmm",
    "hmm.core.poisson",
    "hmm.distributed.spark",
)


def modules_after(code: str) -> set[str]:
    """The top-level and hmm modules loaded by a fresh interpreter after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(name for name in names if name in modules)


def test_import_hmm_loads_no_model_code_and_no_heavy_library():
    modules = modules_after("import hmm; hmm.__version__")
    assert loaded(modules, HEAVY) == []
    # Only the version and the (import-free) registry through which a DataFrame reaches the Spark layer.
    assert sorted(m for m in modules if m.startswith("hmm.")) == ["hmm._version", "hmm.core", "hmm.core.engines"]


def test_the_public_names_load_on_first_use():
    modules = modules_after("import hmm; hmm.CategoricalHMM")
    assert {"hmm.core.categorical", "hmm.core.base", "hmm.core.kernels", "numba"} <= modules
    # The models do not need the Spark layer, nor what it pulls in (Arrow records, Parquet splits, S3),
    # nor scikit-learn (hmm.core.estimator: 0.6-0.7 s of imports in every process that touches a model).
    assert (
        loaded(
            modules,
            (
                "hmm.distributed.spark",
                "hmm.distributed.sources",
                "hmm.distributed.arrow",
                "hmm.training.store",
                "pyspark",
                "pyarrow",
                "boto3",
                "sklearn",
                "pandas",
                "scipy.stats",
            ),
        )
        == []
    )


@pytest.mark.parametrize("name", ["CategoricalHMM", "PoissonHMM", "GaussianHMM", "GMMHMM"])
def test_fitting_and_scoring_needs_no_scikit_learn(name):
    """Only k-means initialisation (Gaussian and GMM means) loads scikit-learn, as hmmlearn's does."""
    code = f"""
import numpy as np
import hmm
rng = np.random.default_rng(0)
X = rng.integers(0, 3, (60, 1)) if {name!r} in ("CategoricalHMM", "PoissonHMM") else rng.normal(size=(60, 2))
model = hmm.{name}(2, n_iter=3, random_state=0, init_params="st")
for attribute, value in dict(
    emissionprob_=np.full((2, 3), 1 / 3),
    lambdas_=np.array([[1.0], [2.0]]),
    means_=np.array([[0.0, 0.0], [1.0, 1.0]]) if {name!r} == "GaussianHMM" else np.array([[[0.0, 0.0]], [[1.0, 1.0]]]),
    covars_=np.ones((2, 2)) if {name!r} == "GaussianHMM" else np.ones((2, 1, 2)),
    weights_=np.ones((2, 1)),
).items():
    setattr(model, attribute, value)
model.fit(X, [30, 30])
model.score(X, [30, 30])
model.predict(X, [30, 30])
"""
    if name == "GMMHMM":
        code = code.replace("hmm.GMMHMM(2,", "hmm.GMMHMM(2, n_mix=1,")
    assert loaded(modules_after(code), ("sklearn", "scipy.stats", "pandas")) == []


def test_fitting_arrays_does_not_import_the_spark_layer():
    code = """
import numpy as np
import hmm
X = np.array([[0], [1], [1], [2], [0], [2], [2], [1]])
model = hmm.CategoricalHMM(2, n_iter=3, random_state=0).fit(X, [5, 3])
model.score(X, [5, 3])
"""
    assert loaded(modules_after(code), ("hmm.distributed.spark", "hmm.distributed.sources", "pyspark", "boto3")) == []


def test_every_public_name_resolves_and_is_listed():
    assert set(hmm.__all__) <= set(dir(hmm))
    for name in hmm.__all__:
        value = getattr(hmm, name)
        assert value.__name__ == name
    assert issubclass(hmm.CategoricalHMM, hmm.BaseHMM)
    assert isinstance(hmm.__version__, str) and hmm.__version__
    namespace: dict[str, object] = {}
    exec("from hmm import *", namespace)
    assert set(hmm.__all__) <= set(namespace)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'hmm' has no attribute 'HiddenMarkovModel'"):
        hmm.HiddenMarkovModel  # noqa: B018
    assert getattr(hmm, "HiddenMarkovModel", None) is None


@pytest.mark.parametrize(
    "module",
    [
        "hmm.training",
        "hmm.orchestration.decisions",
        "hmm.training.store",
        "hmm.training.steps",
        "hmm.core.persistence",
    ],
)
def test_the_training_modules_load_no_model_code(module):
    """What the Airflow DAG file and its tasks import at parse time (``tests/dags/test_dag_imports.py``)."""
    modules = modules_after(f"import {module}")
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, MODEL_MODULES) == []


def test_loading_a_saved_model_resolves_its_class_lazily(tmp_path):
    path = tmp_path / "model.npz"
    X = [[0], [1], [1], [2], [0], [2], [2], [1]]
    hmm.CategoricalHMM(2, n_iter=3, random_state=0).fit(X, [5, 3]).save(str(path))
    code = f"import hmm; model = hmm.load({str(path)!r}); print(type(model).__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "hmm.core.categorical"

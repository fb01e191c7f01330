"""hmm-em: Baum-Welch training of hidden Markov models, from a laptop to a cluster.

A drop-in for hmmlearn 0.3.3's models (same arguments, attributes and
results after every EM iteration) running compiled kernels over all
sequences at once.

``import hmm`` is cheap: the public names below are imported on first use
(PEP 562), so a process that only needs the store, the training steps' plans
or the Airflow tasks (every Airflow task process parses the DAG file) does
not pay for numba, scipy and scikit-learn.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from .core.engines import register_engine

#: Public name -> the submodule defining it; ``hmm.<name>`` imports that submodule on first access.
_LAZY = {
    "BaseHMM": "core.base",
    "CategoricalHMM": "core.categorical",
    "ConvergenceMonitor": "core.convergence",
    "GMMHMM": "core.gmm",
    "GaussianHMM": "core.gaussian",
    "InvalidModelFileError": "core.persistence",
    "InvalidParameterError": "core.sequences",
    "InvalidSequenceError": "core.sequences",
    "ModelTooLargeError": "core.base",
    "PoissonHMM": "core.poisson",
    "SufficientStats": "core.stats",
    "has_converged": "core.convergence",
    "load": "core.persistence",
}

__all__ = [
    "GMMHMM",
    "BaseHMM",
    "CategoricalHMM",
    "ConvergenceMonitor",
    "GaussianHMM",
    "InvalidModelFileError",
    "InvalidParameterError",
    "InvalidSequenceError",
    "ModelTooLargeError",
    "PoissonHMM",
    "SufficientStats",
    "has_converged",
    "load",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ provides them
    from .core.base import BaseHMM, ModelTooLargeError
    from .core.categorical import CategoricalHMM
    from .core.convergence import ConvergenceMonitor, has_converged
    from .core.gaussian import GaussianHMM
    from .core.gmm import GMMHMM
    from .core.persistence import InvalidModelFileError, load
    from .core.poisson import PoissonHMM
    from .core.sequences import InvalidParameterError, InvalidSequenceError
    from .core.stats import SufficientStats


def _is_spark_dataframe(data: Any) -> bool:
    """A Spark DataFrame (classic or Connect), told without importing pyspark: none exists before it is."""
    if "pyspark" not in sys.modules:
        return False
    return any(c.__module__.startswith("pyspark.sql") and c.__name__ == "DataFrame" for c in type(data).__mro__)


# The core takes arrays; a DataFrame goes to the distributed layer, imported when one arrives.
register_engine(_is_spark_dataframe, "hmm.distributed.spark")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


try:
    # Written by setuptools-scm when the package is built or installed: the git commit's version.
    from ._version import __version__
except ImportError:  # a source tree that was never built or installed
    __version__ = "0.0"  # pyproject.toml's fallback_version: the code version is unknown

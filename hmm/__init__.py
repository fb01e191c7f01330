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
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule defining it; ``hmm.<name>`` imports that submodule on first access.
_LAZY = {
    "BaseHMM": "base",
    "CategoricalHMM": "categorical",
    "ConvergenceMonitor": "convergence",
    "GMMHMM": "gmm",
    "GaussianHMM": "gaussian",
    "InvalidModelFileError": "persistence",
    "InvalidParameterError": "sequences",
    "InvalidSequenceError": "sequences",
    "ModelTooLargeError": "base",
    "PoissonHMM": "poisson",
    "SufficientStats": "stats",
    "has_converged": "convergence",
    "load": "persistence",
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
    from .base import BaseHMM, ModelTooLargeError
    from .categorical import CategoricalHMM
    from .convergence import ConvergenceMonitor, has_converged
    from .gaussian import GaussianHMM
    from .gmm import GMMHMM
    from .persistence import InvalidModelFileError, load
    from .poisson import PoissonHMM
    from .sequences import InvalidParameterError, InvalidSequenceError
    from .stats import SufficientStats


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

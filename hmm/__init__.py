"""hmm-em: Baum-Welch training of hidden Markov models, from a laptop to a cluster.

A drop-in for hmmlearn 0.3.3's models (same arguments, attributes and
results after every EM iteration) running compiled kernels over all
sequences at once.
"""

from .base import BaseHMM
from .categorical import CategoricalHMM
from .convergence import ConvergenceMonitor, has_converged
from .gaussian import GaussianHMM
from .gmm import GMMHMM
from .persistence import load
from .poisson import PoissonHMM
from .sequences import InvalidParameterError, InvalidSequenceError
from .stats import SufficientStats

__all__ = [
    "GMMHMM",
    "BaseHMM",
    "CategoricalHMM",
    "ConvergenceMonitor",
    "GaussianHMM",
    "InvalidParameterError",
    "InvalidSequenceError",
    "PoissonHMM",
    "SufficientStats",
    "has_converged",
    "load",
]
try:
    # Written by setuptools-scm when the package is built or installed: the git commit's version.
    from ._version import __version__
except ImportError:  # a source tree that was never built or installed
    __version__ = "0.0"  # pyproject.toml's fallback_version: the code version is unknown

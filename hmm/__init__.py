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
__version__ = "0.1.0"

"""When EM stops: hmmlearn's rule, usable in-process and by a distributed driver.

The log-likelihood an iteration reports is that of the parameters it
*started* from. Training has converged when the last gain is below ``tol``
(absolute), or after ``n_iter`` iterations.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Sequence

import numpy as np

_log = logging.getLogger(__name__)


def has_converged(history: Sequence[float], tol: float, n_iter: int) -> bool:
    """hmmlearn's stopping rule over the log-likelihoods reported so far."""
    return len(history) >= n_iter or (len(history) >= 2 and history[-1] - history[-2] < tol)


class ConvergenceMonitor:
    """Drop-in for ``hmmlearn.base.ConvergenceMonitor``.

    ``history`` holds every reported log-likelihood; ``seconds`` the wall time
    of each iteration (an addition, for progress tables).
    """

    _template = "{iter:>10d} {log_prob:>16.8f} {delta:>+16.8f}"

    def __init__(self, tol: float, n_iter: int, verbose: bool):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history: deque[float] = deque()
        self.seconds: list[float] = []
        self.iter = 0

    def __repr__(self) -> str:
        return (
            f"ConvergenceMonitor(history={list(self.history)}, iter={self.iter}, "
            f"n_iter={self.n_iter}, tol={self.tol}, verbose={self.verbose})"
        )

    def reset(self) -> None:
        """Forget the history: the next report starts a new fit."""
        self._reset()

    def _reset(self) -> None:
        self.iter = 0
        self.history.clear()
        self.seconds.clear()

    def report(self, log_prob: float, seconds: float | None = None) -> None:
        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else np.nan
            print(self._template.format(iter=self.iter + 1, log_prob=log_prob, delta=delta), file=sys.stderr)
        precision = np.finfo(float).eps ** 0.5
        if self.history and log_prob - self.history[-1] < -precision:
            _log.warning(
                "Model is not converging.  Current: %s is not greater than %s. Delta is %s",
                log_prob,
                self.history[-1],
                log_prob - self.history[-1],
            )
        self.history.append(log_prob)
        if seconds is not None:
            self.seconds.append(seconds)
        self.iter += 1

    @property
    def converged(self) -> bool:
        return self.iter == self.n_iter or (len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol)

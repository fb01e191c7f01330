"""Several candidate models trained on one pass over the data per iteration.

EM climbs to a local maximum of the likelihood, so where it ends depends on where it starts.
The remedy every library offers on small data is restarts: train from several initial
parameters and keep the best (scikit-learn's ``GaussianMixture(n_init=...)``). On big data,
reading the data is what costs, so here every candidate's E-step runs on each batch while it
is in memory: an iteration reads the data once whatever the number of candidates. The same
loop serves state-count sweeps (candidates that differ in ``n_components``).

A candidate's trajectory does not depend on the others: candidate ``i`` of ``n_init`` starts
from seed ``seed + i`` (:func:`candidate_seeds`) and equals a separate fit with that seed, bit
for bit. Pruning (``prune_after`` iterations, then only the best ``keep`` go on) stops the
others early; it never changes a survivor.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.core.estimator import check_random_state
from hmm.core.stats import StatisticsSet

if TYPE_CHECKING:
    from hmm.core.base import BaseHMM
    from hmm.core.stats import SufficientStats

#: Seeds of candidates are kept in numpy's seed range, so each is a valid ``random_state``.
SEED_MODULUS = 2**32


def check_n_init(n_init: Any) -> int:
    """``n_init`` as an int: a positive integer (bools refused)."""
    if isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}")
    return int(n_init)


def candidate_seeds(random_state: Any, n_init: int) -> list[Any]:
    """The ``random_state`` of each of ``n_init`` candidates.

    Parameters
    ----------
    random_state : None, int or numpy.random.RandomState
        The model's ``random_state``.
    n_init : int
        The number of candidates.

    Returns
    -------
    seeds : list of length n_init
        ``[random_state]`` for one candidate (hmmlearn's behaviour, untouched). For several: an
        integer seed ``s`` gives ``s, s + 1, ...`` (modulo 2**32), so candidate ``i`` can be
        re-run alone with ``random_state=s + i``; ``None`` or a ``RandomState`` first draws ``s``
        from it.
    """
    n_init = check_n_init(n_init)
    if n_init == 1:
        return [random_state]
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        first = int(random_state)
    else:
        first = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    return [(first + i) % SEED_MODULUS for i in range(n_init)]


@dataclass
class Candidate:
    """One model of a candidate set and where it stands."""

    model: BaseHMM
    #: "running", "converged" (hmmlearn's rule, or ``n_iter`` reached) or "pruned".
    status: str = "running"
    #: The score candidates are ranked by: the last log-likelihood, unless a driver ranks otherwise.
    score: float = -np.inf
    #: Iterations (E-steps) this candidate took part in.
    iterations: int = 0
    history: list[float] = field(default_factory=list)


def rank(candidates: Sequence[Candidate]) -> list[int]:
    """Indices of ``candidates``, best first: highest score, then lowest index (stable, NaN last)."""
    return sorted(range(len(candidates)), key=lambda i: (-_finite_or_minus_inf(candidates[i].score), i))


def _finite_or_minus_inf(value: float) -> float:
    return float(value) if np.isfinite(value) else -np.inf


def run_candidates(
    models: Sequence[BaseHMM],
    statistics: Callable[[list[BaseHMM]], list[SufficientStats]],
    *,
    prune_after: int | None = None,
    keep: int | None = None,
    score: Callable[[BaseHMM, SufficientStats], float] | None = None,
) -> list[Candidate]:
    """EM for every model, the E-steps of one iteration on one pass over the data.

    Parameters
    ----------
    models : sequence of BaseHMM
        Candidates holding their initial parameters.
    statistics : callable
        ``statistics(active)`` -> the E-step statistics of each model of ``active``, in order,
        computed on one pass over the data.
    prune_after : int, optional
        After this many iterations, only the best ``keep`` candidates (by score, converged ones
        included) go on; the others are marked "pruned". Never, if not given.
    keep : int, optional
        How many candidates survive pruning (default 1).
    score : callable, optional
        ``score(model, stats)`` -> the number candidates are ranked by after an iteration (e.g. a
        held-out log-likelihood); by default the log-likelihood of ``stats``.

    Returns
    -------
    candidates : list of Candidate
        In the order of ``models``, each with its status, score and log-likelihood history; every
        model holds its final parameters and ``monitor_``.
    """
    candidates = [Candidate(model) for model in models]
    for candidate in candidates:
        candidate.model.monitor_.reset()
        if candidate.model.n_iter <= 0:
            candidate.status = "converged"
    iteration = 0
    while True:
        active = [c for c in candidates if c.status == "running"]
        if not active:
            return candidates
        started = time.perf_counter()
        stats = statistics([c.model for c in active])
        seconds = time.perf_counter() - started
        for candidate, batch_stats in zip(active, stats, strict=True):
            model = candidate.model
            model.update(batch_stats)
            model.monitor_.report(batch_stats.log_likelihood, seconds)
            candidate.iterations += 1
            candidate.history.append(batch_stats.log_likelihood)
            candidate.score = batch_stats.log_likelihood if score is None else score(model, batch_stats)
            if model.monitor_.converged or candidate.iterations >= model.n_iter:
                candidate.status = "converged"
        iteration += 1
        if prune_after is not None and iteration == prune_after:
            for index in rank(candidates)[keep or 1 :]:
                if candidates[index].status == "running":
                    candidates[index].status = "pruned"


def best(candidates: Sequence[Candidate]) -> Candidate:
    """The best candidate (:func:`rank`)."""
    return candidates[rank(candidates)[0]]


class CandidateSet:
    """Several models as one for a pass over the data: each batch is checked and its statistics
    computed for every model while it is in memory, into one :class:`StatisticsSet`.

    It offers the batch half of the EM protocol (``observes_symbols``, ``check_batch``,
    ``batch_statistics``, ``new_statistics``; ``batch_log_likelihoods`` for held-out
    batches), so every path that turns batches into records
    (:mod:`hmm.distributed.arrow`) serves a candidate set unchanged.
    """

    def __init__(self, models: Sequence[BaseHMM]):
        if not models:
            raise ValueError("a candidate set needs at least one model")
        kinds = {model.observes_symbols for model in models}
        if len(kinds) > 1:
            raise ValueError("the candidates of one set must all observe symbols, or all vectors")
        self.models = list(models)

    @property
    def observes_symbols(self) -> bool:
        return self.models[0].observes_symbols

    @property
    def symbols(self) -> list[str] | None:
        """The candidates' vocabulary of named symbols (fixed before candidates are made), if any."""
        return getattr(self.models[0], "symbols", None)

    def check_batch(self, X: Any, offsets: np.ndarray, limit: int | None = None) -> np.ndarray:
        """The batch's frames after every candidate's rules (sizes differ between candidates)."""
        observations = X
        for model in self.models:
            observations = model.check_batch(X, offsets, limit)
        return observations

    def batch_statistics(self, X: np.ndarray, offsets: np.ndarray) -> StatisticsSet:
        return StatisticsSet([model.batch_statistics(X, offsets) for model in self.models])

    def batch_log_likelihoods(self, X: np.ndarray, offsets: np.ndarray) -> list[float]:
        """Every candidate's log-likelihood of the batch, by the forward pass alone (held-out sequences)."""
        return [model.batch_log_likelihood(X, offsets) for model in self.models]

    def new_statistics(self) -> StatisticsSet:
        return StatisticsSet([model.new_statistics() for model in self.models])

"""Poisson emissions: each observation is a vector of independent counts."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln

from hmm.core.base import BaseHMM, check_shape, real_array
from hmm.core.estimator import check_random_state
from hmm.core.kernels import emissions
from hmm.core.sequences import InvalidParameterError, InvalidSequenceError, as_2d_float, check_n_features, where
from hmm.core.stats import SufficientStats

_COUNT_RULE = "Poisson counts must be non-negative integers"
#: log(n!) for the counts the kernel looks up rather than computes (scipy's values, as hmmlearn's).
_LOG_FACTORIALS = gammaln(np.arange(1, 1025, dtype=np.float64))


class PoissonHMM(BaseHMM):
    """HMM with Poisson emissions; drop-in for ``hmmlearn.hmm.PoissonHMM``.

    ``X`` holds non-negative integer counts, shape ``(n_samples, n_features)``
    (or 1-D for one feature), of integer or float dtype. Features are
    independent given the state. Parameter letters: ``s`` startprob,
    ``t`` transmat, ``l`` lambdas. Fitted: ``lambdas_`` (n_components, n_features).

    ``lambdas_prior`` and ``lambdas_weight`` are the alpha and beta of a gamma
    prior on the rates (hmmlearn's M-step, Hyvönen & Tolonen 2019, section 3.2).
    """

    _emission_letters = "l"
    _fitted_emission_attributes = ("lambdas_",)

    def __init__(
        self,
        n_components: int = 1,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        lambdas_prior: Any = 0.0,
        lambdas_weight: Any = 0.0,
        algorithm: str = "viterbi",
        random_state: Any = None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = "stl",
        init_params: str = "stl",
        implementation: str = "log",
        n_init: int = 1,
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
            n_init=n_init,
        )
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    # ------------------------------------------------------------- the data

    def _as_observations(self, X: Any) -> np.ndarray:
        return as_2d_float(X)

    def _check_values(self, X: np.ndarray, offsets: np.ndarray) -> None:
        """Counts must be finite, non-negative and whole; the first offender is named."""
        rules = (
            (~np.isfinite(X), "is not finite"),
            (X < 0, "is negative"),
            (np.floor(X) != X, "is not an integer"),
        )
        for broken, what in rules:
            if broken.any():
                row, column = np.argwhere(broken)[0]
                raise InvalidSequenceError(
                    f"{where(offsets, row, column)}: count {X[row, column]} {what} ({_COUNT_RULE}); "
                    f"{int(broken.sum())} value(s) break this"
                )

    def _check_observations(self, X: np.ndarray, offsets: np.ndarray) -> None:
        check_n_features(X, self.n_features)

    # ------------------------------------------------------- initialisation

    def _init(self, X: np.ndarray, lengths: np.ndarray | None = None) -> None:
        """hmmlearn's: rates drawn from a gamma matching the mean and variance of all of X."""
        super()._init(X, lengths)
        # hmmlearn replaces random_state by the generator it draws from.
        self.random_state = check_random_state(self.random_state)
        mean_X = X.mean()
        var_X = X.var()
        if self._needs_init("l", "lambdas_"):
            if not (mean_X > 0 and var_X > 0):
                # hmmlearn would draw NaN rates here and fail later, obscurely.
                raise InvalidSequenceError(
                    f"cannot initialise lambdas_ by the method of moments: every count in X equals {X.flat[0]} "
                    "(variance 0); set lambdas_ yourself and remove 'l' from init_params"
                )
            self.lambdas_ = self.random_state.gamma(
                shape=mean_X**2 / var_X,
                scale=var_X / mean_X,  # numpy uses theta = 1 / beta
                size=(self.n_components, self.n_features),
            )

    def _check(self) -> None:
        super()._check()
        self.lambdas_ = np.atleast_2d(real_array("lambdas_", self.lambdas_))
        if getattr(self, "n_features", None) is None:
            self.n_features = self.lambdas_.shape[1]
        check_shape("lambdas_", self.lambdas_, (self.n_components, self.n_features))
        if not np.all(np.isfinite(self.lambdas_)):
            raise InvalidParameterError("lambdas_ contains non-finite values; Poisson rates must be finite")
        if np.any(self.lambdas_ < 0):
            # A rate of 0 is allowed: the M-step gives it to a feature never counted in a state.
            raise InvalidParameterError("lambdas_ contains negative values; Poisson rates must be >= 0")

    # ----------------------------------------------------------- likelihood

    def _frame_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """sum_d x_d log(lam_jd) - lam_jd - log(x_d!), in one compiled pass over the frames.

        A zero rate contributes log P = 0 where the count is 0 and -inf
        elsewhere (``scipy.stats.poisson.logpmf``'s 0 log 0 = 0).
        """
        out = np.empty((X.shape[0], self.n_components))
        emissions.poisson_frames(np.ascontiguousarray(X), *self._rates(), out, emissions.NONE_1D)
        return out

    def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log rates, -inf for a zero rate; the sum of each state's rates; log(n!) of small n), for the kernel."""
        with np.errstate(divide="ignore"):
            log_rates = np.log(self.lambdas_)
        return np.ascontiguousarray(log_rates), np.ascontiguousarray(self.lambdas_.sum(axis=1)), _LOG_FACTORIALS

    def _frame_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if type(self)._frame_log_likelihood is not PoissonHMM._frame_log_likelihood:
            return super()._frame_probabilities(X)  # a subclass's own likelihood
        frameprob = np.empty((X.shape[0], self.n_components))
        log_scale = np.empty(X.shape[0])
        emissions.poisson_frames(np.ascontiguousarray(X), *self._rates(), frameprob, log_scale)
        return frameprob, log_scale

    # --------------------------------------------------------------- M-step

    def _new_emission_stats(self) -> dict[str, np.ndarray]:
        return {"post": np.zeros(self.n_components), "obs": np.zeros((self.n_components, self.n_features))}

    def _accumulate_emission_stats(self, stats: dict[str, np.ndarray], X: np.ndarray, posteriors: np.ndarray) -> None:
        if "l" in self.params:
            stats["post"] += np.ones(X.shape[0]) @ posteriors  # BLAS; numpy's axis-0 sum is slower
            stats["obs"] += posteriors.T @ X

    def _maximize_emissions(self, stats: SufficientStats) -> dict[str, np.ndarray]:
        """hmmlearn's posterior mean under the gamma(lambdas_prior, lambdas_weight) prior."""
        if "l" not in self.params:
            return {}
        # Based on: Hyvönen & Tolonen, "Bayesian Inference 2019", section 3.2.
        # n is the total posterior mass over all states, as in hmmlearn.
        alphas, betas = self.lambdas_prior, self.lambdas_weight
        n = stats["post"].sum()
        y_bar = stats["obs"] / stats["post"][:, None]
        return {"lambdas_": (alphas + n * y_bar) / (betas + n)}

    def _emission_parameter_shapes(self) -> dict[str, tuple[str, ...]]:
        return {"lambdas_": ("n_components", "n_features")}

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        nc, nf = self.n_components, getattr(self, "n_features", None) or 0
        return {"s": nc - 1, "t": nc * (nc - 1), "l": nc * nf}

    def _generate_sample_from_state(self, state: int, random_state: np.random.RandomState) -> Any:
        return random_state.poisson(self.lambdas_[state])

    def _emission_divergence(self, reference: BaseHMM) -> np.ndarray:
        """Symmetric Kullback-Leibler divergence of independent Poisson counts: sum of (a - b) log(a / b)."""
        a, b = self.lambdas_[:, None, :], reference.lambdas_[None, :, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a == b, 0.0, (a - b) * (np.log(a) - np.log(b)))
        return terms.sum(-1)

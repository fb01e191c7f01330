"""Gaussian emissions: each observation is a real vector of ``n_features`` values."""

from __future__ import annotations

from typing import Any

import numpy as np

from hmm.core import kernels
from hmm.core.base import FUSED_BATCH_FACTOR, BaseHMM, check_shape, real_array
from hmm.core.covariance import (
    Components,
    check_array_shape,
    check_covariance_type,
    check_finite_units,
    check_matrices,
    check_variances,
    data_covariance,
    distribute_covar_matrix,
    fill_covars,
    gaussian_components,
    log_density,
    symmetric_kl_gaussians,
)
from hmm.core.kernels import emissions
from hmm.core.sequences import InvalidParameterError, as_2d_float, check_finite, check_n_features
from hmm.core.stats import SufficientStats


def _state(index: int) -> str:
    return f"state {index}"


def _tied(_: int) -> str:
    return "all states (tied)"


def check_gaussian_covars(
    covars: np.ndarray, covariance_type: str, n_components: int, n_features: int | None, name: str = "covars_"
) -> None:
    """Shape and definiteness of GaussianHMM covariances in their stored layout.

    ``n_features`` may be unknown (``None``) when covariances are assigned
    before the model has seen data; only the known axes are checked then.
    """
    check_covariance_type(covariance_type)
    nc, nf = n_components, n_features
    if covariance_type == "spherical":
        # hmmlearn stores spherical variances tiled per feature, (K, D), after
        # initialisation and every M-step; a user may assign (K,).
        if covars.ndim == 1:
            check_array_shape(name, covars, (nc,), "(n_components,)")
        else:
            check_array_shape(name, covars, (nc, nf), "(n_components,) or (n_components, n_features)")
        check_variances(name, covars.reshape(nc, -1), _state)
    elif covariance_type == "diag":
        check_array_shape(name, covars, (nc, nf), "(n_components, n_features)")
        check_variances(name, covars, _state)
    elif covariance_type == "full":
        check_array_shape(name, covars, (nc, nf, nf), "(n_components, n_features, n_features)")
        if covars.shape[1] != covars.shape[2]:
            raise InvalidParameterError(f"{name} must hold square matrices, got shape {covars.shape}")
        check_matrices(name, covars, _state)
    else:
        check_array_shape(name, covars, (nf, nf), "(n_features, n_features)")
        if covars.shape[0] != covars.shape[1]:
            raise InvalidParameterError(f"{name} must be a square matrix, got shape {covars.shape}")
        check_matrices(name, covars[None], _tied)


class GaussianHMM(BaseHMM):
    """HMM with Gaussian emissions; drop-in for ``hmmlearn.hmm.GaussianHMM``.

    ``X`` holds real vectors, shape ``(n_samples, n_features)`` (1-D: one feature).
    Parameter letters: ``s`` startprob, ``t`` transmat, ``m`` means, ``c`` covars.
    Fitted: ``means_`` (n_components, n_features) and ``covars_``, always
    returned as full matrices (n_components, n_features, n_features); the
    layout of :attr:`covariance_type` is stored in ``_covars_``:
    (K,) or (K, D) spherical, (K, D) diag, (K, D, D) full, (D, D) tied.
    Priors: normal on the means (``means_prior``, ``means_weight``), inverse
    gamma (spherical, diag) or inverse Wishart (full, tied) on the covariances
    (``covars_prior``, ``covars_weight``), with hmmlearn's M-step formulas.
    """

    _emission_letters = "mc"
    _fitted_emission_attributes = ("means_", "_covars_")
    # Fitted attributes, set by _init or by the user (declared for type checkers).
    means_: np.ndarray
    _covars_: np.ndarray

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "diag",
        min_covar: float = 1e-3,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        means_prior: Any = 0,
        means_weight: Any = 0,
        covars_prior: Any = 1e-2,
        covars_weight: Any = 1,
        algorithm: str = "viterbi",
        random_state: Any = None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = "stmc",
        init_params: str = "stmc",
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
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    @property
    def covars_(self) -> np.ndarray:
        """Covariances as full matrices, (n_components, n_features, n_features).

        For spherical variances stored per feature (hmmlearn's fitted layout)
        hmmlearn returns n_components * n_features matrices, state k's at
        index k of that flattened list; here state k gets its own variance.
        """
        n_features = getattr(self, "n_features", None)
        if n_features is None:
            n_features = self.means_.shape[1] if hasattr(self, "means_") else self._covars_.shape[-1]
        return fill_covars(self._covars_, self.covariance_type, self.n_components, n_features)

    @covars_.setter
    def covars_(self, covars: Any) -> None:
        # Assigning validates at once, as hmmlearn's setter does.
        covars = np.array(covars, dtype=np.float64, copy=True)
        check_gaussian_covars(covars, self.covariance_type, self.n_components, None)
        self._covars_ = covars

    # -------------------------------------------------------------- checks

    def _check_settings(self) -> None:
        super()._check_settings()
        check_covariance_type(self.covariance_type)

    def _as_observations(self, X: Any) -> np.ndarray:
        return as_2d_float(X)

    def _check_values(self, X: np.ndarray, offsets: np.ndarray) -> None:
        check_finite(X, offsets)

    def _check_observations(self, X: np.ndarray, offsets: np.ndarray) -> None:
        check_n_features(X, self.n_features)

    def _check(self) -> None:
        super()._check()
        check_covariance_type(self.covariance_type)
        self.means_ = real_array("means_", self.means_)
        if self.means_.ndim != 2:
            raise InvalidParameterError(
                f"means_ must have shape (n_components, n_features) = ({self.n_components}, ?), got {self.means_.shape}"
            )
        check_shape("means_", self.means_, (self.n_components, self.means_.shape[1]))
        check_finite_units("means_", self.means_, _state, 1)
        # As in hmmlearn, the means decide the dimension.
        self.n_features = self.means_.shape[1]
        if not hasattr(self, "_covars_"):
            raise InvalidParameterError("covars_ is not set")
        self._covars_ = real_array("covars_", self._covars_)
        check_gaussian_covars(self._covars_, self.covariance_type, self.n_components, self.n_features)

    # ------------------------------------------------------ initialisation

    def _init(self, X: np.ndarray, lengths: np.ndarray | None = None) -> None:
        """hmmlearn's: k-means centres (same ``random_state``, ``n_init=10``) and the data covariance."""
        super()._init(X, lengths)
        if self._needs_init("m", "means_"):
            from sklearn import cluster  # hmmlearn's k-means, loaded when a fit initialises means

            kmeans = cluster.KMeans(n_clusters=self.n_components, random_state=self.random_state, n_init=10)
            kmeans.fit(X)
            self.means_ = kmeans.cluster_centers_
        if self._needs_init("c", "covars_"):
            cv = data_covariance(X, self.min_covar)
            self.covars_ = distribute_covar_matrix(cv, self.covariance_type, self.n_components).copy()

    # ---------------------------------------------------------------- EM

    def _frame_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        return log_density(X, self.means_, self._covars_, self.covariance_type)

    def _components(self) -> Components:
        return gaussian_components(self.means_, self._covars_, self.covariance_type)

    def _frame_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not self._densities_in_lanes():
            return super()._frame_probabilities(X)  # a subclass's own densities
        # densities, maximum and exp in one compiled pass over blocks of frames
        frameprob = np.empty((X.shape[0], self.n_components))
        log_scale = np.empty(X.shape[0])
        emissions.gaussian_frames(np.ascontiguousarray(X), *self._components(), frameprob, log_scale)
        return frameprob, log_scale

    def _new_emission_stats(self) -> dict[str, np.ndarray]:
        nc, nf = self.n_components, self.n_features
        stats = {"post": np.zeros(nc), "obs": np.zeros((nc, nf))}
        if self.covariance_type in ("spherical", "diag"):
            stats["obs**2"] = np.zeros((nc, nf))
        else:
            stats["obs*obs.T"] = np.zeros((nc, nf, nf))
        return stats

    def _densities_in_lanes(self) -> bool:
        """Whether the E-step computes the densities in the kernel's lanes (not a subclass's own)."""
        return type(self)._frame_log_likelihood is GaussianHMM._frame_log_likelihood

    def _e_step_frames_per_batch(self) -> int:
        # with the densities in the lanes, the fused kernel holds no frames x states array
        return FUSED_BATCH_FACTOR * self.frames_per_batch if self._densities_in_lanes() else self.frames_per_batch

    def _accumulate(
        self, stats: SufficientStats, X: np.ndarray, offsets: np.ndarray, first_sequence: int
    ) -> np.ndarray:
        # One fused pass: the kernel adds up the posteriors' moments (sum_t p_tk, p_tk x_t, and p_tk x_td^2
        # or p_tk x_t x_t^T) while they are in its registers, so neither the frames x states posteriors nor
        # a BLAS pass over them are needed.
        nc, nf = self.n_components, self.n_features
        diagonal = self.covariance_type in ("spherical", "diag")
        moments = np.zeros((nc, nf + 1 + (nf if diagonal else nf * (nf + 1) // 2)))
        if not self._densities_in_lanes():
            # a subclass's own densities, as frame probabilities
            log_likelihoods = self._forward_backward_moments(X, offsets, first_sequence, stats, moments)
        else:
            # the densities too are computed in the kernel's lanes: no frames x states array at all
            log_likelihoods = np.empty(offsets.shape[0] - 1)
            failed = kernels.gaussian_forward_backward_moments(
                self.startprob_,
                self.transmat_,
                *self._components(),
                np.ascontiguousarray(X, dtype=np.float64),
                offsets,
                log_likelihoods,
                stats.start,
                stats.trans,
                moments,
            )
            self._checked(failed, log_likelihoods, None, X, offsets, first_sequence)
        # hmmlearn gathers 'post' and 'obs' only when the means are trained,
        # yet its covariance update reads them too: with params lacking 'm'
        # it would divide by zero posteriors. They are gathered for 'c' too.
        if "m" in self.params or "c" in self.params:
            stats.emission["post"] += moments[:, nf]
            stats.emission["obs"] += moments[:, :nf]
        if "c" in self.params:
            products = moments[:, nf + 1 :]
            if diagonal:
                stats.emission["obs**2"] += products
            else:
                lower = np.zeros((nc, nf, nf))
                rows, columns = np.tril_indices(nf)
                lower[:, rows, columns] = products
                stats.emission["obs*obs.T"] += emissions.symmetric(lower)
        return log_likelihoods

    def _maximize_emissions(self, stats: SufficientStats) -> dict[str, np.ndarray]:
        """hmmlearn's M-step (Huang, Acero, Hon, Spoken Language Processing, pp. 443-445)."""
        new: dict[str, np.ndarray] = {}
        means_prior, means_weight = self.means_prior, self.means_weight
        denom = stats["post"][:, None]
        means = self.means_
        if "m" in self.params:
            means = (means_weight * means_prior + stats["obs"]) / (means_weight + denom)
            new["means_"] = means
        if "c" in self.params:
            covars_prior, covars_weight = self.covars_prior, self.covars_weight
            meandiff = means - means_prior
            if self.covariance_type in ("spherical", "diag"):
                c_n = means_weight * meandiff**2 + stats["obs**2"] - 2 * means * stats["obs"] + means**2 * denom
                c_d = np.maximum(covars_weight - 1, 0) + denom
                covars = (covars_prior + c_n) / np.maximum(c_d, 1e-5)
                if self.covariance_type == "spherical":
                    covars = np.tile(covars.mean(1)[:, None], (1, covars.shape[1]))
            else:
                nc, nf = self.n_components, self.n_features
                c_n = np.empty((nc, nf, nf))
                for c in range(nc):
                    obsmean = np.outer(stats["obs"][c], means[c])
                    c_n[c] = (
                        means_weight * np.outer(meandiff[c], meandiff[c])
                        + stats["obs*obs.T"][c]
                        - obsmean
                        - obsmean.T
                        + np.outer(means[c], means[c]) * stats["post"][c]
                    )
                cvweight = np.maximum(covars_weight - nf, 0)
                if self.covariance_type == "tied":
                    covars = (covars_prior + c_n.sum(axis=0)) / (cvweight + stats["post"].sum())
                else:
                    covars = (covars_prior + c_n) / (cvweight + stats["post"][:, None, None])
            new["_covars_"] = covars
        return new

    def _emission_parameter_shapes(self) -> dict[str, tuple[str, ...]]:
        covars = {
            "spherical": ("n_components", "n_features"),  # hmmlearn's fitted layout, tiled per feature
            "diag": ("n_components", "n_features"),
            "tied": ("n_features", "n_features"),
        }.get(self.covariance_type, ("n_components", "n_features", "n_features"))
        return {"means_": ("n_components", "n_features"), "_covars_": covars}

    def _lane_work_per_frame(self, dimensions: dict[str, int]) -> int:
        # forward_backward_moments also keeps the posteriors in the lane layout for the moment sums.
        return super()._lane_work_per_frame(dimensions) + dimensions["n_components"]

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        nc, nf = self.n_components, self.n_features
        return {
            "s": nc - 1,
            "t": nc * (nc - 1),
            "m": nc * nf,
            "c": {
                "spherical": nc,
                "diag": nc * nf,
                "full": nc * nf * (nf + 1) // 2,
                "tied": nf * (nf + 1) // 2,
            }[self.covariance_type],
        }

    # ------------------------------------------------------------ sampling

    def _state_covariance(self, state: int) -> np.ndarray:
        """Full covariance matrix of one state (the same values hmmlearn's ``covars_[state]`` holds)."""
        covars = self._covars_
        if self.covariance_type == "full":
            return covars[state]
        if self.covariance_type == "tied":
            return covars
        if self.covariance_type == "diag":
            return np.diag(covars[state])
        if covars.ndim == 2:
            return np.diag(covars[state])
        return np.eye(self.n_features) * covars[state]

    def _generate_sample_from_state(self, state: int, random_state: np.random.RandomState) -> Any:
        return random_state.multivariate_normal(self.means_[state], self._state_covariance(state))

    def _emission_divergence(self, reference: BaseHMM) -> np.ndarray:
        """Symmetric Kullback-Leibler divergence between the states' Gaussians."""
        return symmetric_kl_gaussians(self.means_, self.covars_, reference.means_, reference.covars_)

"""Gaussian-mixture emissions: each state emits from its own mixture of ``n_mix`` Gaussians."""

from __future__ import annotations

from typing import Any

import numpy as np

from hmm.core.base import BaseHMM, check_distribution, check_shape, real_array
from hmm.core.covariance import (
    Components,
    check_array_shape,
    check_covariance_type,
    check_finite_units,
    check_matrices,
    check_variances,
    cholesky_factors,
    component_log_densities,
    data_covariance,
    diag_components,
    full_components,
    mixture_log_likelihood,
    symmetric_kl_gaussians,
)
from hmm.core.kernels import emissions
from hmm.core.sequences import as_2d_float, check_finite, check_n_features
from hmm.core.stats import SufficientStats


class GMMHMM(BaseHMM):
    """HMM with Gaussian-mixture emissions; drop-in for ``hmmlearn.hmm.GMMHMM``.

    ``X`` holds real vectors, shape ``(n_samples, n_features)`` (1-D: one feature).
    Parameter letters: ``s`` startprob, ``t`` transmat, ``m`` means, ``c`` covars,
    ``w`` mixture weights. Fitted: ``weights_`` (n_components, n_mix),
    ``means_`` (n_components, n_mix, n_features) and ``covars_``:
    (K, M) spherical, (K, M, D) diag, (K, M, D, D) full, (K, D, D) tied (one
    matrix per state, shared by its mixture components).

    As in hmmlearn, ``fit`` and every parameter check replace the priors
    (``weights_prior``, ``means_prior``, ``means_weight``, ``covars_prior``,
    ``covars_weight``) by arrays of their full shapes, ``None`` covariance
    priors by hmmlearn's defaults for the covariance type.
    """

    _emission_letters = "mcw"
    _fitted_emission_attributes = ("weights_", "means_", "covars_")
    # Fitted attributes, set by _init or by the user (declared for type checkers).
    weights_: np.ndarray
    means_: np.ndarray
    covars_: np.ndarray

    def __init__(
        self,
        n_components: int = 1,
        n_mix: int = 1,
        min_covar: float = 1e-3,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        weights_prior: Any = 1.0,
        means_prior: Any = 0.0,
        means_weight: Any = 0.0,
        covars_prior: Any = None,
        covars_weight: Any = None,
        algorithm: str = "viterbi",
        covariance_type: str = "diag",
        random_state: Any = None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = "stmcw",
        init_params: str = "stmcw",
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
        self.n_mix = n_mix
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    # -------------------------------------------------------------- priors

    def _covar_priors(self) -> tuple[Any, Any]:
        """``covars_prior`` and ``covars_weight`` with ``None`` replaced by hmmlearn's defaults."""
        nf, nm = self.n_features, self.n_mix
        defaults = {
            "full": (0.0, -(1.0 + nf + 1.0)),
            "tied": (0.0, -(nm + nf + 1.0)),
            "diag": (-1.5, 0.0),
            "spherical": (-(nm + 2.0) / 2.0, 0.0),
        }[self.covariance_type]
        prior = defaults[0] if self.covars_prior is None else self.covars_prior
        weight = defaults[1] if self.covars_weight is None else self.covars_weight
        return prior, weight

    def _shaped_priors(self) -> dict[str, np.ndarray]:
        """Every prior broadcast to its full shape (hmmlearn's ``_fix_priors_shape``), without side effects."""
        nc, nf, nm = self.n_components, self.n_features, self.n_mix
        covars_prior, covars_weight = self._covar_priors()
        covars_shapes = {
            "full": ((nc, nm, nf, nf), (nc, nm)),
            "tied": ((nc, nf, nf), (nc,)),
            "diag": ((nc, nm, nf), (nc, nm, nf)),
            "spherical": ((nc, nm), (nc, nm)),
        }[self.covariance_type]
        return {
            "weights_prior": np.broadcast_to(self.weights_prior, (nc, nm)).copy(),
            "means_prior": np.broadcast_to(self.means_prior, (nc, nm, nf)).copy(),
            "means_weight": np.broadcast_to(self.means_weight, (nc, nm)).copy(),
            "covars_prior": np.broadcast_to(covars_prior, covars_shapes[0]).copy(),
            "covars_weight": np.broadcast_to(covars_weight, covars_shapes[1]).copy(),
        }

    def _fix_priors_shape(self) -> None:
        # hmmlearn overwrites the constructor arguments; kept for drop-in equality.
        for name, value in self._shaped_priors().items():
            setattr(self, name, value)

    # -------------------------------------------------------------- checks

    def _check_settings(self) -> None:
        super()._check_settings()
        check_covariance_type(self.covariance_type)
        if not isinstance(self.n_mix, (int, np.integer)) or self.n_mix < 1:
            raise ValueError(f"n_mix must be a positive integer, got {self.n_mix!r}")

    def _as_observations(self, X: Any) -> np.ndarray:
        return as_2d_float(X)

    def _check_values(self, X: np.ndarray, offsets: np.ndarray) -> None:
        check_finite(X, offsets)

    def _check_observations(self, X: np.ndarray, offsets: np.ndarray) -> None:
        check_n_features(X, self.n_features)

    def _label(self, index: int) -> str:
        """Name of entry ``index`` of the flattened (state, mixture) axis."""
        return f"state {index // self.n_mix}, mixture {index % self.n_mix}"

    def _check(self) -> None:
        super()._check()
        check_covariance_type(self.covariance_type)
        nc, nm = self.n_components, self.n_mix
        self.means_ = real_array("means_", self.means_)
        if getattr(self, "n_features", None) is None:
            check_array_shape("means_", self.means_, (nc, nm, None), "(n_components, n_mix, n_features)")
            self.n_features = self.means_.shape[2]
        nf = self.n_features
        self._fix_priors_shape()

        self.weights_ = real_array("weights_", self.weights_)
        check_shape("weights_", self.weights_, (nc, nm))
        check_distribution("weights_", self.weights_)

        check_array_shape("means_", self.means_, (nc, nm, nf), "(n_components, n_mix, n_features)")
        check_finite_units("means_", self.means_.reshape(nc * nm, nf), self._label, 1)

        self.covars_ = real_array("covars_", self.covars_)
        covars = self.covars_
        # hmmlearn accepts zero variances (with a warning) but not negative ones.
        if self.covariance_type == "spherical":
            check_array_shape("covars_", covars, (nc, nm), "(n_components, n_mix)")
            check_variances("covars_", covars.reshape(nc * nm, 1), self._label, strict=False)
        elif self.covariance_type == "diag":
            check_array_shape("covars_", covars, (nc, nm, nf), "(n_components, n_mix, n_features)")
            check_variances("covars_", covars.reshape(nc * nm, nf), self._label, strict=False)
        elif self.covariance_type == "full":
            check_array_shape("covars_", covars, (nc, nm, nf, nf), "(n_components, n_mix, n_features, n_features)")
            check_matrices("covars_", covars.reshape(nc * nm, nf, nf), self._label, strict=False)
        else:
            check_array_shape("covars_", covars, (nc, nf, nf), "(n_components, n_features, n_features)")
            check_matrices("covars_", covars, lambda state: f"state {state}", strict=False)

    # ------------------------------------------------------ initialisation

    def _init(self, X: np.ndarray, lengths: np.ndarray | None = None) -> None:
        """hmmlearn's: k-means over states, then over each state's points for its mixture means.

        A state with fewer points than ``n_mix`` draws its means around the
        centre of the state means from the global ``np.random``, as hmmlearn
        does. Unlike hmmlearn, the k-means runs are skipped when the means
        are not being initialised.
        """
        super()._init(X, lengths)
        nc, nf, nm = self.n_components, self.n_features, self.n_mix
        self._fix_priors_shape()
        cv = None
        means = []
        init_means = self._needs_init("m", "means_")
        if init_means:
            from sklearn import cluster  # hmmlearn's k-means, loaded when a fit initialises means

            main_kmeans = cluster.KMeans(n_clusters=nc, random_state=self.random_state, n_init=10)
            labels = main_kmeans.fit_predict(X)
            main_centroid = np.mean(main_kmeans.cluster_centers_, axis=0)
            for label in range(nc):
                kmeans = cluster.KMeans(n_clusters=nm, random_state=self.random_state, n_init=10)
                X_cluster = X[np.where(labels == label)]
                if X_cluster.shape[0] >= nm:
                    kmeans.fit(X_cluster)
                    means.append(kmeans.cluster_centers_)
                else:
                    if cv is None:
                        cv = data_covariance(X, self.min_covar)
                    means.append(np.random.multivariate_normal(main_centroid, cov=cv, size=nm))
        if self._needs_init("w", "weights_"):
            self.weights_ = np.full((nc, nm), 1 / nm)
        if init_means:
            self.means_ = np.stack(means)
        if self._needs_init("c", "covars_"):
            if cv is None:
                cv = data_covariance(X, self.min_covar)
            if self.covariance_type == "tied":
                self.covars_ = np.zeros((nc, nf, nf))
                self.covars_[:] = cv
            elif self.covariance_type == "full":
                self.covars_ = np.zeros((nc, nm, nf, nf))
                self.covars_[:] = cv
            elif self.covariance_type == "diag":
                self.covars_ = np.zeros((nc, nm, nf))
                self.covars_[:] = np.diag(cv)
            else:
                self.covars_ = np.zeros((nc, nm))
                self.covars_[:] = cv.mean()

    # ---------------------------------------------------------------- EM

    def _components(self) -> Components:
        """The state x mixture components (state k's are ``k * n_mix ... k * n_mix + n_mix - 1``)."""
        nc, nm, nf = self.n_components, self.n_mix, self.n_features
        means = self.means_.reshape(nc * nm, nf)
        covars = self.covars_
        if self.covariance_type == "spherical":
            return diag_components(means, np.broadcast_to(covars.reshape(nc * nm, 1), (nc * nm, nf)))
        if self.covariance_type == "diag":
            return diag_components(means, covars.reshape(nc * nm, nf))
        if self.covariance_type == "full":
            return full_components(means, cholesky_factors(covars.reshape(nc * nm, nf, nf), self._label))
        # tied: one factor per state, shared by its mixture components
        return full_components(means, np.repeat(cholesky_factors(covars, lambda k: f"state {k}"), nm, axis=0))

    def _log_weights(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.ascontiguousarray(np.log(self.weights_).ravel())

    def _log_weighted_densities(self, X: np.ndarray) -> np.ndarray:
        """log(w_km N(x_t; mu_km, covars_km)), shape (n_samples, n_components, n_mix)."""
        densities = component_log_densities(X, self._components()) + self._log_weights()
        return densities.reshape(X.shape[0], self.n_components, self.n_mix)

    def _frame_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        return mixture_log_likelihood(self._log_weighted_densities(X))[0]

    def _frame_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if type(self)._frame_log_likelihood is not GMMHMM._frame_log_likelihood:
            return super()._frame_probabilities(X)  # a subclass's own densities
        # densities, mixture sums and scaling in one compiled pass over the frames
        frameprob = np.empty((X.shape[0], self.n_components))
        log_scale = np.empty(X.shape[0])
        emissions.mixture_frames(
            np.ascontiguousarray(X), *self._components(), self._log_weights(), self.n_mix, frameprob, log_scale
        )
        return frameprob, log_scale

    def _new_emission_stats(self) -> dict[str, np.ndarray]:
        nc, nm = self.n_components, self.n_mix
        stats = {"post_mix_sum": np.zeros((nc, nm)), "post_sum": np.zeros(nc)}
        if "m" in self.params:
            stats["m_n"] = np.zeros((nc, nm, self.n_features))
        if "c" in self.params:
            stats["c_n"] = np.zeros_like(self.covars_)
        return stats

    def _accumulate_emission_stats(self, stats: dict[str, np.ndarray], X: np.ndarray, posteriors: np.ndarray) -> None:
        """hmmlearn's statistics (covariances centred on the current means), compiled, in the lane layout."""
        nc, nm, nf = self.n_components, self.n_mix, self.n_features
        n = nc * nm
        X = np.ascontiguousarray(X)
        posteriors = np.ascontiguousarray(posteriors)
        components = self._components()
        frames = emissions.lane_frames(X.shape[0])
        weights = np.zeros((n, frames))
        emissions.mixture_weights(X, posteriors, *components, self._log_weights(), nm, weights)
        x = np.zeros((nf, frames))
        emissions.to_lanes(X, x)
        covariances = "c" in self.params
        diagonal = self.covariance_type in ("spherical", "diag")
        post_mix_sum = np.zeros(n)
        obs = np.zeros((n, nf)) if "m" in self.params else emissions.NONE_2D
        squares = np.zeros((n, nf)) if covariances and diagonal else emissions.NONE_2D
        outer = np.zeros((n, nf, nf)) if covariances and not diagonal else emissions.NONE_3D
        emissions.lane_moments(
            weights.reshape(n, -1, emissions.LANES),
            x.reshape(nf, -1, emissions.LANES),
            components[0],
            post_mix_sum,
            obs,
            squares,
            outer,
        )
        stats["post_mix_sum"] += post_mix_sum.reshape(nc, nm)
        stats["post_sum"] += np.ones(X.shape[0]) @ posteriors  # BLAS; numpy's axis-0 sum is slower
        if "m" in self.params:
            stats["m_n"] += obs.reshape(nc, nm, nf)
        if covariances:
            if self.covariance_type == "diag":
                stats["c_n"] += squares.reshape(nc, nm, nf)
            elif self.covariance_type == "spherical":
                stats["c_n"] += squares.sum(axis=1).reshape(nc, nm)
            elif self.covariance_type == "full":
                stats["c_n"] += emissions.symmetric(outer).reshape(nc, nm, nf, nf)
            else:
                stats["c_n"] += emissions.symmetric(outer).reshape(nc, nm, nf, nf).sum(axis=1)

    def _maximize_emissions(self, stats: SufficientStats) -> dict[str, np.ndarray]:
        """hmmlearn's M-step: MAP estimates under Dirichlet, normal and inverse gamma / Wishart priors."""
        nf, nm = self.n_features, self.n_mix
        priors = self._shaped_priors()
        new: dict[str, np.ndarray] = {}

        weights = self.weights_
        if "w" in self.params:
            alphas_minus_one = priors["weights_prior"] - 1
            w_n = stats["post_mix_sum"] + alphas_minus_one
            w_d = (stats["post_sum"] + alphas_minus_one.sum(axis=1))[:, None]
            weights = new["weights_"] = w_n / w_d

        lambdas, mus = priors["means_weight"], priors["means_prior"]
        means = self.means_
        if "m" in self.params:
            m_n = lambdas[:, :, None] * mus + stats["m_n"]
            m_d = stats["post_mix_sum"] + lambdas
            # A component of zero weight gets mean 0 instead of 0/0, before
            # the covariances (tied ones would spread the nan).
            m_d[(weights == 0) & (m_n == 0).all(axis=-1)] = 1
            means = new["means_"] = m_n / m_d[:, :, None]

        if "c" in self.params:
            centered_means = means - mus
            covars_prior, covars_weight = priors["covars_prior"], priors["covars_weight"]
            if self.covariance_type == "full":
                centered_means_dots = centered_means[..., :, None] * centered_means[..., None, :]
                c_n = np.transpose(covars_prior, axes=(0, 1, 3, 2)) + lambdas[:, :, None, None] * centered_means_dots
                c_n += stats["c_n"]
                c_d = (stats["post_mix_sum"] + 1 + covars_weight + nf + 1)[:, :, None, None]
            elif self.covariance_type == "diag":
                c_n = lambdas[:, :, None] * centered_means**2 + 2 * covars_weight
                c_n += stats["c_n"]
                c_d = stats["post_mix_sum"][:, :, None] + 1 + 2 * (covars_prior + 1)
            elif self.covariance_type == "spherical":
                centered_means_norm2 = np.einsum("...i,...i", centered_means, centered_means)
                c_n = lambdas * centered_means_norm2 + 2 * covars_weight
                c_n += stats["c_n"]
                c_d = nf * (stats["post_mix_sum"] + 1) + 2 * (covars_prior + 1)
            else:
                centered_means_dots = centered_means[..., :, None] * centered_means[..., None, :]
                c_n = np.einsum("ij,ijkl->ikl", lambdas, centered_means_dots) + np.transpose(covars_prior, (0, 2, 1))
                c_n += stats["c_n"]
                c_d = (stats["post_sum"] + nm + covars_weight + nf + 1)[:, None, None]
            new["covars_"] = c_n / c_d
        return new

    def _emission_parameter_shapes(self) -> dict[str, tuple[str, ...]]:
        covars = {
            "spherical": ("n_components", "n_mix"),
            "diag": ("n_components", "n_mix", "n_features"),
            "tied": ("n_components", "n_features", "n_features"),
        }.get(self.covariance_type, ("n_components", "n_mix", "n_features", "n_features"))
        return {
            "weights_": ("n_components", "n_mix"),
            "means_": ("n_components", "n_mix", "n_features"),
            "covars_": covars,
        }

    def _work_per_frame(self, dimensions: dict[str, int]) -> int:
        # Besides the frames x states arrays: the statistics' weight per component and copy of the
        # frame, both in the lane layout.
        return (
            super()._work_per_frame(dimensions)
            + dimensions["n_components"] * dimensions["n_mix"]
            + dimensions["n_features"]
        )

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        nc, nf, nm = self.n_components, self.n_features, self.n_mix
        return {
            "s": nc - 1,
            "t": nc * (nc - 1),
            "m": nc * nm * nf,
            "c": {
                "spherical": nc * nm,
                "diag": nc * nm * nf,
                "full": nc * nm * nf * (nf + 1) // 2,
                "tied": nc * nf * (nf + 1) // 2,
            }[self.covariance_type],
            # hmmlearn counts nm - 1 (not nc * (nm - 1)); kept so aic/bic agree.
            "w": nm - 1,
        }

    # ------------------------------------------------------------ sampling

    def _generate_sample_from_state(self, state: int, random_state: np.random.RandomState) -> Any:
        mix = random_state.choice(self.n_mix, p=self.weights_[state])
        covars = self.covars_
        if self.covariance_type == "tied":
            covar = covars[state]
        elif self.covariance_type == "full":
            covar = covars[state, mix]
        elif self.covariance_type == "diag":
            covar = np.diag(covars[state, mix])
        else:
            covar = np.eye(self.n_features) * covars[state, mix]
        return random_state.multivariate_normal(self.means_[state, mix], covar)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Each state's emission mean, (n_components, n_features), and covariance, (n_components, D, D)."""
        nc, nm, nf = self.n_components, self.n_mix, self.n_features
        covars = {
            "full": lambda c: c,
            "diag": lambda c: c[..., None] * np.eye(nf),
            "spherical": lambda c: c[..., None, None] * np.eye(nf),
            "tied": lambda c: np.broadcast_to(c[:, None], (nc, nm, nf, nf)),
        }[self.covariance_type](self.covars_)
        weights = self.weights_[:, :, None]
        mean = (weights * self.means_).sum(axis=1)
        second = (weights[..., None] * (covars + self.means_[..., :, None] * self.means_[..., None, :])).sum(axis=1)
        return mean, second - mean[:, :, None] * mean[:, None, :]

    def _emission_divergence(self, reference: BaseHMM) -> np.ndarray:
        """Symmetric Kullback-Leibler divergence between Gaussians of the mixtures' means and covariances
        (mixtures have no closed form; matching states needs an order, not the exact value)."""
        return symmetric_kl_gaussians(*self.moments(), *reference.moments())

"""Gaussian densities and covariance bookkeeping shared by GaussianHMM and GMMHMM.

Densities are computed as hmmlearn 0.3.3 computes them (``hmmlearn.stats``):
diagonal and spherical in the direct form ``sum((x - mu)^2 / var)`` (no
expansion of the square, so no cancellation), full and tied through a
Cholesky factor, with hmmlearn's fallback of adding ``1e-7`` to the diagonal
when the factorisation fails. Both run as one compiled pass over the frames
(:mod:`hmm.core.kernels.emissions`) instead of materialising ``frames x
components x features`` temporaries; this module turns covariances into the
components those kernels take.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numba as nb
import numpy as np
from scipy import linalg

from hmm.core.kernels import emissions
from hmm.core.sequences import InvalidParameterError

_log = logging.getLogger(__name__)

COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")
_LOG_2PI = np.log(2 * np.pi)
# hmmlearn's retry for a covariance the Cholesky factorisation refuses.
_CHOLESKY_JITTER = 1e-7

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")

Label = Callable[[int], str]


def _state_label(index: int) -> str:
    return f"state {index}"


def check_covariance_type(covariance_type: object) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {list(COVARIANCE_TYPES)}, got {covariance_type!r}")


# ------------------------------------------------------------------ densities


#: What the kernels take for a set of C Gaussian components (hmm.core.kernels.emissions._gaussian_block):
#: means (C, D), scales (precisions, or the reciprocal Cholesky diagonals) (C, D), lower Cholesky
#: factors (C, D, D; empty for diagonal covariances) and log-normalisers (C,).
Components = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def diag_components(means: np.ndarray, variances: np.ndarray) -> Components:
    """Components with diagonal covariances: means (C, D), variances (C, D)."""
    n_features = means.shape[1]
    # Avoid 0 log 0 = nan for a degenerate variance, as hmmlearn does.
    variances = np.maximum(variances, np.finfo(float).tiny)
    log_norm = n_features * _LOG_2PI + np.log(variances).sum(axis=-1)
    # Multiplying by precomputed precisions: a division per term cost more than the rest of the density.
    with np.errstate(over="ignore"):
        precisions = 1.0 / variances
    return _contiguous(means), _contiguous(precisions), emissions.NONE_3D, _contiguous(log_norm)


def full_components(means: np.ndarray, factors: np.ndarray) -> Components:
    """Components with full covariances: means (C, D), lower Cholesky factors (C, D, D)."""
    n_features = means.shape[1]
    diagonals = np.diagonal(factors, axis1=1, axis2=2)
    log_norm = n_features * _LOG_2PI + 2 * np.log(diagonals).sum(axis=-1)
    return _contiguous(means), _contiguous(1.0 / diagonals), _contiguous(factors), _contiguous(log_norm)


def _contiguous(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def cholesky_factors(covars: np.ndarray, label: Label = _state_label, name: str = "covars_") -> np.ndarray:
    """Lower Cholesky factors of matrices (C, D, D), each named by ``label`` if it fails."""
    return np.stack([cholesky(covar, f"{name} of {label(k)}") for k, covar in enumerate(covars)])


def gaussian_components(
    means: np.ndarray, covars: np.ndarray, covariance_type: str, label: Label = _state_label, name: str = "covars_"
) -> Components:
    """The kernels' components for GaussianHMM's covariance layouts.

    ``covars``: (K,) or (K, D) spherical, (K, D) diag, (K, D, D) full,
    (D, D) tied (one matrix shared by every component).
    """
    n_components, n_features = means.shape
    if covariance_type == "spherical":
        if covars.ndim == 1:
            covars = covars[:, None]
        return diag_components(means, np.broadcast_to(covars, (n_components, n_features)))
    if covariance_type == "diag":
        return diag_components(means, covars)
    if covariance_type == "tied":
        chol = cholesky(covars, f"{name} of all states (tied)")
        return full_components(means, np.broadcast_to(chol, (n_components, n_features, n_features)))
    if covariance_type == "full":
        return full_components(means, cholesky_factors(covars, label, name))
    check_covariance_type(covariance_type)
    raise AssertionError("unreachable")


def component_log_densities(X: np.ndarray, components: Components) -> np.ndarray:
    """log N(x_t; component c), shape (n_samples, C), in one compiled pass."""
    out = np.empty((X.shape[0], components[0].shape[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        emissions.gaussian_frames(np.ascontiguousarray(X, dtype=np.float64), *components, out, emissions.NONE_1D)
    return out


@_jit
def _mixture_kernel(log_densities, log_likelihood, posteriors):  # pragma: no cover - compiled
    n_samples, n_components, n_mix = log_densities.shape
    for t in range(n_samples):
        for k in range(n_components):
            first = 0
            peak = log_densities[t, k, 0]
            for m in range(1, n_mix):
                if log_densities[t, k, m] > peak:
                    peak = log_densities[t, k, m]
                    first = m
            if peak == -np.inf:
                log_likelihood[t, k] = -np.inf
                for m in range(n_mix):
                    posteriors[t, k, m] = 0.0
                continue
            others = 0.0
            for m in range(n_mix):
                if m != first:
                    others += np.exp(log_densities[t, k, m] - peak)
            total = np.log1p(others) + peak
            log_likelihood[t, k] = total
            for m in range(n_mix):
                posteriors[t, k, m] = np.exp(log_densities[t, k, m] - total)


def mixture_log_likelihood(log_densities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logsumexp over the last axis and the normalised weights (hmmlearn's ``log_normalize``).

    ``log_densities`` (n_samples, n_components, n_mix) -> log-likelihoods
    (n_samples, n_components) and posteriors of the same shape as the input.
    The sum is scipy's (largest term separated out, ``log1p`` of the rest) in
    one compiled pass; a component that is impossible under every mixture
    gets posteriors 0 where hmmlearn would produce nan.
    """
    log_densities = np.ascontiguousarray(log_densities, dtype=np.float64)
    log_likelihood = np.empty(log_densities.shape[:2])
    posteriors = np.empty_like(log_densities)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        _mixture_kernel(log_densities, log_likelihood, posteriors)
    return log_likelihood, posteriors


def cholesky(covar: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor, with hmmlearn's jitter retry; names the matrix when both fail."""
    try:
        return linalg.cholesky(covar, lower=True)
    except linalg.LinAlgError:
        try:
            return linalg.cholesky(covar + _CHOLESKY_JITTER * np.eye(covar.shape[0]), lower=True)
        except linalg.LinAlgError:
            raise InvalidParameterError(
                f"{what} is not symmetric positive-definite (Cholesky factorisation failed)"
            ) from None


def log_density(
    X: np.ndarray,
    means: np.ndarray,
    covars: np.ndarray,
    covariance_type: str,
    label: Label = _state_label,
    name: str = "covars_",
) -> np.ndarray:
    """Gaussian log-densities, shape (n_samples, n_components), for GaussianHMM's covariance layouts.

    ``covars``: (K,) or (K, D) spherical, (K, D) diag, (K, D, D) full,
    (D, D) tied (one matrix shared by every component).
    """
    return component_log_densities(X, gaussian_components(means, covars, covariance_type, label, name))


# --------------------------------------------------------------- conversions


def fill_covars(covars: np.ndarray, covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    """Full (n_components, n_features, n_features) matrices from any layout (hmmlearn's ``fill_covars``).

    Spherical variances stored per feature, shape (K, D), as hmmlearn's M-step
    leaves them, give diagonal matrices of those values (hmmlearn flattens
    them instead and returns K * D matrices; see GaussianHMM.covars_).
    """
    if covariance_type == "full":
        return covars
    if covariance_type == "diag":
        return np.array([np.diag(c) for c in covars]).reshape(n_components, n_features, n_features)
    if covariance_type == "tied":
        return np.tile(covars, (n_components, 1, 1))
    if covariance_type == "spherical":
        eye = np.eye(n_features)[None, :, :]
        if covars.ndim == 2:
            return eye * covars[:, :, None]
        return eye * covars[:, None, None]
    check_covariance_type(covariance_type)
    raise AssertionError("unreachable")


def distribute_covar_matrix(tied_cv: np.ndarray, covariance_type: str, n_components: int) -> np.ndarray:
    """Every state's covariance from one template (hmmlearn's initial covariances)."""
    if covariance_type == "spherical":
        return np.tile(tied_cv.mean() * np.ones(tied_cv.shape[1]), (n_components, 1))
    if covariance_type == "tied":
        return tied_cv
    if covariance_type == "diag":
        return np.tile(np.diag(tied_cv), (n_components, 1))
    if covariance_type == "full":
        return np.tile(tied_cv, (n_components, 1, 1))
    check_covariance_type(covariance_type)
    raise AssertionError("unreachable")


def data_covariance(X: np.ndarray, min_covar: float) -> np.ndarray:
    """hmmlearn's starting covariance: the data's, plus ``min_covar`` on the diagonal, always 2-D."""
    cv = np.cov(X.T) + min_covar * np.eye(X.shape[1])
    if not cv.shape:
        cv.shape = (1, 1)
    return cv


# ---------------------------------------------------------------- validation


def check_array_shape(name: str, value: np.ndarray, shape: tuple[int | None, ...], meaning: str) -> None:
    """``value.shape`` must equal ``shape`` (``None``: any size); ``meaning`` names the axes."""
    if value.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
    ):
        wanted = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise InvalidParameterError(f"{name} must have shape {meaning} = {wanted}, got {value.shape}")


def check_finite_units(name: str, value: np.ndarray, label: Label, unit_ndim: int) -> None:
    """Every unit (the trailing ``unit_ndim`` axes) must hold finite numbers."""
    units = value.reshape(-1, *value.shape[value.ndim - unit_ndim :]) if unit_ndim else value.reshape(-1)
    bad = ~np.isfinite(units.reshape(units.shape[0], -1)).all(axis=1)
    if bad.any():
        raise InvalidParameterError(f"{name} of {label(int(np.flatnonzero(bad)[0]))} is not finite")


def check_variances(name: str, variances: np.ndarray, label: Label, strict: bool = True) -> None:
    """Variances ``(units, n_values)`` must be positive (``strict``) or non-negative.

    hmmlearn refuses non-positive GaussianHMM variances but only warns about
    zero GMMHMM ones; ``strict`` selects which rule applies.
    """
    units = variances.reshape(variances.shape[0], -1)
    check_finite_units(name, units, label, 1)
    bad = units <= 0 if strict else units < 0
    if bad.any():
        unit, column = np.argwhere(bad)[0]
        where = label(int(unit)) + (f", feature {column}" if units.shape[1] > 1 else "")
        rule = "positive" if strict else "non-negative"
        raise InvalidParameterError(f"{name} of {where} must be {rule} (got {units[unit, column]:.6g})")
    if not strict and (units == 0).any():
        _log.warning(
            "Degenerate mixture covariance: %s of %s has a zero variance",
            name,
            label(int(np.argwhere(units == 0)[0][0])),
        )


def check_matrices(name: str, matrices: np.ndarray, label: Label, strict: bool = True) -> None:
    """Covariance matrices ``(units, D, D)`` must be symmetric and positive-definite (or semi-definite)."""
    check_finite_units(name, matrices, label, 2)
    for unit, matrix in enumerate(matrices):
        if not np.allclose(matrix, matrix.T):
            raise InvalidParameterError(f"{name} of {label(unit)} is not symmetric positive-definite (not symmetric)")
    smallest = np.linalg.eigvalsh(matrices).min(axis=-1) if matrices.size else np.zeros(0)
    bad = np.flatnonzero(smallest <= 0 if strict else smallest < 0)
    if bad.size:
        kind = "positive-definite" if strict else "positive-semidefinite"
        raise InvalidParameterError(
            f"{name} of {label(int(bad[0]))} is not symmetric {kind} (smallest eigenvalue {smallest[bad[0]]:.6g})"
        )
    if not strict and (smallest == 0).any():
        _log.warning("%s of %s has a null eigenvalue", name, label(int(np.flatnonzero(smallest == 0)[0])))


def symmetric_kl_gaussians(
    means_a: np.ndarray, covars_a: np.ndarray, means_b: np.ndarray, covars_b: np.ndarray
) -> np.ndarray:
    """KL(a || b) + KL(b || a) between every pair of Gaussians, (n_a, n_b), in nats.

    ``means_*`` of shape (n, n_features), ``covars_*`` full matrices (n, n_features, n_features).
    The log-determinants of the two directions cancel, so only traces and Mahalanobis terms remain.
    """
    precisions_a, precisions_b = np.linalg.inv(covars_a), np.linalg.inv(covars_b)
    diff = means_a[:, None, :] - means_b[None, :, :]
    traces = np.einsum("jkl,ilk->ij", precisions_b, covars_a) + np.einsum("ikl,jlk->ij", precisions_a, covars_b)
    mahalanobis = np.einsum("ijk,ikl,ijl->ij", diff, precisions_a, diff) + np.einsum(
        "ijk,jkl,ijl->ij", diff, precisions_b, diff
    )
    return 0.5 * (traces + mahalanobis) - means_a.shape[1]

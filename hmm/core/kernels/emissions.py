"""Emission kernels: frame log-likelihoods, scaled frame probabilities and emission statistics.

Each continuous family computes its frames' log-likelihoods and scales them to
the frame probabilities the forward pass takes in one pass over the frames (no
frames x states temporaries), and accumulates its expected counts from the
posteriors in one more pass, frame by frame in order: the statistics of a batch
are the same bits whichever engine computes them.
"""

from __future__ import annotations

import math

import numpy as np

from hmm.core.kernels.lanes import _float_from_bits, _inline, _jit

# exp(x) for x <= 0 as polynomial arithmetic (Cephes' rational approximation
# after range reduction, within 1 ulp of libm), so the compiler vectorises a
# loop of them: libm's exp is a scalar call of ~10 ns, and the frames of a
# continuous model need n_states of them each.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93145751953125e-1
_LN2_LO = 1.42860682030941723212e-6
_EXP_P0, _EXP_P1, _EXP_P2 = 1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1
_EXP_Q0, _EXP_Q1, _EXP_Q2, _EXP_Q3 = (
    3.00198505138664455042e-6,
    2.52448340349684104192e-3,
    2.27265548208155028766e-1,
    2.00000000000000000009e0,
)
# Below this exp(x) is subnormal; such a frame weight is 0 next to the
# state whose weight is 1 (x = 0), so it is flushed to 0.
_EXP_FLOOR = -708.0


@_inline
def _exp_nonpositive(x):
    clamped = max(x, _EXP_FLOOR)
    n = np.floor(_LOG2E * clamped + 0.5)
    r = clamped - n * _LN2_HI - n * _LN2_LO
    rr = r * r
    p = r * ((_EXP_P0 * rr + _EXP_P1) * rr + _EXP_P2)
    q = ((_EXP_Q0 * rr + _EXP_Q1) * rr + _EXP_Q2) * rr + _EXP_Q3
    value = 1.0 + 2.0 * p / (q - p)
    scaled = value * _float_from_bits((np.int64(n) + 1023) << 52)
    return scaled if x >= _EXP_FLOOR else 0.0


@_inline
def _scale_row(row):
    """``row = exp(row - largest)`` in place; returns ``largest`` (0 if the row's maximum is not finite)."""
    largest = row[0]
    for j in range(1, row.shape[0]):
        largest = max(largest, row[j])
    if not np.isfinite(largest):
        largest = 0.0
    for j in range(row.shape[0]):
        row[j] = _exp_nonpositive(row[j] - largest)
    return largest


@_jit
def scale_frames(frame_log_likelihood, log_scale):
    """Frame log-likelihoods -> frame probabilities up to a per-frame factor, in place.

    ``log_scale[t] = max_j frame_log_likelihood[t, j]`` (0 if that is not
    finite) and ``frame_log_likelihood[t, j] = exp(frame_log_likelihood[t, j]
    - log_scale[t])``: frames stay representable however unlikely they are; a
    row that is -inf everywhere becomes 0 everywhere and the forward pass
    reports it. (numpy's max over a short last axis and libm's exp cost more
    than the forward pass.)
    """
    for t in range(frame_log_likelihood.shape[0]):
        log_scale[t] = _scale_row(frame_log_likelihood[t])


#: Empty arrays for the optional outputs of the kernels below.
NONE_1D = np.empty(0)
NONE_2D = np.empty((0, 0))
NONE_3D = np.empty((0, 0, 0))


def symmetric(lower: np.ndarray) -> np.ndarray:
    """Symmetric matrices (..., D, D) from their lower triangles (the statistics kernels fill those)."""
    return lower + np.swapaxes(np.tril(lower, -1), -1, -2)


# ------------------------------------------------------------ frame blocks
#
# The kernels below work on blocks of FRAMES frames held frame-minor: a
# block's observations are transposed to ``x[d, b]`` and every quantity of a
# component or state is a row ``[b]``. The innermost loops then run over the
# frames of the block with no dependence between iterations, which LLVM
# turns into SIMD code (exp included, see _exp_nonpositive) whatever the
# number of features, states or mixture components. Sums over frames are
# kept per frame slot ``b`` and added up once per call, in a fixed order:
# the same batch gives the same bits.

FRAMES = 32


@_inline
def _block_in(X, t0, count, x):
    """``x[d, b] = X[t0 + b, d]``; slots past ``count`` get 0 (harmless values, never read back)."""
    for b in range(count):
        for d in range(X.shape[1]):
            x[d, b] = X[t0 + b, d]
    for b in range(count, FRAMES):
        for d in range(X.shape[1]):
            x[d, b] = 0.0


@_inline
def _gaussian_block(x, means, scales, chol, log_norm, y, out):
    """``out[c, b] = log N(x[:, b]; component c)`` for a block.

    Components (C of them): ``means`` (C, D); diagonal covariances:
    ``scales`` the precisions (C, D) and ``chol`` empty; full covariances:
    ``chol`` (C, D, D) the lower Cholesky factors L and ``scales[c, i] = 1 /
    L[c, i, i]``. ``log_norm[c] = D log(2 pi) + log det(covariance)``. As in
    hmmlearn the square is never expanded: ``-0.5 (log_norm + |y|^2)`` with
    ``y = (x - mean) sqrt(precision)`` or ``L y = x - mean`` (forward
    substitution). ``y`` (D, FRAMES) is scratch.
    """
    n_features = means.shape[1]
    full = chol.shape[0] > 0
    for c in range(means.shape[0]):
        row = out[c]
        for b in range(FRAMES):
            row[b] = 0.0
        for i in range(n_features):
            m = means[c, i]
            s = scales[c, i]
            xi = x[i]
            yi = y[i]
            if full:
                for b in range(FRAMES):
                    yi[b] = xi[b] - m
                for j in range(i):
                    lij = chol[c, i, j]
                    yj = y[j]
                    for b in range(FRAMES):
                        yi[b] -= lij * yj[b]
                for b in range(FRAMES):
                    v = yi[b] * s
                    yi[b] = v
                    row[b] += v * v
            else:
                for b in range(FRAMES):
                    diff = xi[b] - m
                    row[b] += diff * diff * s
        norm = log_norm[c]
        for b in range(FRAMES):
            row[b] = -0.5 * (norm + row[b])


@_inline
def _block_maximum(rows, largest):
    """``largest[b]``: the largest ``rows[:, b]`` (0 where that is not finite)."""
    for b in range(FRAMES):
        largest[b] = rows[0, b]
    for c in range(1, rows.shape[0]):
        row = rows[c]
        for b in range(FRAMES):
            largest[b] = max(largest[b], row[b])
    for b in range(FRAMES):
        if not np.isfinite(largest[b]):
            largest[b] = 0.0


@_inline
def _scaled_block_out(rows, t0, count, largest, out, log_scale):
    """``out[t0 + b, c] = exp(rows[c, b] - largest[b])``, ``log_scale[t0 + b] = largest[b]``
    (:func:`scale_frames` for a block); with ``log_scale`` empty, ``out[t0 + b, c] = rows[c, b]``."""
    if log_scale.shape[0] > 0:
        _block_maximum(rows, largest)
        for c in range(rows.shape[0]):
            row = rows[c]
            for b in range(FRAMES):
                row[b] = _exp_nonpositive(row[b] - largest[b])
        for b in range(count):
            log_scale[t0 + b] = largest[b]
    for b in range(count):
        for c in range(rows.shape[0]):
            out[t0 + b, c] = rows[c, b]


@_jit
def gaussian_frames(X, means, scales, chol, log_norm, out, log_scale):
    """Gaussian log-densities of every frame and component, (n_frames, C), in one pass.

    With ``log_scale`` of ``n_frames`` entries they are scaled as
    :func:`scale_frames` scales them (the frame probabilities the forward pass
    takes); with ``log_scale`` empty ``out`` holds the log-densities. See
    :func:`_gaussian_block` for the components.
    """
    n_features = X.shape[1]
    x = np.empty((n_features, FRAMES))
    y = np.empty((n_features, FRAMES))
    rows = np.empty((means.shape[0], FRAMES))
    largest = np.empty(FRAMES)
    for t0 in range(0, X.shape[0], FRAMES):
        count = min(FRAMES, X.shape[0] - t0)
        _block_in(X, t0, count, x)
        _gaussian_block(x, means, scales, chol, log_norm, y, rows)
        _scaled_block_out(rows, t0, count, largest, out, log_scale)


@_jit
def mixture_frames(X, means, scales, chol, log_norm, log_weights, n_mix, frameprob, log_scale):
    """Scaled frame probabilities of Gaussian mixtures; component ``c`` belongs to state ``c // n_mix``.

    ``frameprob[t, k] = sum_m w_km N(x_t; km) / exp(log_scale[t])``, with
    ``log_scale[t]`` the frame's largest ``log(w_km N(x_t; km))`` (0 if not
    finite): the sum needs no log and no second exp, and every frame stays
    representable.
    """
    n_features = X.shape[1]
    n = means.shape[0]
    x = np.empty((n_features, FRAMES))
    y = np.empty((n_features, FRAMES))
    rows = np.empty((n, FRAMES))
    largest = np.empty(FRAMES)
    for t0 in range(0, X.shape[0], FRAMES):
        count = min(FRAMES, X.shape[0] - t0)
        _block_in(X, t0, count, x)
        _gaussian_block(x, means, scales, chol, log_norm, y, rows)
        for c in range(n):
            row = rows[c]
            weight = log_weights[c]
            for b in range(FRAMES):
                row[b] += weight
        _block_maximum(rows, largest)
        for b in range(count):
            log_scale[t0 + b] = largest[b]
        for c in range(n):
            row = rows[c]
            for b in range(FRAMES):
                row[b] = _exp_nonpositive(row[b] - largest[b])
        for b in range(count):
            for k in range(n // n_mix):
                total = 0.0
                for m in range(n_mix):
                    total += rows[k * n_mix + m, b]
                frameprob[t0 + b, k] = total


@_inline
def _posteriors_in(posteriors, t0, count, p):
    """``p[k, b] = posteriors[t0 + b, k]``, 0 past ``count`` (those slots then add nothing)."""
    for b in range(count):
        for k in range(posteriors.shape[1]):
            p[k, b] = posteriors[t0 + b, k]
    for b in range(count, FRAMES):
        for k in range(posteriors.shape[1]):
            p[k, b] = 0.0


@_inline
def _weighted_sums(x, centre, w, c, first, second, lower, sums, squares, outers):
    """Add ``w[b] * (x - centre)`` terms of a block to slot-wise sums of unit ``c``.

    ``sums[c, d, b] += w (x_d - centre_d)`` (if ``first``), ``squares[c, d,
    b] += w (x_d - centre_d)^2`` (if ``second``), ``outers[c, d, e, b] += w
    (x_d - centre_d)(x_e - centre_e)`` for e <= d (if ``lower``).
    """
    n_features = x.shape[0]
    for d in range(n_features):
        xd = x[d]
        md = centre[d]
        if first:
            acc = sums[c, d]
            for b in range(FRAMES):
                acc[b] += w[b] * (xd[b] - md)
        if second:
            acc = squares[c, d]
            for b in range(FRAMES):
                diff = xd[b] - md
                acc[b] += w[b] * diff * diff
        if lower:
            for e in range(d + 1):
                xe = x[e]
                me = centre[e]
                acc = outers[c, d, e]
                for b in range(FRAMES):
                    acc[b] += w[b] * (xd[b] - md) * (xe[b] - me)


@_jit
def _slot_total(slots):
    """Sum over the last axis (frame slots), in slot order."""
    flat = slots.reshape(-1, FRAMES)
    total = np.zeros(flat.shape[0])
    for i in range(flat.shape[0]):
        for b in range(FRAMES):
            total[i] += flat[i, b]
    return total.reshape(slots.shape[:-1])


@_jit
def mixture_statistics(
    X, posteriors, means, scales, chol, log_norm, log_weights, n_mix, post_mix_sum, post_sum, obs, centered2, outer
):
    """A batch's expected counts of Gaussian-mixture emissions, added to the outputs.

    The mixture responsibilities of each frame are recomputed from the
    components (hmmlearn's: ``w_km N_km / sum_m w_km N_km``; a single
    component takes all the weight, a state whose components are all
    impossible none) and weighted by the state posteriors: ``w_tc =
    posteriors[t, c // n_mix] * responsibility``. Adds ``post_mix_sum[c] +=
    sum_t w_tc``, ``post_sum[k] += sum_t p_tk`` and, unless empty (centred on
    the current means): ``obs[c, d] += sum_t w_tc x_td``, ``centered2[c, d]
    += sum_t w_tc (x_td - mean_cd)^2``, ``outer[c, d, e] += sum_t w_tc (x_td
    - mean_cd)(x_te - mean_ce)`` for e <= d.
    """
    n_features = X.shape[1]
    n = means.shape[0]
    n_states = n // n_mix
    x = np.empty((n_features, FRAMES))
    y = np.empty((n_features, FRAMES))
    p = np.empty((n_states, FRAMES))
    rows = np.empty((n, FRAMES))
    peak = np.empty(FRAMES)
    total = np.empty(FRAMES)
    zero = np.zeros(n_features)
    first = obs.shape[0] > 0
    second = centered2.shape[0] > 0
    lower = outer.shape[0] > 0
    post_slots = np.zeros((n_states, FRAMES))
    mix_slots = np.zeros((n, FRAMES))
    obs_slots = np.zeros((n if first else 0, n_features, FRAMES))
    squares_slots = np.zeros((n if second else 0, n_features, FRAMES))
    outer_slots = np.zeros((n if lower else 0, n_features, n_features, FRAMES))
    for t0 in range(0, X.shape[0], FRAMES):
        count = min(FRAMES, X.shape[0] - t0)
        _block_in(X, t0, count, x)
        _posteriors_in(posteriors, t0, count, p)
        for k in range(n_states):
            acc = post_slots[k]
            for b in range(FRAMES):
                acc[b] += p[k, b]
        if n_mix == 1:
            for c in range(n):
                for b in range(FRAMES):
                    rows[c, b] = p[c, b]
        else:
            _gaussian_block(x, means, scales, chol, log_norm, y, rows)
            for k in range(n_states):
                for b in range(FRAMES):
                    peak[b] = -np.inf
                for m in range(n_mix):
                    c = k * n_mix + m
                    for b in range(FRAMES):
                        rows[c, b] += log_weights[c]
                        peak[b] = max(peak[b], rows[c, b])
                for b in range(FRAMES):
                    total[b] = 0.0
                    if not np.isfinite(peak[b]):
                        peak[b] = 0.0
                for m in range(n_mix):
                    row = rows[k * n_mix + m]
                    for b in range(FRAMES):
                        row[b] = _exp_nonpositive(row[b] - peak[b])
                        total[b] += row[b]
                for b in range(FRAMES):
                    total[b] = p[k, b] / total[b] if total[b] > 0.0 else 0.0
                for m in range(n_mix):
                    row = rows[k * n_mix + m]
                    for b in range(FRAMES):
                        row[b] *= total[b]
        for c in range(n):
            w = rows[c]
            acc = mix_slots[c]
            for b in range(FRAMES):
                acc[b] += w[b]
            if first:
                _weighted_sums(x, zero, w, c, True, False, False, obs_slots, squares_slots, outer_slots)
            if second or lower:
                _weighted_sums(x, means[c], w, c, False, second, lower, obs_slots, squares_slots, outer_slots)
    post_sum += _slot_total(post_slots)
    post_mix_sum += _slot_total(mix_slots)
    if first:
        obs += _slot_total(obs_slots)
    if second:
        centered2 += _slot_total(squares_slots)
    if lower:
        outer += _slot_total(outer_slots)


@_jit
def poisson_frames(X, log_rates, rate_sums, log_factorials, out, log_scale):
    """Poisson log-likelihoods of every frame, (n_frames, n_states); scaled as :func:`gaussian_frames`.

    ``log_rates[k, d]`` is log(rate) (-inf for a zero rate: a count of 0 has
    probability 1 there, any other count 0), ``rate_sums[k]`` the sum of state
    k's rates: ``out[t, k] = sum_d x_td log_rates[k, d] - rate_sums[k] -
    sum_d log(x_td!)``. ``log_factorials[n] = log(n!)`` for the small counts
    (a table lookup instead of a scalar ``lgamma`` call per count; larger
    counts call it).
    """
    n_states, n_features = log_rates.shape
    table = log_factorials.shape[0]
    x = np.empty((n_features, FRAMES))
    factorials = np.empty(FRAMES)
    rows = np.empty((n_states, FRAMES))
    largest = np.empty(FRAMES)
    for t0 in range(0, X.shape[0], FRAMES):
        count = min(FRAMES, X.shape[0] - t0)
        _block_in(X, t0, count, x)
        for b in range(FRAMES):
            factorials[b] = 0.0
        for d in range(n_features):
            for b in range(count):
                n = x[d, b]
                factorials[b] += log_factorials[int(n)] if n < table else math.lgamma(n + 1.0)
        for k in range(n_states):
            row = rows[k]
            for b in range(FRAMES):
                row[b] = 0.0
            for d in range(n_features):
                log_rate = log_rates[k, d]
                xd = x[d]
                if log_rate == -np.inf:
                    for b in range(FRAMES):
                        row[b] += -np.inf if xd[b] > 0.0 else 0.0
                else:
                    for b in range(FRAMES):
                        row[b] += xd[b] * log_rate
            rate_sum = rate_sums[k]
            for b in range(FRAMES):
                row[b] = row[b] - rate_sum - factorials[b]
        _scaled_block_out(rows, t0, count, largest, out, log_scale)

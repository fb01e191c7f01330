"""Emission kernels: frame log-likelihoods, scaled frame probabilities and emission statistics.

Gaussian (diagonal, spherical, full, tied), Gaussian-mixture and Poisson
emissions compute their frames' log-likelihoods and scale them into the frame
probabilities the forward pass takes in one pass over the frames, in blocks of
:data:`FRAMES` frames held frame-minor so that the arithmetic (exp included)
is SIMD code whatever the number of states or features, and with no frames x
states x features temporaries. Their expected counts that BLAS does not
already compute well (mixture responsibilities, centred squares, outer
products) are sums of lane vectors over the frames (:func:`lane_moments`).
Every sum runs in a fixed order: the statistics of a batch are the same bits
whichever engine computes them.
"""

from __future__ import annotations

import math

import numpy as np

from hmm.core.kernels.lanes import (
    _EXP_FLOOR,
    _EXP_P0,
    _EXP_P1,
    _EXP_P2,
    _EXP_Q0,
    _EXP_Q1,
    _EXP_Q2,
    _EXP_Q3,
    _LN2_HI,
    _LN2_LO,
    _LOG2E,
    LANES,
    _add,
    _exp_lanes,
    _float_from_bits,
    _inline,
    _jit,
    _lane_sum,
    _lane_zeros,
    _load,
    _max,
    _mul,
    _splat,
    _store,
    _sub,
)


@_inline
def _exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` (0 below ``_EXP_FLOOR``); ``lanes._exp_lanes`` does the same on lane vectors."""
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


@_jit
def add_log_scales(log_scale, offsets, log_likelihoods):
    """``log_likelihoods[s] +=`` the sum of sequence ``s``'s frame log scales, frame by frame from 0.

    The order in which :func:`.forward_backward.gaussian_forward_backward_moments` adds them in
    its lanes, so that a forward pass over :func:`scale_frames`' or :func:`gaussian_frames`'
    probabilities gives the E-step's log-likelihoods bit for bit (``np.add.reduceat`` sums
    pairwise).
    """
    for s in range(offsets.shape[0] - 1):
        total = 0.0
        for t in range(offsets[s], offsets[s + 1]):
            total += log_scale[t]
        log_likelihoods[s] += total


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

FRAMES = 64


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


@_inline
def gaussian_lane_frame(x, means, scales, chol, log_norm, y, frames, t):
    """Scaled frame probabilities of frame ``t`` of every lane of a block; returns their log scale.

    ``frames[t, c, lane] = exp(log N(x[0, :, lane]; c) - largest)``, the
    lanes' frames in ``x`` (1, D, LANES), ``largest`` the lane's largest log-density:
    :func:`gaussian_frames` in the lane layout, operation for operation (the
    same bits), on lane vectors. The densities are computed where the forward
    pass reads them: no frames x states array is written, transposed and
    gathered back. ``y`` (1, D, LANES) is scratch for the forward
    substitution. Unlike :func:`gaussian_frames` the largest log-density is
    used as it is: Gaussian densities of checked (finite) frames are finite.
    """
    n_features = means.shape[1]
    full = chol.shape[0] > 0
    largest = _splat(-np.inf)
    for c in range(means.shape[0]):
        acc = _splat(0.0)
        for i in range(n_features):
            v = _sub(_load(x, 0, i), _splat(means[c, i]))
            if full:
                for j in range(i):
                    v = _sub(v, _mul(_splat(chol[c, i, j]), _load(y, 0, j)))
                v = _mul(v, _splat(scales[c, i]))
                _store(y, 0, i, v)
                acc = _add(acc, _mul(v, v))
            else:
                acc = _add(acc, _mul(_mul(v, v), _splat(scales[c, i])))
        density = _mul(_splat(-0.5), _add(_splat(log_norm[c]), acc))
        _store(frames, t, c, density)
        largest = _max(largest, density)
    for c in range(means.shape[0]):
        _store(frames, t, c, _exp_lanes(_sub(_load(frames, t, c), largest)))
    return largest


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


# ------------------------------------------------------- emission moments
#
# Statistics are sums over the frames of a batch. Here the frames are laid
# out in lanes: ``w[u, block, lane]`` (the weight of frame ``8 block + lane``
# for unit u: a state, or a state's mixture component) and ``x[d, block,
# lane]``, so that each sum is a chain of lane-vector multiply-adds held in
# registers, added across lanes once at the end (in a fixed order: the same
# batch gives the same bits).


def lane_frames(n_frames: int) -> int:
    """Frames of the lane layout for ``n_frames`` frames (a whole number of lane blocks)."""
    return -(-n_frames // LANES) * LANES


@_jit
def to_lanes(a, out):
    """``out[j, t] = a[t, j]``; ``out`` (J, lane_frames(n)) keeps its zeros past ``n``."""
    for t0 in range(0, a.shape[0], FRAMES):
        for j in range(a.shape[1]):
            for t in range(t0, min(t0 + FRAMES, a.shape[0])):
                out[j, t] = a[t, j]


# Lane blocks per pass: a chunk's weights and frames (a few dozen rows of
# 256 frames) stay in the L1-L2 caches while every sum streams over them;
# whole-batch passes re-read them from memory once per sum.
_CHUNK_BLOCKS = 32


@_inline
def _chunk_sum(w, u, x, d, e, centre_d, centre_e, start, stop, acc, i):
    """``acc[u, i] +=`` lane-wise sum over blocks [start, stop) of ``w[u] (x[d] - centre_d) (x[e] - centre_e)``.

    ``d < 0``: of ``w[u]``; ``e < 0``: of ``w[u] (x[d] - centre_d)``. Two
    chains of multiply-adds hide the FMA latency.
    """
    cd = _splat(centre_d)
    ce = _splat(centre_e)
    acc0 = _splat(0.0)
    acc1 = _splat(0.0)
    for block in range(start, stop):
        term = _load(w, u, block)
        if d >= 0:
            term = _mul(term, _sub(_load(x, d, block), cd))
        if e >= 0:
            term = _mul(term, _sub(_load(x, e, block), ce))
        if (block - start) % 2:
            acc1 = _add(acc1, term)
        else:
            acc0 = _add(acc0, term)
    _store(acc, u, i, _add(_load(acc, u, i), _add(acc0, acc1)))


@_jit
def lane_moments(w, x, centres, totals, sums, squares, outers):
    """Weighted moments of a batch in the lane layout, added to the outputs (each skipped if empty).

    ``w`` (U, n_blocks, LANES), ``x`` (D, n_blocks, LANES), ``centres`` (U, D):
    ``totals[u] += sum_t w_ut``; ``sums[u, d] += sum_t w_ut x_td``;
    ``squares[u, d] += sum_t w_ut (x_td - centre_ud)^2``; ``outers[u, d, e]
    += sum_t w_ut (x_td - centre_ud)(x_te - centre_ue)`` for e <= d (the
    lower triangle, see :func:`symmetric`).
    """
    n_units, n_blocks = w.shape[0], w.shape[1]
    n_features = x.shape[0]
    want_totals = totals.shape[0] > 0
    want_sums = sums.shape[0] > 0
    want_squares = squares.shape[0] > 0
    want_outers = outers.shape[0] > 0
    # acc[u, i]: lane partial sums; i = 0 total, 1 + d sum, 1 + D + d square, 1 + 2 D + D d + e outer
    n_sums = 1 + 2 * n_features + n_features * n_features
    acc = _lane_zeros(n_units, n_sums)
    for start in range(0, n_blocks, _CHUNK_BLOCKS):
        stop = min(start + _CHUNK_BLOCKS, n_blocks)
        for u in range(n_units):
            if want_totals:
                _chunk_sum(w, u, x, -1, -1, 0.0, 0.0, start, stop, acc, 0)
            for d in range(n_features):
                cd = centres[u, d]
                if want_sums:
                    _chunk_sum(w, u, x, d, -1, 0.0, 0.0, start, stop, acc, 1 + d)
                if want_squares:
                    _chunk_sum(w, u, x, d, d, cd, cd, start, stop, acc, 1 + n_features + d)
                if want_outers:
                    for e in range(d + 1):
                        i = 1 + 2 * n_features + n_features * d + e
                        _chunk_sum(w, u, x, d, e, cd, centres[u, e], start, stop, acc, i)
    for u in range(n_units):
        if want_totals:
            totals[u] += _lane_sum(_load(acc, u, 0))
        for d in range(n_features):
            if want_sums:
                sums[u, d] += _lane_sum(_load(acc, u, 1 + d))
            if want_squares:
                squares[u, d] += _lane_sum(_load(acc, u, 1 + n_features + d))
            if want_outers:
                for e in range(d + 1):
                    outers[u, d, e] += _lane_sum(_load(acc, u, 1 + 2 * n_features + n_features * d + e))


@_jit
def mixture_weights(X, posteriors, means, scales, chol, log_norm, log_weights, n_mix, w):
    """``w[c, t]``: frame t's posterior weight of mixture component c (zero past the frames).

    The responsibilities are hmmlearn's (``w_km N_km / sum_m w_km N_km``; a
    single component takes all the weight, a state whose components are all
    impossible none), times the state posterior ``posteriors[t, c // n_mix]``.
    ``w`` is (C, lane_frames(n_frames)), for :func:`lane_moments`.
    """
    n_features = X.shape[1]
    n = means.shape[0]
    n_states = n // n_mix
    x = np.empty((n_features, FRAMES))
    y = np.empty((n_features, FRAMES))
    rows = np.empty((n, FRAMES))
    peak = np.empty(FRAMES)
    total = np.empty(FRAMES)
    for t0 in range(0, X.shape[0], FRAMES):
        count = min(FRAMES, X.shape[0] - t0)
        if n_mix == 1:
            for c in range(n):
                for b in range(count):
                    w[c, t0 + b] = posteriors[t0 + b, c]
            continue
        _block_in(X, t0, count, x)
        _gaussian_block(x, means, scales, chol, log_norm, y, rows)
        for k in range(n_states):
            for b in range(FRAMES):
                peak[b] = -np.inf
            for m in range(n_mix):
                c = k * n_mix + m
                weight = log_weights[c]
                row = rows[c]
                for b in range(FRAMES):
                    row[b] += weight
                    peak[b] = max(peak[b], row[b])
            for b in range(FRAMES):
                total[b] = 0.0
                if not np.isfinite(peak[b]):
                    peak[b] = 0.0
            for m in range(n_mix):
                row = rows[k * n_mix + m]
                for b in range(FRAMES):
                    row[b] = _exp_nonpositive(row[b] - peak[b])
                    total[b] += row[b]
            for b in range(count):
                total[b] = posteriors[t0 + b, k] / total[b] if total[b] > 0.0 else 0.0
            for m in range(n_mix):
                row = rows[k * n_mix + m]
                out = w[k * n_mix + m, t0 : t0 + count]
                for b in range(count):
                    out[b] = row[b] * total[b]


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

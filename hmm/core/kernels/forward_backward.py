"""Forward-backward over a batch: posteriors (or per-symbol counts) and expected transitions."""

from __future__ import annotations

import numpy as np

from hmm.core.kernels.emissions import gaussian_lane_frame
from hmm.core.kernels.forward import _forward_block
from hmm.core.kernels.lanes import (
    LANES,
    _add,
    _buffers,
    _fma_half,
    _fmav,
    _frame_rows,
    _gather_frame,
    _inline,
    _jit,
    _lane_buffer,
    _lane_sum,
    _lane_zeros,
    _load,
    _load_block,
    _load_frames,
    _load_half,
    _load_symbol_frames,
    _mul,
    _padded_table,
    _past_end,
    _permute_table,
    _reciprocal,
    _row,
    _row_groups,
    _rows2,
    _rows4,
    _rows5,
    _scatter_add_symbols,
    _scatter_frame,
    _splat,
    _store,
    _store_half,
    _sub,
    _symbol_rows,
)


@_inline
def _posterior(alpha, frames, numerators, t, i, value, factor, total):
    """From ``value`` = beta_t[i]: ``frames[t, i]`` becomes w_{t-1}[i] (times ``factor``, 1 / c_t),
    ``numerators[0, i] = alpha[t, i] * value``; returns ``total + numerators[0, i]``."""
    _store(frames, t, i, _mul(_mul(_load(frames, t, i), value), factor))
    g = _mul(_load(alpha, t, i), value)
    _store(numerators, 0, i, g)
    return _add(total, g)


@_jit
def _backward_block(
    transmat,
    first,
    length,
    longest,
    alpha,
    frames,
    scale,
    numerators,
    rows,
    sink,
    symbols,
    target,
    start,
    gamma,
    counts,
    symbol_rows,
):
    """Backward sweep of one block: posteriors out, ``frames`` overwritten.

    The posteriors of frame t go to ``gamma[t, state, lane]`` if ``gamma`` is
    not empty (zero past the end of a lane's sequence), else to
    ``target[row]`` (``symbols`` empty), or are added to ``counts[symbol of
    the frame]`` (the padded table of :func:`.lanes._padded_table`, rows at
    ``symbol_rows`` from :func:`.lanes._symbol_rows`); those of the first
    frames are added to ``start``.

    ``frames[t + 1]`` is replaced by ``w_t[j] = b_{t+1}(j) beta_{t+1}(j) /
    c_{t+1}`` (zero past the end of a lane's sequence), the factor the
    expected transitions ``alpha_t[i] transmat[i, j] w_t[j]`` need and from
    which beta_t is computed; it is written as soon as beta_{t+1}(j) is in a
    register, as frame t + 1 is not read again. ``numerators[0]`` holds
    alpha_t * beta_t. ``rows`` is scratch, ``sink`` receives what lanes past
    their sequence's end would write.
    """
    n_states = transmat.shape[0]
    transmat5 = _row_groups(transmat, 5)
    for t in range(longest - 1, -1, -1):
        # 1 / c_t, or 0 where frame t is past the end of the lane's sequence: there
        # w_{t-1} = 0 (and beta_{t-1} restarts at 1)
        factor = _load(scale, 1, t)
        total = _splat(0.0)
        if t < longest - 1:
            restart = _past_end(length, t + 1)
            # beta_t[i] = sum_j transmat[i, j] w_t[j]; from the registers, w_{t-1}[i] and
            # the posterior numerators alpha_t[i] beta_t[i]
            in_fives = n_states - n_states % 5
            for i in range(0, in_fives, 5):
                a0, a1, a2, a3, a4 = _rows5(transmat5, i // 5, frames, t + 1)
                total = _posterior(alpha, frames, numerators, t, i, _add(a0, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 1, _add(a1, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 2, _add(a2, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 3, _add(a3, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 4, _add(a4, restart), factor, total)
            in_fours = in_fives + (n_states - in_fives) // 4 * 4
            for i in range(in_fives, in_fours, 4):
                a0, a1, a2, a3 = _rows4(transmat, i, frames, t + 1)
                total = _posterior(alpha, frames, numerators, t, i, _add(a0, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 1, _add(a1, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 2, _add(a2, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, i + 3, _add(a3, restart), factor, total)
            if n_states - in_fours >= 2:
                a0, a1 = _rows2(transmat, in_fours, frames, t + 1)
                total = _posterior(alpha, frames, numerators, t, in_fours, _add(a0, restart), factor, total)
                total = _posterior(alpha, frames, numerators, t, in_fours + 1, _add(a1, restart), factor, total)
            if (n_states - in_fours) % 2:
                i = n_states - 1
                total = _posterior(
                    alpha, frames, numerators, t, i, _add(_row(transmat, i, frames, t + 1), restart), factor, total
                )
        else:
            for i in range(n_states):
                total = _posterior(alpha, frames, numerators, t, i, _splat(1.0), factor, total)
        inverse = _reciprocal(total)
        if t == 0:
            for i in range(n_states):
                _store(numerators, 0, i, _mul(_load(numerators, 0, i), inverse))
            inverse = _splat(1.0)
            for lane in range(LANES):
                if length[lane] > 0:
                    for i in range(n_states):
                        start[i] += numerators[0, i, lane]
        if gamma.shape[0] > 0:
            # kept in the lane layout for the moment sums (no transposes, no
            # frames x states array): zero where the lane's sequence has ended
            inverse = _mul(inverse, _sub(_splat(1.0), _past_end(length, t)))
            for i in range(n_states):
                _store(gamma, t, i, _mul(_load(numerators, 0, i), inverse))
            continue
        if symbols.shape[0] > 0:
            _scatter_add_symbols(counts, symbol_rows, t, numerators, 0, inverse)
        else:
            _frame_rows(first, length, t, rows)
            _scatter_frame(target, rows, sink, numerators, 0, inverse)


# Frames per pass of the frame products: the chunk's rows of both operands
# (2 x frames x columns x LANES x 8 bytes, 40 kB) stay in the L1 cache (48 kB
# here) while every (i, j) tile streams over them. Streaming whole sequences
# instead re-reads them from L2 once per tile, and the sums ran at a third
# of FMA speed; at 16 lanes a chunk of the 8-lane size (80 kB) spilled to L2
# and the products took 1.7 instead of 0.9 ms of the K=10 E-step.
_L1_FRAME_COLUMNS = 320 * 8 // LANES


@_inline
def _tile_2x2(a, a_start, b, b_start, u0, u1, outer, i0, i1, j0, j1):
    """The (i0, i1) x (j0, j1) tile of :func:`_frame_products` over frames [u0, u1)."""
    a00 = _load(outer, i0, j0)
    a01 = _load(outer, i0, j1)
    a10 = _load(outer, i1, j0)
    a11 = _load(outer, i1, j1)
    for u in range(u0, u1):
        x0 = _load(a, a_start + u, i0)
        x1 = _load(a, a_start + u, i1)
        y0 = _load(b, b_start + u, j0)
        y1 = _load(b, b_start + u, j1)
        a00 = _fmav(a00, x0, y0)
        a01 = _fmav(a01, x0, y1)
        a10 = _fmav(a10, x1, y0)
        a11 = _fmav(a11, x1, y1)
    _store(outer, i0, j0, a00)
    _store(outer, i0, j1, a01)
    _store(outer, i1, j0, a10)
    _store(outer, i1, j1, a11)


@_inline
def _tile_2x4(a, a_start, b, b_start, u0, u1, outer, i0, i1, j0):
    """The (i0, i1) x (j0 .. j0 + 3) tile of :func:`_frame_products` over frames [u0, u1)."""
    a00 = _load(outer, i0, j0)
    a01 = _load(outer, i0, j0 + 1)
    a02 = _load(outer, i0, j0 + 2)
    a03 = _load(outer, i0, j0 + 3)
    a10 = _load(outer, i1, j0)
    a11 = _load(outer, i1, j0 + 1)
    a12 = _load(outer, i1, j0 + 2)
    a13 = _load(outer, i1, j0 + 3)
    for u in range(u0, u1):
        x0 = _load(a, a_start + u, i0)
        x1 = _load(a, a_start + u, i1)
        y = _load(b, b_start + u, j0)
        a00 = _fmav(a00, x0, y)
        a10 = _fmav(a10, x1, y)
        y = _load(b, b_start + u, j0 + 1)
        a01 = _fmav(a01, x0, y)
        a11 = _fmav(a11, x1, y)
        y = _load(b, b_start + u, j0 + 2)
        a02 = _fmav(a02, x0, y)
        a12 = _fmav(a12, x1, y)
        y = _load(b, b_start + u, j0 + 3)
        a03 = _fmav(a03, x0, y)
        a13 = _fmav(a13, x1, y)
    _store(outer, i0, j0, a00)
    _store(outer, i0, j0 + 1, a01)
    _store(outer, i0, j0 + 2, a02)
    _store(outer, i0, j0 + 3, a03)
    _store(outer, i1, j0, a10)
    _store(outer, i1, j0 + 1, a11)
    _store(outer, i1, j0 + 2, a12)
    _store(outer, i1, j0 + 3, a13)


@_inline
def _tile_5x5_half(a, a_start, b, b_start, u0, u1, outer, i0, j0, half):
    """The 5 x 5 tile at (i0, j0) of :func:`_frame_products` over frames [u0, u1), lanes 8 half .. 8 half + 7.

    25 accumulators, 5 rows of ``a`` and one column of ``b`` at a time: 31 of the 32 vector
    registers. Written out because numba keeps named locals in registers (a list would live
    in memory)."""
    a00 = _load_half(outer, i0, j0, half)
    a01 = _load_half(outer, i0, j0 + 1, half)
    a02 = _load_half(outer, i0, j0 + 2, half)
    a03 = _load_half(outer, i0, j0 + 3, half)
    a04 = _load_half(outer, i0, j0 + 4, half)
    a10 = _load_half(outer, i0 + 1, j0, half)
    a11 = _load_half(outer, i0 + 1, j0 + 1, half)
    a12 = _load_half(outer, i0 + 1, j0 + 2, half)
    a13 = _load_half(outer, i0 + 1, j0 + 3, half)
    a14 = _load_half(outer, i0 + 1, j0 + 4, half)
    a20 = _load_half(outer, i0 + 2, j0, half)
    a21 = _load_half(outer, i0 + 2, j0 + 1, half)
    a22 = _load_half(outer, i0 + 2, j0 + 2, half)
    a23 = _load_half(outer, i0 + 2, j0 + 3, half)
    a24 = _load_half(outer, i0 + 2, j0 + 4, half)
    a30 = _load_half(outer, i0 + 3, j0, half)
    a31 = _load_half(outer, i0 + 3, j0 + 1, half)
    a32 = _load_half(outer, i0 + 3, j0 + 2, half)
    a33 = _load_half(outer, i0 + 3, j0 + 3, half)
    a34 = _load_half(outer, i0 + 3, j0 + 4, half)
    a40 = _load_half(outer, i0 + 4, j0, half)
    a41 = _load_half(outer, i0 + 4, j0 + 1, half)
    a42 = _load_half(outer, i0 + 4, j0 + 2, half)
    a43 = _load_half(outer, i0 + 4, j0 + 3, half)
    a44 = _load_half(outer, i0 + 4, j0 + 4, half)
    for u in range(u0, u1):
        x0 = _load_half(a, a_start + u, i0, half)
        x1 = _load_half(a, a_start + u, i0 + 1, half)
        x2 = _load_half(a, a_start + u, i0 + 2, half)
        x3 = _load_half(a, a_start + u, i0 + 3, half)
        x4 = _load_half(a, a_start + u, i0 + 4, half)
        y = _load_half(b, b_start + u, j0, half)
        a00 = _fma_half(a00, x0, y)
        a10 = _fma_half(a10, x1, y)
        a20 = _fma_half(a20, x2, y)
        a30 = _fma_half(a30, x3, y)
        a40 = _fma_half(a40, x4, y)
        y = _load_half(b, b_start + u, j0 + 1, half)
        a01 = _fma_half(a01, x0, y)
        a11 = _fma_half(a11, x1, y)
        a21 = _fma_half(a21, x2, y)
        a31 = _fma_half(a31, x3, y)
        a41 = _fma_half(a41, x4, y)
        y = _load_half(b, b_start + u, j0 + 2, half)
        a02 = _fma_half(a02, x0, y)
        a12 = _fma_half(a12, x1, y)
        a22 = _fma_half(a22, x2, y)
        a32 = _fma_half(a32, x3, y)
        a42 = _fma_half(a42, x4, y)
        y = _load_half(b, b_start + u, j0 + 3, half)
        a03 = _fma_half(a03, x0, y)
        a13 = _fma_half(a13, x1, y)
        a23 = _fma_half(a23, x2, y)
        a33 = _fma_half(a33, x3, y)
        a43 = _fma_half(a43, x4, y)
        y = _load_half(b, b_start + u, j0 + 4, half)
        a04 = _fma_half(a04, x0, y)
        a14 = _fma_half(a14, x1, y)
        a24 = _fma_half(a24, x2, y)
        a34 = _fma_half(a34, x3, y)
        a44 = _fma_half(a44, x4, y)
    _store_half(outer, i0, j0, half, a00)
    _store_half(outer, i0, j0 + 1, half, a01)
    _store_half(outer, i0, j0 + 2, half, a02)
    _store_half(outer, i0, j0 + 3, half, a03)
    _store_half(outer, i0, j0 + 4, half, a04)
    _store_half(outer, i0 + 1, j0, half, a10)
    _store_half(outer, i0 + 1, j0 + 1, half, a11)
    _store_half(outer, i0 + 1, j0 + 2, half, a12)
    _store_half(outer, i0 + 1, j0 + 3, half, a13)
    _store_half(outer, i0 + 1, j0 + 4, half, a14)
    _store_half(outer, i0 + 2, j0, half, a20)
    _store_half(outer, i0 + 2, j0 + 1, half, a21)
    _store_half(outer, i0 + 2, j0 + 2, half, a22)
    _store_half(outer, i0 + 2, j0 + 3, half, a23)
    _store_half(outer, i0 + 2, j0 + 4, half, a24)
    _store_half(outer, i0 + 3, j0, half, a30)
    _store_half(outer, i0 + 3, j0 + 1, half, a31)
    _store_half(outer, i0 + 3, j0 + 2, half, a32)
    _store_half(outer, i0 + 3, j0 + 3, half, a33)
    _store_half(outer, i0 + 3, j0 + 4, half, a34)
    _store_half(outer, i0 + 4, j0, half, a40)
    _store_half(outer, i0 + 4, j0 + 1, half, a41)
    _store_half(outer, i0 + 4, j0 + 2, half, a42)
    _store_half(outer, i0 + 4, j0 + 3, half, a43)
    _store_half(outer, i0 + 4, j0 + 4, half, a44)


# Columns per register tile of the frame products: 2 x 4 lane vectors of
# accumulators where the CPU has 32 vector registers (AVX-512: 16 registers
# of accumulators, each loaded vector feeds 2 or 4 multiply-adds), 2 x 2 on
# AVX2 (16 registers; more would spill).
_TILE_COLUMNS = 4 if LANES == 16 else 2


@_jit
def _frame_products(a, a_start, b, b_start, count, outer):
    """``outer[i, j, lane] += sum over u < count of a[a_start + u, i, lane] b[b_start + u, j, lane]``.

    A small matrix product over the frames of a block, lane by lane: the
    expected transitions (``a`` alpha, ``b`` the backward factors w one frame
    later) and the posteriors' moments (``a`` the posteriors, ``b`` the moment
    columns of a chunk of frames). A register tile of (i, j) pairs per pass
    keeps its accumulators in registers, so every loaded vector feeds several
    multiply-adds: 5 x 5 tiles of eight lanes at a time where the CPU has 32
    vector registers (25 accumulators, 10 loads per 25 multiply-adds), over
    the rows and columns up to a multiple of 5; the rest (and everything on
    AVX2) in 2 x 4 or 2 x 2 tiles of whole lane vectors (:func:`_small_tiles`).
    Each sum runs over the frames in order whatever the tile, so the tiling
    never changes a bit. The lanes are summed by the caller, once per batch.
    """
    n_rows, n_columns = a.shape[1], b.shape[1]
    chunk = _chunk_frames(max(n_rows, n_columns))
    rows5 = n_rows - n_rows % 5 if LANES >= 16 else 0
    columns5 = n_columns - n_columns % 5 if rows5 > 0 else 0
    if columns5 == 0:
        rows5 = 0
    for u0 in range(0, count, chunk):
        u1 = min(u0 + chunk, count)
        for half in range(LANES // 8 if rows5 > 0 else 0):
            for i0 in range(0, rows5, 5):
                for j0 in range(0, columns5, 5):
                    _tile_5x5_half(a, a_start, b, b_start, u0, u1, outer, i0, j0, half)
        _small_tiles(a, a_start, b, b_start, u0, u1, outer, 0, n_rows, columns5, n_columns)
        _small_tiles(a, a_start, b, b_start, u0, u1, outer, rows5, n_rows, 0, columns5)


@_inline
def _small_tiles(a, a_start, b, b_start, u0, u1, outer, r0, r1, c0, c1):
    """:func:`_frame_products` over frames [u0, u1) for rows [r0, r1) x columns [c0, c1), in 2 x 4 tiles
    (AVX-512; 2 x 2 on AVX2: :data:`_TILE_COLUMNS`) of whole lane vectors. An odd last row or column
    is computed twice from the same accumulator (both copies agree)."""
    wide = c0 + (c1 - c0) // 4 * 4 if _TILE_COLUMNS == 4 else c0
    for i0 in range(r0, r1, 2):
        i1 = min(i0 + 1, r1 - 1)
        for j0 in range(c0, wide, 4):
            _tile_2x4(a, a_start, b, b_start, u0, u1, outer, i0, i1, j0)
        for j0 in range(wide, c1, 2):
            _tile_2x2(a, a_start, b, b_start, u0, u1, outer, i0, i1, j0, min(j0 + 1, c1 - 1))


@_inline
def _chunk_frames(n_columns):
    """Frames per pass of :func:`_frame_products` (and per chunk of moment columns) for rows of ``n_columns``."""
    return max(4, _L1_FRAME_COLUMNS // n_columns)


@_jit
def _load_moment_columns(X, first, length, t0, t1, columns, rows, zeros):
    """``columns[t - t0, c, lane]`` for t in [t0, t1): the moment columns of the lanes' frames.

    ``x_1 .. x_D``, 1, then ``x_d^2`` (``2 D + 1`` columns) or ``x_d x_e`` for
    ``e <= d`` (``D + 1 + D (D + 1) / 2``; see :func:`forward_backward_moments`);
    zeros past a sequence's end. A chunk at a time: the columns of a whole
    sequence would need memory in proportion to its length times the columns.
    """
    n_features = X.shape[1]
    squares = columns.shape[1] == 2 * n_features + 1
    for t in range(t0, t1):
        u = t - t0
        _frame_rows(first, length, t, rows)
        _gather_frame(X, rows, zeros, columns, u)
        _store(columns, u, n_features, _splat(1.0))
        c = n_features + 1
        for d in range(n_features):
            xd = _load(columns, u, d)
            if squares:
                _store(columns, u, c, _mul(xd, xd))
                c += 1
            else:
                for e in range(d + 1):
                    _store(columns, u, c, _mul(xd, _load(columns, u, e)))
                    c += 1


@_jit
def _expectations(
    startprob,
    transmat,
    table,
    symbols,
    components,
    X,
    offsets,
    target,
    log_likelihoods,
    start_counts,
    trans_counts,
    moments,
):
    """Forward-backward over a batch, block by block (see the four kernels below).

    The frame probabilities are gathered from ``table`` (rows, or rows by
    symbol), or with Gaussian ``components`` (means, scales, chol, log_norm
    of :func:`.emissions.gaussian_frames`; empty otherwise) computed from the
    lanes' frames of ``X``. Posteriors go to ``target`` (see
    :func:`_backward_block`), or, with ``moments`` not empty, their moments
    over the columns of ``X`` to ``moments``.
    """
    n_states = startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    order, alpha, frames, scale = _buffers(n_states, offsets)
    by_symbol = symbols.shape[0] > 0
    # categorical: the symbol table and the per-symbol counts padded for 8 x 8 tiles
    symbol_table = _padded_table(table, 1.0) if by_symbol else np.empty((0, 0))
    by_state = _permute_table(table) if by_symbol else _permute_table(np.empty((0, 0)))
    counts = _padded_table(target, 0.0) if by_symbol else np.empty((0, 0))
    symbol_rows = np.empty((alpha.shape[0] if by_symbol else 0, LANES), dtype=np.int64)
    means, scales, chol, log_norm = components
    densities = means.shape[0] > 0
    with_moments = moments.shape[0] > 0
    gamma = _lane_buffer(alpha.shape[0] if with_moments else 0, n_states)
    chunk = _chunk_frames(max(1, moments.shape[1]))
    columns = _lane_buffer(chunk if with_moments else 0, moments.shape[1])
    x = _lane_buffer(1 if densities else 0, X.shape[1])
    moment_sums = _lane_zeros(n_states, moments.shape[1])
    zeros = np.zeros(X.shape[1])
    # the log of each lane's per-frame density scales, added to its log-likelihood
    lane_log_scale = _lane_zeros(1, 1)
    y = _lane_buffer(1, X.shape[1])
    into = np.ascontiguousarray(transmat.T)
    first = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    rows = np.empty(LANES, dtype=np.int64)
    ones = np.ones(n_states)
    lane_log_likelihood = np.empty(LANES)
    numerators = _lane_buffer(1, n_states)
    # written instead of the posteriors of frames past the end of a sequence
    sink = np.zeros(n_states)
    # sum over t and lanes of alpha_t[i] * w_t[j]; the transition matrix is
    # a common factor, applied once at the end.
    outer = _lane_zeros(n_states, n_states)
    for block_start in range(0, n_sequences, LANES):
        longest = _load_block(order, block_start, offsets, first, length)
        if densities:
            log_scale = _splat(0.0)
            for t in range(longest):
                _frame_rows(first, length, t, rows)
                _gather_frame(X, rows, zeros, x, 0)
                largest = gaussian_lane_frame(x, means, scales, chol, log_norm, y, frames, t)
                # the frame's scale counts where the lane's sequence has a frame t
                log_scale = _add(log_scale, _mul(largest, _sub(_splat(1.0), _past_end(length, t))))
            _store(lane_log_scale, 0, 0, log_scale)
        elif by_symbol:
            _symbol_rows(symbols, first, length, longest, symbol_table, symbol_rows)
            _load_symbol_frames(symbol_table, by_state, symbol_rows, longest, frames)
        else:
            _load_frames(table, first, length, longest, frames, rows, ones)
        failed_lane, failed_t = _forward_block(
            startprob, into, frames, length, longest, alpha, scale, lane_log_likelihood
        )
        if failed_lane >= 0:
            return order[block_start + failed_lane], failed_t
        for lane in range(min(LANES, n_sequences - block_start)):
            log_likelihoods[order[block_start + lane]] = lane_log_likelihood[lane] + lane_log_scale[0, 0, lane]
        _backward_block(
            transmat,
            first,
            length,
            longest,
            alpha,
            frames,
            scale,
            numerators,
            rows,
            sink,
            symbols,
            target,
            start_counts,
            gamma,
            counts,
            symbol_rows,
        )
        _frame_products(alpha, 0, frames, 1, longest - 1, outer)
        if with_moments:
            for t0 in range(0, longest, chunk):
                t1 = min(t0 + chunk, longest)
                _load_moment_columns(X, first, length, t0, t1, columns, rows, zeros)
                _frame_products(gamma, t0, columns, 0, t1 - t0, moment_sums)
    if by_symbol:
        target[:, :] = counts[: target.shape[0], : target.shape[1]]
    for i in range(n_states):
        for j in range(n_states):
            trans_counts[i, j] += transmat[i, j] * _lane_sum(_load(outer, i, j))
        if with_moments:
            for c in range(moments.shape[1]):
                moments[i, c] += _lane_sum(_load(moment_sums, i, c))
    return -1, -1


@_inline
def _no_components():
    """No Gaussian components: the frame probabilities come from a table."""
    return np.empty((0, 0)), np.empty((0, 0)), np.empty((0, 0, 0)), np.empty(0)


@_jit
def forward_backward(
    startprob,
    transmat,
    frameprob,
    offsets,
    posteriors,
    log_likelihoods,
    start_counts,
    trans_counts,
):
    """Posteriors, per-sequence log-likelihoods and expected counts of a batch.

    Writes ``posteriors`` (n_frames x n_states) and ``log_likelihoods``
    (n_sequences), adds each sequence's first-frame posterior to
    ``start_counts`` and its expected transitions to ``trans_counts``.
    Returns ``(-1, -1)`` on success, else ``(sequence, position)`` of the
    first frame whose probability underflowed.
    """
    no_symbols = np.empty(0, dtype=np.int64)
    no_moments = np.empty((0, 0))
    return _expectations(
        startprob,
        transmat,
        frameprob,
        no_symbols,
        _no_components(),
        no_moments,
        offsets,
        posteriors,
        log_likelihoods,
        start_counts,
        trans_counts,
        no_moments,
    )


@_jit
def forward_backward_moments(
    startprob,
    transmat,
    frameprob,
    X,
    offsets,
    log_likelihoods,
    start_counts,
    trans_counts,
    moments,
):
    """:func:`forward_backward` adding the posteriors' moments over ``X`` instead of writing the posteriors.

    ``moments[k, c] += sum_t posterior_t[k] z_t[c]`` with the columns ``z_t``:
    ``x_t1 .. x_tD``, 1, then either ``x_td^2`` (``moments`` has ``2 D + 1``
    columns: what diagonal covariances need) or ``x_td x_te`` for ``e <= d``
    in row order (``D + 1 + D (D + 1) / 2`` columns: full covariances). The
    posteriors never leave the lane layout: the sums are small matrix
    products over each block's frames with the accumulators in registers, so
    neither the n_frames x n_states posteriors nor a pass of BLAS over them
    are needed. ``X`` is (n_frames, D) float64, C-contiguous.
    """
    no_symbols = np.empty(0, dtype=np.int64)
    no_target = np.empty((0, 0))
    return _expectations(
        startprob,
        transmat,
        frameprob,
        no_symbols,
        _no_components(),
        X,
        offsets,
        no_target,
        log_likelihoods,
        start_counts,
        trans_counts,
        moments,
    )


@_jit
def gaussian_forward_backward_moments(
    startprob,
    transmat,
    means,
    scales,
    chol,
    log_norm,
    X,
    offsets,
    log_likelihoods,
    start_counts,
    trans_counts,
    moments,
):
    """:func:`forward_backward_moments` of a Gaussian HMM, its frame probabilities computed in the lanes.

    The components are :func:`.emissions.gaussian_frames`' (one per state):
    each block's frames are gathered into the lane layout once (for the
    moments anyway) and their densities, maximum and exp computed there
    (:func:`.emissions.gaussian_lane_frame`), so no frames x states array is
    written, transposed and gathered back. ``log_likelihoods`` include the
    frames' scales.
    """
    no_symbols = np.empty(0, dtype=np.int64)
    no_table = np.empty((0, 0))
    return _expectations(
        startprob,
        transmat,
        no_table,
        no_symbols,
        (means, scales, chol, log_norm),
        X,
        offsets,
        no_table,
        log_likelihoods,
        start_counts,
        trans_counts,
        moments,
    )


@_jit
def categorical_forward_backward(
    startprob,
    transmat,
    emissionprob_by_symbol,
    symbols,
    offsets,
    log_likelihoods,
    start_counts,
    trans_counts,
    counts_by_symbol,
):
    """The E-step of a categorical HMM, without posteriors in memory.

    :func:`forward_backward` with ``frameprob = emissionprob_by_symbol[symbols]``
    followed by adding each frame's posteriors to its symbol's row, in one pass: the emission
    probabilities are read from the (small) ``n_symbols x n_states`` table and
    each frame's posteriors are added to ``counts_by_symbol[symbol]`` straight
    from registers, so neither ``frameprob`` nor the posteriors (two arrays of
    n_frames x n_states) are ever written. ``symbols`` is int64 or uint8 (n_frames,),
    each in ``[0, n_symbols)`` (not checked here).
    """
    no_moments = np.empty((0, 0))
    return _expectations(
        startprob,
        transmat,
        emissionprob_by_symbol,
        symbols,
        _no_components(),
        no_moments,
        offsets,
        counts_by_symbol,
        log_likelihoods,
        start_counts,
        trans_counts,
        no_moments,
    )

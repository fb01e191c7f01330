"""Forward-backward over a batch: posteriors (or per-symbol counts) and expected transitions."""

from __future__ import annotations

import numpy as np

from hmm.core.kernels.forward import _forward_block
from hmm.core.kernels.lanes import (
    LANES,
    _add,
    _buffers,
    _fmav,
    _frame_rows,
    _jit,
    _lane_sum,
    _load,
    _load_block,
    _load_frames,
    _mul,
    _past_end,
    _reciprocal,
    _row,
    _rows2,
    _rows4,
    _scatter_add_frame,
    _scatter_frame,
    _splat,
    _store,
)


@_jit
def _backward_block(transmat, first, length, longest, alpha, frames, scale, beta, rows, sink, symbols, target, start):
    """Backward sweep of one block: posteriors out, ``frames`` overwritten.

    The posteriors of frame t go to ``target[row]`` (``symbols`` empty), or are
    added to ``target[symbol of the frame]``; those of the first frames are
    added to ``start``.

    ``frames[t + 1]`` is replaced by ``w_t[j] = b_{t+1}(j) beta_{t+1}(j) /
    c_{t+1}`` (zero past the end of a lane's sequence), the factor the
    expected transitions ``alpha_t[i] transmat[i, j] w_t[j]`` need; frame
    ``t + 1`` is not read again once ``w_t`` is known, so it reuses the memory.
    ``beta[0]`` holds beta_t, ``beta[1]`` alpha_t * beta_t. ``rows`` is scratch,
    ``sink`` receives what lanes past their sequence's end would write.
    """
    n_states = transmat.shape[0]
    for j in range(n_states):
        _store(beta, 0, j, _splat(1.0))
    for t in range(longest - 1, -1, -1):
        if t < longest - 1:
            # 1 / c_{t+1}, or 0 where frame t+1 is past the end of the lane's
            # sequence: there w_t = 0 and beta restarts at 1.
            factor = _load(scale, 1, t + 1)
            restart = _past_end(length, t + 1)
            for j in range(n_states):
                _store(frames, t + 1, j, _mul(_mul(_load(frames, t + 1, j), _load(beta, 0, j)), factor))
            # beta_t[i] = sum_j transmat[i, j] w_t[j]
            in_fours = n_states - n_states % 4
            for i in range(0, in_fours, 4):
                a0, a1, a2, a3 = _rows4(transmat, i, frames, t + 1)
                _store(beta, 0, i, _add(a0, restart))
                _store(beta, 0, i + 1, _add(a1, restart))
                _store(beta, 0, i + 2, _add(a2, restart))
                _store(beta, 0, i + 3, _add(a3, restart))
            if n_states - in_fours >= 2:
                a0, a1 = _rows2(transmat, in_fours, frames, t + 1)
                _store(beta, 0, in_fours, _add(a0, restart))
                _store(beta, 0, in_fours + 1, _add(a1, restart))
            if n_states % 2:
                i = n_states - 1
                _store(beta, 0, i, _add(_row(transmat, i, frames, t + 1), restart))
        # posteriors of frame t, normalised as hmmlearn does
        total = _splat(0.0)
        for i in range(n_states):
            g = _mul(_load(alpha, t, i), _load(beta, 0, i))
            _store(beta, 1, i, g)
            total = _add(total, g)
        inverse = _reciprocal(total)
        if t == 0:
            for i in range(n_states):
                _store(beta, 1, i, _mul(_load(beta, 1, i), inverse))
            inverse = _splat(1.0)
            for lane in range(LANES):
                if length[lane] > 0:
                    for i in range(n_states):
                        start[i] += beta[1, i, lane]
        _frame_rows(first, length, t, symbols, rows)
        if symbols.shape[0] > 0:
            _scatter_add_frame(target, rows, sink, beta, 1, inverse)
        else:
            _scatter_frame(target, rows, sink, beta, 1, inverse)


# Frames per pass of the transition sums: the chunk's alpha and w rows
# (2 x frames x n_states x 64 bytes) stay in the L1-L2 caches while every
# (i, j) tile streams over them. Streaming whole sequences instead re-reads
# them from L2 once per tile, and the sums ran at a third of FMA speed.
_L1_FRAME_STATES = 320


@_jit
def _transition_sums(alpha, w, longest, outer):
    """``outer[i, j, lane] += sum over t < longest - 1 of alpha[t, i, lane] w[t + 1, j, lane]``.

    A 2 x 2 tile of (i, j) pairs per pass keeps four lane-vector accumulators
    in registers, so every loaded vector feeds two multiply-adds. An odd last
    row or column is computed twice from the same accumulator (both copies
    agree). The lanes are summed by the caller, once per batch.
    """
    n_states = alpha.shape[1]
    chunk = max(4, _L1_FRAME_STATES // n_states)
    for t0 in range(0, longest - 1, chunk):
        t1 = min(t0 + chunk, longest - 1)
        for i0 in range(0, n_states, 2):
            i1 = min(i0 + 1, n_states - 1)
            for j0 in range(0, n_states, 2):
                j1 = min(j0 + 1, n_states - 1)
                a00 = _load(outer, i0, j0)
                a01 = _load(outer, i0, j1)
                a10 = _load(outer, i1, j0)
                a11 = _load(outer, i1, j1)
                for t in range(t0, t1):
                    x0 = _load(alpha, t, i0)
                    x1 = _load(alpha, t, i1)
                    y0 = _load(w, t + 1, j0)
                    y1 = _load(w, t + 1, j1)
                    a00 = _fmav(a00, x0, y0)
                    a01 = _fmav(a01, x0, y1)
                    a10 = _fmav(a10, x1, y0)
                    a11 = _fmav(a11, x1, y1)
                _store(outer, i0, j0, a00)
                _store(outer, i0, j1, a01)
                _store(outer, i1, j0, a10)
                _store(outer, i1, j1, a11)


@_jit
def _expectations(startprob, transmat, table, symbols, offsets, target, log_likelihoods, start_counts, trans_counts):
    """Forward-backward over a batch, block by block (see the two kernels below)."""
    n_states = startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    order, alpha, frames, scale = _buffers(n_states, offsets)
    into = np.ascontiguousarray(transmat.T)
    first = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    rows = np.empty(LANES, dtype=np.int64)
    ones = np.ones(n_states)
    lane_log_likelihood = np.empty(LANES)
    beta = np.empty((2, n_states, LANES))
    # written instead of the posteriors of frames past the end of a sequence
    sink = np.zeros(n_states)
    # sum over t and lanes of alpha_t[i] * w_t[j]; the transition matrix is
    # a common factor, applied once at the end.
    outer = np.zeros((n_states, n_states, LANES))
    for block_start in range(0, n_sequences, LANES):
        longest = _load_block(order, block_start, offsets, first, length)
        _load_frames(table, symbols, first, length, longest, frames, rows, ones)
        failed_lane, failed_t = _forward_block(
            startprob, into, frames, length, longest, alpha, scale, lane_log_likelihood
        )
        if failed_lane >= 0:
            return order[block_start + failed_lane], failed_t
        for lane in range(min(LANES, n_sequences - block_start)):
            log_likelihoods[order[block_start + lane]] = lane_log_likelihood[lane]
        _backward_block(
            transmat, first, length, longest, alpha, frames, scale, beta, rows, sink, symbols, target, start_counts
        )
        _transition_sums(alpha, frames, longest, outer)
    for i in range(n_states):
        for j in range(n_states):
            trans_counts[i, j] += transmat[i, j] * _lane_sum(_load(outer, i, j))
    return -1, -1


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
    return _expectations(
        startprob, transmat, frameprob, no_symbols, offsets, posteriors, log_likelihoods, start_counts, trans_counts
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
    n_frames x n_states) are ever written. ``symbols`` is int64 (n_frames,),
    each in ``[0, n_symbols)`` (not checked here).
    """
    return _expectations(
        startprob,
        transmat,
        emissionprob_by_symbol,
        symbols,
        offsets,
        counts_by_symbol,
        log_likelihoods,
        start_counts,
        trans_counts,
    )

"""The scaled forward pass over blocks of lanes, and per-sequence log-likelihoods."""

from __future__ import annotations

import numpy as np

from hmm.core.kernels.lanes import (
    LANES,
    _add,
    _any_below,
    _buffers,
    _inline,
    _jit,
    _lane_buffer,
    _load,
    _load_block,
    _load_frames,
    _load_symbol_frames,
    _mul,
    _padded_table,
    _permute_table,
    _reciprocal,
    _row,
    _row_groups,
    _rows2,
    _rows4,
    _rows5,
    _rows5_normalising,
    _splat,
    _store,
    _symbol_rows,
    _where_present,
)

# A forward-pass normaliser below this means the frame is (numerically)
# impossible under every state the chain can be in: the same threshold as
# hmmlearn's scaling implementation.
UNDERFLOW = 1e-300
# Scaling factors are multiplied together and only turned into a log when the
# product gets small: one ``log`` per ~100 frames instead of one per frame.
_FOLD_BELOW = 1e-100


@_inline
def _emit_alpha(alpha, frames, t, j, acc, total):
    """``alpha[t, j] = acc * frames[t, j]``; returns ``total + alpha[t, j]``."""
    v = _mul(acc, _load(frames, t, j))
    _store(alpha, t, j, v)
    return _add(total, v)


@_jit
def _forward_block(startprob, into, frames, length, longest, alpha, scale, log_likelihood):
    """Scaled forward pass of one block of lanes.

    ``into[j, i]`` is ``transmat[i, j]``. Fills ``alpha[t, state, lane]``
    (normalised per frame), ``scale[0, t, lane]`` (the normalisers ``c_t``),
    ``scale[1, t, lane]`` (``1 / c_t``, 0 past the end of the lane's
    sequence) and ``log_likelihood[lane]``. Returns ``(-1, -1)``, or the lane
    and frame whose probability underflowed (the earliest frame of the block).
    """
    n_states = startprob.shape[0]
    into5 = _row_groups(into, 5)
    # The log-likelihoods follow the frames in lane vectors: each lane's
    # product of normalisers, folded into ``log_likelihood`` with one log
    # when it gets small. A lane with a normaliser below _FOLD_BELOW (or
    # one that underflowed) sends the block to the lane-by-lane loop below,
    # which gives the same bits.
    product = _splat(1.0)
    for lane in range(LANES):
        log_likelihood[lane] = 0.0
    spill = _lane_buffer(1, 1)
    in_lanes = True
    inverse = _splat(1.0)
    for t in range(longest):
        total = _splat(0.0)
        if t == 0:
            for j in range(n_states):
                total = _emit_alpha(alpha, frames, 0, j, _splat(startprob[j]), total)
        else:
            # alpha_t[j] = frame_t[j] * sum_i alpha_{t-1}[i] transmat[i, j]
            in_fives = n_states - n_states % 5
            if in_fives == 0:
                for j in range(n_states):
                    _store(alpha, t - 1, j, _mul(_load(alpha, t - 1, j), inverse))
            for j in range(0, in_fives, 5):
                if j == 0:
                    # frame t - 1 normalised as this loop reads it
                    a0, a1, a2, a3, a4 = _rows5_normalising(into5, 0, alpha, t - 1, inverse)
                else:
                    a0, a1, a2, a3, a4 = _rows5(into5, j // 5, alpha, t - 1)
                total = _emit_alpha(alpha, frames, t, j, a0, total)
                total = _emit_alpha(alpha, frames, t, j + 1, a1, total)
                total = _emit_alpha(alpha, frames, t, j + 2, a2, total)
                total = _emit_alpha(alpha, frames, t, j + 3, a3, total)
                total = _emit_alpha(alpha, frames, t, j + 4, a4, total)
            in_fours = in_fives + (n_states - in_fives) // 4 * 4
            for j in range(in_fives, in_fours, 4):
                a0, a1, a2, a3 = _rows4(into, j, alpha, t - 1)
                total = _emit_alpha(alpha, frames, t, j, a0, total)
                total = _emit_alpha(alpha, frames, t, j + 1, a1, total)
                total = _emit_alpha(alpha, frames, t, j + 2, a2, total)
                total = _emit_alpha(alpha, frames, t, j + 3, a3, total)
            if n_states - in_fours >= 2:
                a0, a1 = _rows2(into, in_fours, alpha, t - 1)
                total = _emit_alpha(alpha, frames, t, in_fours, a0, total)
                total = _emit_alpha(alpha, frames, t, in_fours + 1, a1, total)
            if (n_states - in_fours) % 2:
                j = n_states - 1
                total = _emit_alpha(alpha, frames, t, j, _row(into, j, alpha, t - 1), total)
        _store(scale, 0, t, total)
        inverse = _reciprocal(total)
        # past the end of the lane's sequence: no contribution to the counts
        _store(scale, 1, t, _where_present(length, t, inverse, 0.0))
        if in_lanes:
            c = _where_present(length, t, total, 1.0)
            if _any_below(c, _FOLD_BELOW):
                in_lanes = False
            else:
                product = _mul(product, c)
                if _any_below(product, _FOLD_BELOW):
                    _store(spill, 0, 0, product)
                    for lane in range(LANES):
                        if spill[0, 0, lane] < _FOLD_BELOW:
                            log_likelihood[lane] += np.log(spill[0, 0, lane])
                            spill[0, 0, lane] = 1.0
                    product = _load(spill, 0, 0)
    if longest > 0:
        for j in range(n_states):
            _store(alpha, longest - 1, j, _mul(_load(alpha, longest - 1, j), inverse))
    if in_lanes:
        _store(spill, 0, 0, product)
        for lane in range(LANES):
            log_likelihood[lane] += np.log(spill[0, 0, lane])
        return -1, -1
    # Lane by lane (a lane whose frame underflowed only fills itself with
    # inf/NaN above): the same arithmetic, and the earliest frame that failed.
    failed_lane = -1
    failed_t = longest
    for lane in range(LANES):
        product_of_lane = 1.0
        total_log = 0.0
        for t in range(length[lane]):
            c = scale[0, t, lane]
            if not c >= UNDERFLOW:
                if t < failed_t:
                    failed_lane = lane
                    failed_t = t
                break
            if c < _FOLD_BELOW:
                total_log += np.log(c)
            else:
                product_of_lane *= c
                if product_of_lane < _FOLD_BELOW:
                    total_log += np.log(product_of_lane)
                    product_of_lane = 1.0
        log_likelihood[lane] = total_log + np.log(product_of_lane)
    if failed_lane >= 0:
        return failed_lane, failed_t
    return -1, -1


@_jit
def forward_log_likelihoods(startprob, transmat, frameprob, offsets, log_likelihoods):
    """Per-sequence log-likelihoods of a batch (the forward pass alone).

    Returns ``(-1, -1)`` or the ``(sequence, position)`` that underflowed.
    """
    return _forward_log_likelihoods(
        startprob, transmat, frameprob, np.empty(0, dtype=np.int64), offsets, log_likelihoods
    )


@_jit
def categorical_forward_log_likelihoods(startprob, transmat, emissionprob_by_symbol, symbols, offsets, log_likelihoods):
    """:func:`forward_log_likelihoods` with ``frameprob = emissionprob_by_symbol[symbols]``, never written.

    The frames are read from the (small) ``n_symbols x n_states`` table as
    the categorical E-step reads them, so the log-likelihoods are bit for bit
    those of :func:`.forward_backward.categorical_forward_backward`: what
    scoring held-out sequences needs, without a frames x states array.
    ``symbols`` is int64 or uint8 (n_frames,), each in ``[0, n_symbols)`` (not checked here).
    """
    return _forward_log_likelihoods(startprob, transmat, emissionprob_by_symbol, symbols, offsets, log_likelihoods)


@_jit
def _forward_log_likelihoods(startprob, transmat, table, symbols, offsets, log_likelihoods):
    """The forward pass over a batch: frames from rows of ``table``, or from its rows by symbol."""
    n_states = startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    order, alpha, frames, scale = _buffers(n_states, offsets)
    into = np.ascontiguousarray(transmat.T)
    first = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    rows = np.empty(LANES, dtype=np.int64)
    ones = np.ones(n_states)
    lane_log_likelihood = np.empty(LANES)
    by_symbol = symbols.shape[0] > 0
    symbol_table = _padded_table(table, 1.0) if by_symbol else np.empty((0, 0))
    by_state = _permute_table(table) if by_symbol else _permute_table(np.empty((0, 0)))
    symbol_rows = np.empty((alpha.shape[0] if by_symbol else 0, LANES), dtype=np.int64)
    for block_start in range(0, n_sequences, LANES):
        longest = _load_block(order, block_start, offsets, first, length)
        if by_symbol:
            _symbol_rows(symbols, first, length, longest, symbol_table, symbol_rows)
            _load_symbol_frames(symbol_table, by_state, symbol_rows, longest, frames)
        else:
            _load_frames(table, first, length, longest, frames, rows, ones)
        lane, t = _forward_block(startprob, into, frames, length, longest, alpha, scale, lane_log_likelihood)
        if lane >= 0:
            return order[block_start + lane], t
        for lane in range(min(LANES, n_sequences - block_start)):
            log_likelihoods[order[block_start + lane]] = lane_log_likelihood[lane]
    return -1, -1


@_jit
def forward_filter(startprob, transmat, frameprob, offsets, filtered):
    """Causal (filtered) state probabilities ``P(state_t | x_1 .. x_t)`` of every sequence of a batch.

    The scaled forward pass, one sequence after another: ``filtered[t]`` is
    ``alpha_t`` normalised to sum 1, which only looks at frames up to ``t``
    (posteriors also look ahead). ``frameprob`` may be pre-scaled by any
    positive per-frame constant: normalising cancels it. Returns ``(-1, -1)``
    or the ``(sequence, position)`` whose frame has probability below
    :data:`UNDERFLOW` under every reachable state, as
    :func:`forward_log_likelihoods` does. Kept scalar, not in lanes: its output is a
    frames x states array anyway, so memory traffic, not arithmetic, bounds it.
    """
    n_states = startprob.shape[0]
    into = np.ascontiguousarray(transmat.T)  # into[j, i] = P(i -> j): the inner loop reads a row
    for s in range(offsets.shape[0] - 1):
        first = offsets[s]
        for t in range(first, offsets[s + 1]):
            total = 0.0
            for j in range(n_states):
                if t == first:
                    predicted = startprob[j]
                else:
                    predicted = 0.0
                    for i in range(n_states):
                        predicted += filtered[t - 1, i] * into[j, i]
                value = predicted * frameprob[t, j]
                filtered[t, j] = value
                total += value
            if not total >= UNDERFLOW:
                return s, t - first
            for j in range(n_states):
                filtered[t, j] /= total
    return -1, -1

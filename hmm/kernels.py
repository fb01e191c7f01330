"""Compiled Baum-Welch kernels over a whole batch of sequences.

Every kernel takes the frames of many sequences concatenated along the first
axis plus ``offsets`` (int64, ``n_sequences + 1`` entries): sequence ``s``
occupies rows ``offsets[s]:offsets[s + 1]``. This is hmmlearn's
``X, lengths`` layout and the layout of an Arrow list column, so one call
covers a whole batch and nothing loops over sequences in Python.

Forward-backward works in probability space with per-frame scaling (Rabiner
1989): it multiplies where the log-space version calls ``exp``/``log`` in the
innermost loop, and gives the same posteriors and log-likelihood to rounding.
The frame probabilities may be pre-scaled by any positive per-frame constant
(continuous emissions divide by the per-frame maximum so nothing underflows);
posteriors and transition counts do not change, and the caller adds the log of
the constants back to the log-likelihood.

The forward lattice is written into the ``posteriors`` output and overwritten
in place by the posteriors during the backward sweep, which also accumulates
the transition counts, so one array of ``n_frames x n_states`` is all the
memory a batch needs.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# A forward-pass normaliser below this means the frame is (numerically)
# impossible under every state the chain can be in: the same threshold as
# hmmlearn's scaling implementation.
UNDERFLOW = 1e-300
# Scaling factors are multiplied together and only turned into a log when the
# product gets small: one ``log`` per ~100 frames instead of one per frame.
_FOLD_BELOW = 1e-100

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


# Sequences are processed LANES at a time in lock-step: every inner loop runs
# over the lane axis, which is contiguous and of a compile-time length, so the
# compiler turns it into SIMD instructions whatever the number of states.
# Sequences are sorted by length first so that lanes of a block finish
# together; a lane past the end of its sequence sees emission probability 1
# and contributes nothing.
LANES = 8


@_jit
def _load_block(order, block_start, offsets, first, length):
    """Fill the first frame and length of each lane; returns the block's length."""
    n_sequences = order.shape[0]
    longest = 0
    for lane in range(LANES):
        if block_start + lane < n_sequences:
            s = order[block_start + lane]
            first[lane] = offsets[s]
            length[lane] = offsets[s + 1] - offsets[s]
        else:
            first[lane] = 0
            length[lane] = 0
        longest = max(longest, length[lane])
    return longest


@_jit
def _load_frames(frameprob, first, length, t, frame):
    n_states = frameprob.shape[1]
    for lane in range(LANES):
        if t < length[lane]:
            row = first[lane] + t
            for j in range(n_states):
                frame[j, lane] = frameprob[row, j]
        else:
            for j in range(n_states):
                frame[j, lane] = 1.0


@_jit
def _forward_block(startprob, transmat, frameprob, first, length, longest, alpha, scale, frame, log_likelihood):
    """Scaled forward pass of one block of lanes.

    Fills ``alpha[t, state, lane]`` (normalised per frame), ``scale[t, lane]``
    (the normalisers) and ``log_likelihood[lane]``. Returns -1, or the lane
    whose frame probability underflowed (the frame is ``failed_at[0]``).
    """
    n_states = startprob.shape[0]
    product = np.ones(LANES)
    for lane in range(LANES):
        log_likelihood[lane] = 0.0
    total = np.empty(LANES)
    for t in range(longest):
        _load_frames(frameprob, first, length, t, frame)
        if t == 0:
            for j in range(n_states):
                for lane in range(LANES):
                    alpha[0, j, lane] = startprob[j] * frame[j, lane]
        else:
            for j in range(n_states):
                for lane in range(LANES):
                    alpha[t, j, lane] = 0.0
            for i in range(n_states):
                for j in range(n_states):
                    a_ij = transmat[i, j]
                    for lane in range(LANES):
                        alpha[t, j, lane] += alpha[t - 1, i, lane] * a_ij
            for j in range(n_states):
                for lane in range(LANES):
                    alpha[t, j, lane] *= frame[j, lane]
        for lane in range(LANES):
            total[lane] = 0.0
        for j in range(n_states):
            for lane in range(LANES):
                total[lane] += alpha[t, j, lane]
        for lane in range(LANES):
            c = total[lane]
            if t < length[lane]:
                if not c >= UNDERFLOW:
                    return lane, t
                if c < _FOLD_BELOW:
                    log_likelihood[lane] += np.log(c)
                else:
                    product[lane] *= c
                    if product[lane] < _FOLD_BELOW:
                        log_likelihood[lane] += np.log(product[lane])
                        product[lane] = 1.0
            scale[t, lane] = c
            total[lane] = 1.0 / c
        for j in range(n_states):
            for lane in range(LANES):
                alpha[t, j, lane] *= total[lane]
    for lane in range(LANES):
        log_likelihood[lane] += np.log(product[lane])
    return -1, -1


@_jit
def forward_log_likelihoods(startprob, transmat, frameprob, offsets, log_likelihoods):
    """Per-sequence log-likelihoods of a batch (the forward pass alone).

    Returns ``(-1, -1)`` or the ``(sequence, position)`` that underflowed.
    """
    n_states = startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(lengths, kind="mergesort")
    longest_overall = lengths.max() if n_sequences else 0
    alpha = np.empty((longest_overall, n_states, LANES))
    scale = np.empty((longest_overall, LANES))
    frame = np.empty((n_states, LANES))
    first = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    lane_log_likelihood = np.empty(LANES)
    for block_start in range(0, n_sequences, LANES):
        longest = _load_block(order, block_start, offsets, first, length)
        lane, t = _forward_block(
            startprob, transmat, frameprob, first, length, longest, alpha, scale, frame, lane_log_likelihood
        )
        if lane >= 0:
            return order[block_start + lane], t
        for lane in range(min(LANES, n_sequences - block_start)):
            log_likelihoods[order[block_start + lane]] = lane_log_likelihood[lane]
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
    n_states = startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(lengths, kind="mergesort")
    longest_overall = lengths.max() if n_sequences else 0
    alpha = np.empty((longest_overall, n_states, LANES))
    scale = np.empty((longest_overall, LANES))
    frame = np.empty((n_states, LANES))
    first = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    lane_log_likelihood = np.empty(LANES)
    beta = np.empty((n_states, LANES))
    beta_previous = np.empty((n_states, LANES))
    weighted = np.empty((n_states, LANES))
    keep = np.empty(LANES)
    acc = np.empty(LANES)
    # sum over t of alpha_t[i] * (b_{t+1} beta_{t+1} / c_{t+1})[j], per lane;
    # the transition matrix is a common factor, applied once at the end.
    outer = np.zeros((n_states, n_states, LANES))
    for block_start in range(0, n_sequences, LANES):
        longest = _load_block(order, block_start, offsets, first, length)
        failed_lane, failed_t = _forward_block(
            startprob, transmat, frameprob, first, length, longest, alpha, scale, frame, lane_log_likelihood
        )
        if failed_lane >= 0:
            return order[block_start + failed_lane], failed_t
        for lane in range(min(LANES, n_sequences - block_start)):
            log_likelihoods[order[block_start + lane]] = lane_log_likelihood[lane]
        for j in range(n_states):
            for lane in range(LANES):
                beta[j, lane] = 1.0
        for t in range(longest - 1, -1, -1):
            if t < longest - 1:
                _load_frames(frameprob, first, length, t + 1, frame)
                # keep = 1 where frame t+1 belongs to the lane's sequence;
                # elsewhere beta restarts at 1 (the sequence ends at t or before).
                for lane in range(LANES):
                    keep[lane] = 1.0 if t + 1 < length[lane] else 0.0
                    acc[lane] = keep[lane] / scale[t + 1, lane]
                for j in range(n_states):
                    for lane in range(LANES):
                        weighted[j, lane] = frame[j, lane] * beta[j, lane] * acc[lane]
                for i in range(n_states):
                    for lane in range(LANES):
                        acc[lane] = 0.0
                    for j in range(n_states):
                        a_ij = transmat[i, j]
                        for lane in range(LANES):
                            outer[i, j, lane] += alpha[t, i, lane] * weighted[j, lane]
                            acc[lane] += a_ij * weighted[j, lane]
                    for lane in range(LANES):
                        beta_previous[i, lane] = acc[lane] + (1.0 - keep[lane])
                beta, beta_previous = beta_previous, beta
            # posteriors of frame t, normalised as hmmlearn does
            for lane in range(LANES):
                acc[lane] = 0.0
            for i in range(n_states):
                for lane in range(LANES):
                    g = alpha[t, i, lane] * beta[i, lane]
                    alpha[t, i, lane] = g
                    acc[lane] += g
            for lane in range(LANES):
                if t < length[lane]:
                    row = first[lane] + t
                    inverse = 1.0 / acc[lane]
                    for i in range(n_states):
                        posteriors[row, i] = alpha[t, i, lane] * inverse
        for lane in range(LANES):
            if length[lane] > 0:
                for j in range(n_states):
                    start_counts[j] += posteriors[first[lane], j]
    for i in range(n_states):
        for j in range(n_states):
            total = 0.0
            for lane in range(LANES):
                total += outer[i, j, lane]
            trans_counts[i, j] += transmat[i, j] * total
    return -1, -1


@_jit
def viterbi(log_startprob, log_transmat, log_frameprob, offsets, states, log_probabilities):
    """Most likely state path of every sequence of a batch.

    Ties break as in hmmlearn's C++ kernel (the first maximum at the last
    frame, the last maximum while backtracking), so paths are identical.
    """
    n_states = log_startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    longest = 0
    for s in range(n_sequences):
        longest = max(longest, offsets[s + 1] - offsets[s])
    lattice = np.empty((longest, n_states))
    into = np.ascontiguousarray(log_transmat.T)  # into[j, i] = log P(i -> j)
    for s in range(n_sequences):
        first = offsets[s]
        length = offsets[s + 1] - first
        for j in range(n_states):
            lattice[0, j] = log_startprob[j] + log_frameprob[first, j]
        for t in range(1, length):
            for j in range(n_states):
                best = -np.inf
                for i in range(n_states):
                    v = lattice[t - 1, i] + into[j, i]
                    if v > best:
                        best = v
                lattice[t, j] = best + log_frameprob[first + t, j]
        state = 0
        best = lattice[length - 1, 0]
        for j in range(1, n_states):
            if lattice[length - 1, j] > best:
                best = lattice[length - 1, j]
                state = j
        log_probabilities[s] = best
        states[first + length - 1] = state
        for t in range(length - 2, -1, -1):
            best = -np.inf
            previous = 0
            for i in range(n_states):
                v = lattice[t, i] + log_transmat[i, state]
                if v >= best:
                    best = v
                    previous = i
            state = previous
            states[first + t] = state


@_jit
def categorical_counts(symbols, posteriors, counts_by_symbol):
    """``counts_by_symbol[x, k] += sum of posteriors[t, k] over frames with symbol x``."""
    n_states = posteriors.shape[1]
    for t in range(symbols.shape[0]):
        x = symbols[t]
        for k in range(n_states):
            counts_by_symbol[x, k] += posteriors[t, k]

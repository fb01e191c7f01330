"""Viterbi decoding over a batch (one sequence at a time, in log space)."""

from __future__ import annotations

import numpy as np

from hmm.core.kernels.lanes import _jit


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

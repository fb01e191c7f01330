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

Layout. Sequences are sorted by length and processed ``LANES`` at a time in
lock-step, one sequence per lane, so that every arithmetic operation is a SIMD
operation across lanes whatever the number of states (an HMM with 3 or 10
states has no SIMD-friendly dimension of its own). ``LANES`` is two of the
CPU's widest vector registers: 16 doubles with AVX-512, 8 with AVX2 (the
forward and backward recurrences are chains of dependent frames, and two
independent registers per operation keep the FMA units busy; see
:func:`.lanes._host_lanes`). A block's work arrays are
``[frame][state][lane]``: the lanes of one (frame, state) are one vector.
Numba has no SIMD type and leaves LLVM's SLP vectoriser off
(``NUMBA_SLP_VECTORIZE=0``; it is fragile on loop-carried values anyway), so
plain loops over lanes compile to scalar code; the lane vector is therefore an
explicit LLVM ``<LANES x double>`` (:class:`LaneVector`) with a handful of
intrinsics (load, store, fused multiply-add, max, exp, ...), and accumulators
stay in registers. Matrix-vector products run four output rows at a time: four
independent FMA chains hide the FMA latency and every loaded vector feeds four
multiply-adds.

Per block of lanes: (1) the block's emission probabilities are transposed
into ``frames[t, state, lane]`` (LANES x 4 tiles, in registers; lanes past the
end of their sequence get probability 1), or, for Gaussian emissions,
computed there from the lanes' frames (densities, maximum and exp on lane
vectors); (2) the forward pass fills the normalised ``alpha`` and the
normalisers ``c_t``; (3) the backward pass turns ``frames[t + 1]`` into
``w_t = b_{t+1} beta_{t+1} / c_{t+1}`` and writes the posteriors (transposed
back the same way), or keeps them in the lane layout for their moments; (4)
the expected transitions ``sum_t alpha_t[i] transmat[i, j] w_t[j]`` are one
small matrix product over (frame, lane) from the two buffers, with register
tiles, rather than a rank-1 update in memory per frame; so are the posteriors'
moments (``sum_t gamma_t[k] z_t[c]`` over the columns ``x``, 1, ``x^2`` or
``x x^T`` of a chunk of frames). Working memory is a few arrays of ``longest
sequence x n_states x LANES`` whatever the size of the batch, starting on cache
lines (a 64-byte vector access that straddles two lines costs twice, and
numba's own arrays are 32-byte aligned). Per-sequence log-likelihoods are lane
vectors too: a product of normalisers per lane, folded into a log when small.

:func:`categorical_forward_backward` is the same computation for categorical
emissions reading the ``n_symbols x n_states`` table directly and adding each
frame's posteriors to per-symbol counts: both tables padded to a multiple of 8
columns, each lane's row read as whole 8-wide vectors and 8 lanes x 8 states
transposed in registers, at row offsets looked up once per block;
:func:`gaussian_forward_backward_moments`
computes Gaussian densities in the lanes and sums the posteriors' moments
there. Neither writes an ``n_frames x n_states`` array at all.

Modules, each importing only those above it:

- :mod:`.lanes`: the SIMD plumbing (lane vectors, intrinsics, block layout);
- :mod:`.emissions`: the continuous emissions' frame log-likelihoods, scaled
  into frame probabilities in the same pass (over blocks of frames, or one
  frame of every lane), and their expected counts (weighted moments) in the
  lane layout;
- :mod:`.forward`: the scaled forward pass and per-sequence log-likelihoods;
- :mod:`.forward_backward`: posteriors, expected transitions, categorical
  counts, posteriors' moments;
- :mod:`.viterbi`: most likely state paths;
- :mod:`.cache`: numba's cache files dropped when any kernel source changed.

The names below are the kernels' public interface; import them from here (the
emission models use :mod:`.emissions` as a module).
"""

from __future__ import annotations

from pathlib import Path

from hmm.core.kernels.cache import clear_stale_caches

# Before any kernel runs: numba's cache files compiled from other sources go (see .cache).
clear_stale_caches(Path(__file__).parent)

from hmm.core.kernels.emissions import scale_frames  # noqa: E402
from hmm.core.kernels.forward import (  # noqa: E402
    UNDERFLOW,
    categorical_forward_log_likelihoods,
    forward_filter,
    forward_log_likelihoods,
)
from hmm.core.kernels.forward_backward import (  # noqa: E402
    categorical_forward_backward,
    forward_backward,
    forward_backward_moments,
    gaussian_forward_backward_moments,
)
from hmm.core.kernels.lanes import LANES  # noqa: E402
from hmm.core.kernels.viterbi import viterbi  # noqa: E402

__all__ = [
    "LANES",
    "UNDERFLOW",
    "categorical_forward_backward",
    "categorical_forward_log_likelihoods",
    "forward_backward",
    "forward_backward_moments",
    "forward_filter",
    "forward_log_likelihoods",
    "gaussian_forward_backward_moments",
    "scale_frames",
    "viterbi",
]

"""Emission-side kernels: frame log-likelihoods turned into scaled frame probabilities."""

from __future__ import annotations

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
    n_states = frame_log_likelihood.shape[1]
    for t in range(frame_log_likelihood.shape[0]):
        largest = frame_log_likelihood[t, 0]
        for j in range(1, n_states):
            largest = max(largest, frame_log_likelihood[t, j])
        if not np.isfinite(largest):
            largest = 0.0
        log_scale[t] = largest
        for j in range(n_states):
            frame_log_likelihood[t, j] = _exp_nonpositive(frame_log_likelihood[t, j] - largest)

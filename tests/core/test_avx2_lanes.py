"""The kernels compiled for an AVX2 CPU (8 lanes, 2 x 2 register tiles, one 8 x 8 tile per lane
vector), run on this machine: the code paths EMR's AVX2 instance families would take.

This machine has AVX-512, so the suite otherwise only runs the 16-lane build. numba compiles for
the CPU named by ``NUMBA_CPU_NAME`` (and keys its cache on it), and :mod:`hmm.core.kernels.lanes`
picks the lane count from that CPU's features, so a child process with ``NUMBA_CPU_NAME=haswell``
and a cache folder of its own builds and runs the AVX2 kernels here.
"""

import os
import subprocess
import sys
from pathlib import Path

CHECK = """
import numpy as np
from hmm.core import kernels
from tests.core.test_kernels import model, offsets_of, ragged_lengths, reference

assert kernels.LANES == 8, kernels.LANES
for n_states in (3, 10):
    rng = np.random.default_rng(n_states)
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng))
    n_symbols = 11
    emissionprob_by_symbol = rng.dirichlet(np.ones(n_states), size=n_symbols)
    symbols = rng.integers(0, n_symbols, size=offsets[-1])
    frameprob = emissionprob_by_symbol[symbols]
    posteriors, log_likelihoods, start_counts, trans_counts = reference(startprob, transmat, frameprob, offsets)
    got = np.empty(offsets.shape[0] - 1)
    start, trans, counts = np.zeros(n_states), np.zeros((n_states, n_states)), np.zeros((n_symbols, n_states))
    failed = kernels.categorical_forward_backward(
        startprob, transmat, emissionprob_by_symbol, symbols, offsets, got, start, trans, counts
    )
    assert failed == (-1, -1)
    np.testing.assert_allclose(got, log_likelihoods, rtol=1e-12)
    np.testing.assert_allclose(start, start_counts, rtol=1e-10)
    np.testing.assert_allclose(trans, trans_counts, rtol=1e-10)
    want_counts = np.zeros((n_symbols, n_states))
    np.add.at(want_counts, symbols, posteriors)
    np.testing.assert_allclose(counts, want_counts, rtol=1e-10)
    forward_only = np.empty(offsets.shape[0] - 1)
    assert kernels.categorical_forward_log_likelihoods(
        startprob, transmat, emissionprob_by_symbol, symbols, offsets, forward_only
    ) == (-1, -1)
    np.testing.assert_array_equal(forward_only, got)
    X = rng.normal(size=(offsets[-1], 2))
    moments = np.zeros((n_states, 5))
    kernels.forward_backward_moments(
        startprob, transmat, frameprob, X, offsets, np.empty(offsets.shape[0] - 1),
        np.zeros(n_states), np.zeros((n_states, n_states)), moments,
    )
    columns = np.column_stack([X, np.ones(len(X)), X**2])
    np.testing.assert_allclose(moments, posteriors.T @ columns, rtol=1e-9)
print("ok")
"""


def test_the_avx2_build_matches_hmmlearn(tmp_path):
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    environment.pop("NUMBA_CPU_FEATURES", None)
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=root, env=environment, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")

"""The batch kernels against hmmlearn 0.3.3's C++ kernels, sequence by sequence."""

import numpy as np
import pytest
from hmmlearn import _hmmc

from hmm.core import kernels

STATES = [1, 2, 3, 5, 10, 13]


def ragged_lengths(rng, n_sequences=45, longest=60):
    """Lengths incl. several 1s, in no order, so lane blocks are mixed and the last is partial."""
    lengths = rng.integers(1, longest, size=n_sequences)
    lengths[[0, 7, 20]] = 1
    lengths[11] = 2
    lengths[30] = 250  # long enough for the scaling factors to be folded into the log
    return lengths


def model(rng, n_states, sparse=False):
    startprob = rng.dirichlet(np.ones(n_states))
    transmat = rng.dirichlet(np.ones(n_states), size=n_states)
    if sparse and n_states > 2:
        # left-right structure: zero transitions must stay exact zeros
        transmat = np.triu(transmat)
        transmat /= transmat.sum(axis=1, keepdims=True)
        startprob[-1] = 0.0
        startprob /= startprob.sum()
    return startprob, transmat


def frame_probabilities(rng, n_frames, n_states, tiny=False):
    frameprob = rng.random((n_frames, n_states)) ** 3
    if tiny:
        # small emission probabilities: many scaling factors below 1e-100
        frameprob *= 10.0 ** rng.uniform(-120, -1, size=(n_frames, 1))
    return frameprob


def offsets_of(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def reference(startprob, transmat, frameprob, offsets):
    """hmmlearn's scaling forward-backward, one sequence at a time."""
    n_states = startprob.shape[0]
    posteriors = np.empty_like(frameprob)
    log_likelihoods = np.empty(offsets.shape[0] - 1)
    start_counts = np.zeros(n_states)
    trans_counts = np.zeros((n_states, n_states))
    for s in range(offsets.shape[0] - 1):
        rows = slice(offsets[s], offsets[s + 1])
        log_prob, fwd, scaling = _hmmc.forward_scaling(startprob, transmat, frameprob[rows])
        bwd = _hmmc.backward_scaling(startprob, transmat, frameprob[rows], scaling)
        gamma = fwd * bwd
        gamma /= gamma.sum(axis=1, keepdims=True)
        posteriors[rows] = gamma
        log_likelihoods[s] = log_prob
        start_counts += gamma[0]
        if offsets[s + 1] - offsets[s] > 1:
            trans_counts += _hmmc.compute_scaling_xi_sum(fwd, transmat, bwd, frameprob[rows])
    return posteriors, log_likelihoods, start_counts, trans_counts


def run_forward_backward(startprob, transmat, frameprob, offsets):
    n_states = startprob.shape[0]
    posteriors = np.full_like(frameprob, np.nan)
    log_likelihoods = np.full(offsets.shape[0] - 1, np.nan)
    start_counts = np.zeros(n_states)
    trans_counts = np.zeros((n_states, n_states))
    failed = kernels.forward_backward(
        startprob, transmat, frameprob, offsets, posteriors, log_likelihoods, start_counts, trans_counts
    )
    return failed, posteriors, log_likelihoods, start_counts, trans_counts


@pytest.mark.parametrize("tiny", [False, True])
@pytest.mark.parametrize("n_states", STATES)
def test_forward_backward_matches_hmmlearn(n_states, tiny):
    rng = np.random.default_rng(n_states + 100 * tiny)
    startprob, transmat = model(rng, n_states, sparse=tiny)
    offsets = offsets_of(ragged_lengths(rng))
    frameprob = frame_probabilities(rng, offsets[-1], n_states, tiny)
    failed, posteriors, log_likelihoods, start_counts, trans_counts = run_forward_backward(
        startprob, transmat, frameprob, offsets
    )
    assert failed == (-1, -1)
    want_posteriors, want_log_likelihoods, want_start, want_trans = reference(startprob, transmat, frameprob, offsets)
    np.testing.assert_allclose(posteriors, want_posteriors, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(log_likelihoods, want_log_likelihoods, rtol=1e-12)
    np.testing.assert_allclose(start_counts, want_start, rtol=1e-10)
    np.testing.assert_allclose(trans_counts, want_trans, rtol=1e-10, atol=1e-300)
    # zero transitions get exactly zero counts (left-right models stay left-right)
    assert np.all(trans_counts[transmat == 0] == 0)


@pytest.mark.parametrize("n_states", STATES)
def test_counts_accumulate_into_the_outputs(n_states):
    rng = np.random.default_rng(7)
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng, n_sequences=45, longest=30))
    frameprob = frame_probabilities(rng, offsets[-1], n_states)
    _, _, _, start_once, trans_once = run_forward_backward(startprob, transmat, frameprob, offsets)
    start_counts = np.ones(n_states)
    trans_counts = np.ones((n_states, n_states))
    kernels.forward_backward(
        startprob,
        transmat,
        frameprob,
        offsets,
        np.empty_like(frameprob),
        np.empty(offsets.shape[0] - 1),
        start_counts,
        trans_counts,
    )
    np.testing.assert_allclose(start_counts, 1 + start_once, rtol=1e-14)
    np.testing.assert_allclose(trans_counts, 1 + trans_once, rtol=1e-14)


@pytest.mark.parametrize("n_states", STATES)
def test_forward_log_likelihoods_matches_hmmlearn(n_states):
    rng = np.random.default_rng(n_states)
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng))
    frameprob = frame_probabilities(rng, offsets[-1], n_states, tiny=True)
    log_likelihoods = np.full(offsets.shape[0] - 1, np.nan)
    assert kernels.forward_log_likelihoods(startprob, transmat, frameprob, offsets, log_likelihoods) == (-1, -1)
    _, want, _, _ = reference(startprob, transmat, frameprob, offsets)
    np.testing.assert_allclose(log_likelihoods, want, rtol=1e-12)


@pytest.mark.parametrize("n_states", [3, 10])
def test_log_likelihoods_in_lanes_equal_the_lane_by_lane_loop(n_states):
    """The forward pass sums a block's log-likelihoods in lane vectors, unless a lane of the block has
    a frame normaliser below 1e-100: then the whole block goes through the lane-by-lane loop. Both
    must give the same bits, so a sequence's log-likelihood cannot depend on its block mates."""
    rng = np.random.default_rng(7)
    startprob, transmat = model(rng, n_states)
    n_lanes = kernels.LANES
    lengths = np.full(n_lanes, 240)  # one block; long enough to fold the product several times
    offsets = offsets_of(lengths)
    frameprob = frame_probabilities(rng, int(offsets[-1]), n_states)
    alone = np.empty(n_lanes)
    assert kernels.forward_log_likelihoods(startprob, transmat, frameprob, offsets, alone) == (-1, -1)
    tiny = frameprob.copy()
    tiny[offsets[3] + 17] *= 1e-150  # sequence 3: one frame far below 1e-100, far above underflow
    mixed = np.empty(n_lanes)
    assert kernels.forward_log_likelihoods(startprob, transmat, tiny, offsets, mixed) == (-1, -1)
    others = np.arange(n_lanes) != 3
    np.testing.assert_array_equal(mixed[others], alone[others])
    assert mixed[3] == pytest.approx(alone[3] + np.log(1e-150), rel=1e-9)


def test_single_sequence_and_single_frame():
    rng = np.random.default_rng(3)
    startprob, transmat = model(rng, 4)
    for length in (1, 2, 9):
        offsets = offsets_of([length])
        frameprob = frame_probabilities(rng, length, 4)
        _, posteriors, log_likelihoods, start_counts, trans_counts = run_forward_backward(
            startprob, transmat, frameprob, offsets
        )
        want = reference(startprob, transmat, frameprob, offsets)
        np.testing.assert_allclose(posteriors, want[0], rtol=1e-10)
        np.testing.assert_allclose(log_likelihoods, want[1], rtol=1e-12)
        np.testing.assert_allclose(start_counts, want[2], rtol=1e-10)
        np.testing.assert_allclose(trans_counts, want[3], rtol=1e-10, atol=1e-300)


def test_empty_batch():
    startprob, transmat = model(np.random.default_rng(0), 3)
    offsets = np.zeros(1, dtype=np.int64)
    failed, _, _, start_counts, trans_counts = run_forward_backward(startprob, transmat, np.empty((0, 3)), offsets)
    assert failed == (-1, -1)
    assert not start_counts.any() and not trans_counts.any()


@pytest.mark.parametrize("n_states", [1, 3, 10])
@pytest.mark.parametrize("kernel", ["forward_backward", "forward_log_likelihoods"])
def test_underflow_reports_sequence_and_position(kernel, n_states):
    rng = np.random.default_rng(5)
    startprob, transmat = model(rng, n_states)
    lengths = ragged_lengths(rng)
    offsets = offsets_of(lengths)
    for sequence, position in [(30, 200), (12, 0), (44, lengths[44] - 1)]:
        frameprob = frame_probabilities(rng, offsets[-1], n_states)
        frameprob[offsets[sequence] + position] = 0.0  # impossible under every state
        if kernel == "forward_backward":
            failed = run_forward_backward(startprob, transmat, frameprob, offsets)[0]
        else:
            failed = kernels.forward_log_likelihoods(
                startprob, transmat, frameprob, offsets, np.empty(offsets.shape[0] - 1)
            )
        assert failed == (sequence, position)


def test_underflow_through_an_unreachable_state():
    # State 2 can never be entered: a frame only state 2 can emit is impossible.
    startprob = np.array([0.5, 0.5, 0.0])
    transmat = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    frameprob = np.full((5, 3), 0.5)
    frameprob[3] = [0.0, 0.0, 1.0]
    offsets = offsets_of([1, 4])
    assert run_forward_backward(startprob, transmat, frameprob, offsets)[0] == (1, 2)


@pytest.mark.parametrize("n_states", STATES)
def test_viterbi_matches_hmmlearn(n_states):
    rng = np.random.default_rng(n_states)
    startprob, transmat = model(rng, n_states, sparse=True)
    offsets = offsets_of(ragged_lengths(rng))
    with np.errstate(divide="ignore"):
        log_startprob = np.log(startprob)
        log_transmat = np.log(transmat)
        log_frameprob = np.log(frame_probabilities(rng, offsets[-1], n_states))
    states = np.full(offsets[-1], -1, dtype=np.intp)
    log_probabilities = np.empty(offsets.shape[0] - 1)
    kernels.viterbi(log_startprob, log_transmat, log_frameprob, offsets, states, log_probabilities)
    for s in range(offsets.shape[0] - 1):
        rows = slice(offsets[s], offsets[s + 1])
        log_prob, path = _hmmc.viterbi(startprob, transmat, log_frameprob[rows])
        assert log_probabilities[s] == pytest.approx(log_prob, rel=1e-12)
        np.testing.assert_array_equal(states[rows], path)


@pytest.mark.parametrize("n_symbols", [7, 40])  # frames permuted out of registers (<= 31), or 8 x 8 tiles
# the posteriors go to the counts in tiles of 8 states, the last states in a tile of 2, 4 or 8
# (by n_states % 8): every width, full or not, and no last tile at all
@pytest.mark.parametrize("n_states", sorted({*STATES, 4, 8, 12, 16, 17}))
def test_categorical_forward_backward_is_forward_backward_then_counts(n_states, n_symbols):
    rng = np.random.default_rng(n_states)
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng))
    emissionprob_by_symbol = rng.dirichlet(np.ones(n_symbols), size=n_states).T.copy()
    symbols = rng.integers(0, n_symbols, size=offsets[-1])
    frameprob = emissionprob_by_symbol[symbols]
    _, posteriors, want_log_likelihoods, want_start, want_trans = run_forward_backward(
        startprob, transmat, frameprob, offsets
    )
    want_counts = np.ones((n_symbols, n_states))
    np.add.at(want_counts, symbols, posteriors)
    log_likelihoods = np.empty(offsets.shape[0] - 1)
    start_counts = np.zeros(n_states)
    trans_counts = np.zeros((n_states, n_states))
    counts = np.ones((n_symbols, n_states))
    failed = kernels.categorical_forward_backward(
        startprob,
        transmat,
        emissionprob_by_symbol,
        symbols,
        offsets,
        log_likelihoods,
        start_counts,
        trans_counts,
        counts,
    )
    assert failed == (-1, -1)
    np.testing.assert_allclose(log_likelihoods, want_log_likelihoods, rtol=1e-14)
    np.testing.assert_allclose(start_counts, want_start, rtol=1e-14)
    np.testing.assert_allclose(trans_counts, want_trans, rtol=1e-14)
    np.testing.assert_allclose(counts, want_counts, rtol=1e-12)


@pytest.mark.parametrize("n_states", [3, 10])
def test_categorical_kernels_read_uint8_symbols_as_int64(n_states):
    """uint8 symbols (the Spark split cache's) give the int64 symbols' statistics bit for bit, with
    ragged lengths (each block's common frames transposed 8 x 8, the rest one by one)."""
    rng = np.random.default_rng(n_states)
    startprob, transmat = model(rng, n_states)
    emissionprob_by_symbol = rng.dirichlet(np.ones(n_states), size=200)  # up to 199: uint8, 8 x 8 tiles
    offsets = offsets_of(ragged_lengths(rng))
    symbols = rng.integers(0, 200, size=offsets[-1])
    results = []
    for typed in (symbols, symbols.astype(np.uint8)):
        log_likelihoods = np.empty(offsets.shape[0] - 1)
        start, trans, counts = np.zeros(n_states), np.zeros((n_states, n_states)), np.zeros((200, n_states))
        failed = kernels.categorical_forward_backward(
            startprob, transmat, emissionprob_by_symbol, typed, offsets, log_likelihoods, start, trans, counts
        )
        assert failed == (-1, -1)
        forward_only = np.empty(offsets.shape[0] - 1)
        assert kernels.categorical_forward_log_likelihoods(
            startprob, transmat, emissionprob_by_symbol, typed, offsets, forward_only
        ) == (-1, -1)
        results.append((log_likelihoods, start, trans, counts, forward_only))
    for want, got in zip(*results, strict=True):
        np.testing.assert_array_equal(got, want)


def test_categorical_forward_backward_underflow():
    rng = np.random.default_rng(2)
    startprob, transmat = model(rng, 3)
    emissionprob_by_symbol = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    lengths = ragged_lengths(rng)
    offsets = offsets_of(lengths)
    symbols = rng.integers(0, 2, size=offsets[-1])
    symbols[offsets[30] + 17] = 2  # impossible under every state
    failed = kernels.categorical_forward_backward(
        startprob,
        transmat,
        emissionprob_by_symbol,
        symbols,
        offsets,
        np.empty(offsets.shape[0] - 1),
        np.zeros(3),
        np.zeros((3, 3)),
        np.zeros((3, 3)),
    )
    assert failed == (30, 17)


@pytest.mark.parametrize("n_states", [1, 3, 10, 13])
def test_categorical_forward_log_likelihoods_are_the_e_steps_bit_for_bit(n_states):
    """The forward pass alone over symbols (held-out scores) gives the E-step's log-likelihoods
    exactly, and the frames x states path's within rounding of nothing (the same frames)."""
    rng = np.random.default_rng(n_states)
    startprob, transmat = model(rng, n_states)
    emissionprob_by_symbol = rng.dirichlet(np.ones(n_states), size=11)  # 11 symbols: a partial 8 x 8 tile
    offsets = offsets_of(ragged_lengths(rng))
    symbols = rng.integers(0, 11, size=offsets[-1])
    want = np.empty(offsets.shape[0] - 1)
    counts = np.zeros((11, n_states))
    kernels.categorical_forward_backward(
        startprob,
        transmat,
        emissionprob_by_symbol,
        symbols,
        offsets,
        want,
        np.zeros(n_states),
        np.zeros((n_states, n_states)),
        counts,
    )
    got = np.full(offsets.shape[0] - 1, np.nan)
    failed = kernels.categorical_forward_log_likelihoods(
        startprob, transmat, emissionprob_by_symbol, symbols, offsets, got
    )
    assert failed == (-1, -1)
    np.testing.assert_array_equal(got, want)
    by_rows = np.empty(offsets.shape[0] - 1)
    kernels.forward_log_likelihoods(startprob, transmat, emissionprob_by_symbol[symbols], offsets, by_rows)
    np.testing.assert_array_equal(got, by_rows)
    emissionprob_by_symbol[10] = 0.0  # symbol 10: impossible under every state, seen once
    symbols[symbols == 10] = 0
    symbols[offsets[30] + 17] = 10
    assert kernels.categorical_forward_log_likelihoods(
        startprob, transmat, emissionprob_by_symbol, symbols, offsets, got
    ) == (30, 17)


@pytest.mark.parametrize("n_states", [3, 10])
def test_non_contiguous_arrays(n_states):
    """Strided frame probabilities and posteriors (views) give the same results."""
    rng = np.random.default_rng(11)
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng, n_sequences=45, longest=30))
    frameprob = frame_probabilities(rng, offsets[-1], n_states)
    _, want_posteriors, want_log_likelihoods, want_start, want_trans = run_forward_backward(
        startprob, transmat, frameprob, offsets
    )
    strided = np.zeros((offsets[-1], 2 * n_states))
    strided[:, ::2] = frameprob
    for view in (strided[:, ::2], np.asfortranarray(frameprob)):
        posteriors = np.zeros((offsets[-1], n_states + 3))[:, 1 : n_states + 1]
        log_likelihoods = np.empty(offsets.shape[0] - 1)
        start_counts = np.zeros(n_states)
        trans_counts = np.zeros((n_states, n_states))
        failed = kernels.forward_backward(
            startprob, transmat, view, offsets, posteriors, log_likelihoods, start_counts, trans_counts
        )
        assert failed == (-1, -1)
        np.testing.assert_allclose(posteriors, want_posteriors, rtol=1e-14)
        np.testing.assert_allclose(log_likelihoods, want_log_likelihoods, rtol=1e-14)
        np.testing.assert_allclose(start_counts, want_start, rtol=1e-14)
        np.testing.assert_allclose(trans_counts, want_trans, rtol=1e-14)
        assert kernels.forward_log_likelihoods(startprob, transmat, view, offsets, log_likelihoods) == (-1, -1)
        np.testing.assert_allclose(log_likelihoods, want_log_likelihoods, rtol=1e-14)


def test_scale_frames_turns_log_likelihoods_into_scaled_probabilities():
    frames = np.array([[-1.0, -3.0, -2.0], [-np.inf, -np.inf, -np.inf], [5.0, -np.inf, 1.0], [0.0, -720.0, -700.0]])
    log_scale = np.empty(4)
    kernels.scale_frames(frames, log_scale)
    np.testing.assert_array_equal(log_scale, [-1.0, 0.0, 5.0, 0.0])
    want = np.exp([[0.0, -2.0, -1.0], [-np.inf, -np.inf, -np.inf], [0.0, -np.inf, -4.0], [0.0, -np.inf, -700.0]])
    np.testing.assert_allclose(frames, want, rtol=3e-16, atol=0)


def test_polynomial_exp_is_within_an_ulp_of_libm():
    rng = np.random.default_rng(0)
    x = np.concatenate([-rng.random(20000) * 708, -rng.random(2000) * 1e-6, [0.0, -708.0, -1e-300]])
    frames = np.stack([x, np.zeros_like(x)], axis=1)
    kernels.scale_frames(frames, np.empty(x.shape[0]))
    np.testing.assert_allclose(frames[:, 0], np.exp(x), rtol=4.5e-16, atol=0)


def moment_columns(X, squares):
    """x_1 .. x_D, 1, then x_d^2 or x_d x_e for e <= d (the columns forward_backward_moments sums)."""
    products = (
        X**2 if squares else np.stack([X[:, d] * X[:, e] for d, e in zip(*np.tril_indices(X.shape[1]), strict=True)], 1)
    )
    return np.hstack([X, np.ones((X.shape[0], 1)), products])


@pytest.mark.parametrize("squares", [True, False])
@pytest.mark.parametrize("n_states", [1, 3, 10])
@pytest.mark.parametrize("n_features", [1, 2, 5])
def test_forward_backward_moments_are_the_posteriors_moments(n_states, n_features, squares):
    rng = np.random.default_rng(10 * n_states + n_features)
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng))
    frameprob = frame_probabilities(rng, offsets[-1], n_states)
    X = rng.normal(size=(offsets[-1], n_features))
    _, posteriors, want_log_likelihoods, want_start, want_trans = run_forward_backward(
        startprob, transmat, frameprob, offsets
    )
    columns = moment_columns(X, squares)
    log_likelihoods = np.empty(offsets.shape[0] - 1)
    start_counts = np.zeros(n_states)
    trans_counts = np.zeros((n_states, n_states))
    moments = np.ones((n_states, columns.shape[1]))  # added to
    failed = kernels.forward_backward_moments(
        startprob, transmat, frameprob, X, offsets, log_likelihoods, start_counts, trans_counts, moments
    )
    assert failed == (-1, -1)
    np.testing.assert_array_equal(log_likelihoods, want_log_likelihoods)
    np.testing.assert_allclose(start_counts, want_start, rtol=1e-14)
    np.testing.assert_allclose(trans_counts, want_trans, rtol=1e-14)
    np.testing.assert_allclose(moments, 1 + posteriors.T @ columns, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
@pytest.mark.parametrize("n_states", [1, 3, 10])
def test_gaussian_forward_backward_moments_compute_gaussian_frames_in_the_lanes(n_states, covariance_type):
    """The densities computed in the lanes are gaussian_frames' bits: the same counts as from its frames."""
    from hmm.core.covariance import gaussian_components
    from hmm.core.kernels import emissions

    rng = np.random.default_rng(n_states)
    n_features = 3
    startprob, transmat = model(rng, n_states)
    offsets = offsets_of(ragged_lengths(rng))
    X = rng.normal(scale=3, size=(offsets[-1], n_features))
    means = rng.normal(scale=3, size=(n_states, n_features))
    if covariance_type == "diag":
        covars = rng.uniform(0.5, 2, size=(n_states, n_features))
    else:
        factors = rng.normal(size=(n_states, n_features, n_features))
        covars = factors @ np.swapaxes(factors, 1, 2) + np.eye(n_features)
    components = gaussian_components(means, covars, covariance_type)
    frameprob, log_scale = np.empty((offsets[-1], n_states)), np.empty(offsets[-1])
    emissions.gaussian_frames(X, *components, frameprob, log_scale)
    outputs = []
    for kernel, emission in [
        (kernels.forward_backward_moments, (frameprob,)),
        (kernels.gaussian_forward_backward_moments, components),
    ]:
        log_likelihoods = np.empty(offsets.shape[0] - 1)
        counts = np.zeros(n_states), np.zeros((n_states, n_states)), np.zeros((n_states, 2 * n_features + 1))
        failed = kernel(startprob, transmat, *emission, X, offsets, log_likelihoods, *counts)
        assert failed == (-1, -1)
        outputs.append((log_likelihoods, *counts))
    (want_log_likelihoods, *want), (log_likelihoods, *got) = outputs
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    # the frames' scales are in the log-likelihoods
    np.testing.assert_allclose(
        log_likelihoods, want_log_likelihoods + np.add.reduceat(log_scale, offsets[:-1]), rtol=1e-13
    )


def test_log_scales_are_added_frame_by_frame_as_the_lane_kernels_add_them():
    """Sequence by sequence from 0 in frame order (np.add.reduceat sums pairwise): the forward pass
    alone then gives the E-step's log-likelihoods bit for bit."""
    from hmm.core.kernels import emissions

    rng = np.random.default_rng(3)
    offsets = offsets_of(ragged_lengths(rng))
    log_scale = rng.normal(scale=100, size=offsets[-1])
    log_likelihoods = rng.normal(size=offsets.shape[0] - 1)
    want = log_likelihoods.copy()
    for s in range(offsets.shape[0] - 1):
        total = 0.0
        for value in log_scale[offsets[s] : offsets[s + 1]]:
            total += value
        want[s] += total
    emissions.add_log_scales(log_scale, offsets, log_likelihoods)
    np.testing.assert_array_equal(log_likelihoods, want)

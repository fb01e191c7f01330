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

Layout. Sequences are sorted by length and processed ``LANES`` (8) at a time
in lock-step, one sequence per lane, so that every arithmetic operation is a
SIMD operation across lanes whatever the number of states (an HMM with 3 or
10 states has no SIMD-friendly dimension of its own). A block's work arrays
are ``[frame][state][lane]``: the 8 lanes of one (frame, state) are one
64-byte vector. Numba has no SIMD type and leaves LLVM's SLP vectoriser off
(``NUMBA_SLP_VECTORIZE=0``; it is fragile on loop-carried values anyway), so
plain loops over lanes compile to scalar code; the lane vector is therefore an
explicit LLVM ``<8 x double>`` (:class:`LaneVector`) with a handful of
intrinsics (load, store, fused multiply-add, ...), and accumulators stay in
registers. Matrix-vector products run four output rows at a time: four
independent FMA chains hide the FMA latency and every loaded vector feeds four
multiply-adds.

Per block of lanes: (1) the block's emission probabilities are transposed
into ``frames[t, state, lane]`` (8 x 4 tiles, in registers; lanes past the end
of their sequence get probability 1); (2) the forward pass fills the
normalised ``alpha`` and the normalisers ``c_t``; (3) the backward pass turns
``frames[t + 1]`` into ``w_t = b_{t+1} beta_{t+1} / c_{t+1}`` and writes the
posteriors (transposed back the same way); (4) the expected transitions
``sum_t alpha_t[i] transmat[i, j] w_t[j]`` are one small matrix product over
(frame, lane) from the two buffers, with register tiles, rather than a
rank-1 update in memory per frame. Working memory is a few arrays of
``longest sequence x n_states x LANES`` whatever the size of the batch.

:func:`categorical_forward_backward` is the same computation for categorical
emissions reading the ``n_symbols x n_states`` table directly and adding each
frame's posteriors to per-symbol counts: no ``n_frames x n_states`` array is
written at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.extending import intrinsic, register_model

# A forward-pass normaliser below this means the frame is (numerically)
# impossible under every state the chain can be in: the same threshold as
# hmmlearn's scaling implementation.
UNDERFLOW = 1e-300
# Scaling factors are multiplied together and only turned into a log when the
# product gets small: one ``log`` per ~100 frames instead of one per frame.
_FOLD_BELOW = 1e-100

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


def _intrinsic(typing: Callable[..., Any]) -> Any:
    """``numba.extending.intrinsic``; typed ``Any`` for mypy, which would
    otherwise insist on the typing context argument at every call site."""
    return intrinsic(typing)


_inline = nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")

# Sequences per block: one <8 x double> is two AVX2 registers (one AVX-512
# register). Lanes past the end of their sequence, and the unused lanes of the
# last block, compute on harmless values and are never read back.
LANES = 8


# --------------------------------------------------------------- lane vectors


class LaneVector(types.Type):
    """One float64 per lane, as an LLVM vector value (lives in registers)."""

    def __init__(self) -> None:
        super().__init__(name=f"LaneVector({LANES})")


lane_vector = LaneVector()
_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


@register_model(LaneVector)
class _LaneVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _is_buffer(a):
    """A 3-D float64 work array ``[*, *, lane]`` (always C-contiguous here)."""
    return isinstance(a, types.Array) and a.ndim == 3 and a.dtype == types.float64 and a.layout == "C"


def _vector_pointer(context, builder, array_type, array, t, k):
    """Address of ``array[t, k, 0]`` as a pointer to a lane vector."""
    ary = context.make_array(array_type)(context, builder, array)
    zero = context.get_constant(types.intp, 0)
    pointer = cgutils.get_item_pointer(context, builder, array_type, ary, [t, k, zero])
    return builder.bitcast(pointer, _VECTOR.as_pointer())


def _broadcast(builder, x):
    undefined = ir.Constant(_VECTOR, ir.Undefined)
    v = builder.insert_element(undefined, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undefined, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@_intrinsic
def _load(typingctx, a, t, k):
    """``a[t, k, :]`` as a lane vector."""
    if not _is_buffer(a):
        return None

    def codegen(context, builder, sig, args):
        pointer = _vector_pointer(context, builder, sig.args[0], args[0], args[1], args[2])
        return builder.load(pointer, align=8)

    return lane_vector(a, types.intp, types.intp), codegen


@_intrinsic
def _store(typingctx, a, t, k, v):
    """``a[t, k, :] = v``."""
    if not _is_buffer(a):
        return None

    def codegen(context, builder, sig, args):
        pointer = _vector_pointer(context, builder, sig.args[0], args[0], args[1], args[2])
        builder.store(args[3], pointer, align=8)

    return types.void(a, types.intp, types.intp, lane_vector), codegen


@_intrinsic
def _splat(typingctx, s):
    """``s`` in every lane."""

    def codegen(context, builder, sig, args):
        return _broadcast(builder, args[0])

    return lane_vector(types.float64), codegen


def _fused(builder, x, y, acc):
    # llvm.fmuladd: one FMA instruction where the CPU has them (AVX2 and
    # later), a multiply and an add elsewhere (llvm.fma would call libm).
    fmuladd = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), f"llvm.fmuladd.v{LANES}f64"
    )
    return builder.call(fmuladd, [x, y, acc])


@_intrinsic
def _fma(typingctx, acc, s, x):
    """``acc + s * x`` for a scalar ``s`` (one fused multiply-add)."""

    def codegen(context, builder, sig, args):
        return _fused(builder, _broadcast(builder, args[1]), args[2], args[0])

    return lane_vector(lane_vector, types.float64, lane_vector), codegen


@_intrinsic
def _fmav(typingctx, acc, x, y):
    """``acc + x * y`` lane by lane (one fused multiply-add)."""

    def codegen(context, builder, sig, args):
        return _fused(builder, args[1], args[2], args[0])

    return lane_vector(lane_vector, lane_vector, lane_vector), codegen


@_intrinsic
def _mul(typingctx, x, y):
    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])

    return lane_vector(lane_vector, lane_vector), codegen


@_intrinsic
def _add(typingctx, x, y):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return lane_vector(lane_vector, lane_vector), codegen


@_intrinsic
def _reciprocal(typingctx, x):
    """``1 / x`` lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fdiv(_broadcast(builder, ir.Constant(ir.DoubleType(), 1.0)), args[0])

    return lane_vector(lane_vector), codegen


@_intrinsic
def _lane_sum(typingctx, x):
    """Sum of the lanes (pairwise)."""

    def codegen(context, builder, sig, args):
        values = [builder.extract_element(args[0], ir.Constant(ir.IntType(32), i)) for i in range(LANES)]
        while len(values) > 1:
            values = [builder.fadd(values[i], values[i + 1]) for i in range(0, len(values), 2)]
        return values[0]

    return types.float64(lane_vector), codegen


@_intrinsic
def _past_end(typingctx, length, t):
    """1.0 in the lanes whose sequence has no frame ``t`` (``length <= t``), else 0.0."""
    if not (
        isinstance(length, types.Array) and length.ndim == 1 and length.dtype == types.int64 and length.layout == "C"
    ):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        lanes = ir.VectorType(ir.IntType(64), LANES)
        values = builder.load(builder.bitcast(ary.data, lanes.as_pointer()), align=8)
        t = context.cast(builder, args[1], sig.args[1], types.int64)
        past = builder.icmp_signed("<=", values, _broadcast_int(builder, t, lanes))
        return builder.uitofp(past, _VECTOR)

    return lane_vector(length, types.intp), codegen


def _broadcast_int(builder, x, vector_type):
    undefined = ir.Constant(vector_type, ir.Undefined)
    v = builder.insert_element(undefined, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undefined, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


def _i32(values):
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), list(values))


def _lane_rows(context, builder, sig, args):
    """Per lane: (address of ``array[rows[lane], 0]``, byte stride along the row).

    Lanes with ``rows[lane] < 0`` get ``fallback`` (a C-contiguous vector).
    ``args`` starts with (array, rows, fallback).
    """
    array_type, rows_type, fallback_type = sig.args[:3]
    array = context.make_array(array_type)(context, builder, args[0])
    rows = context.make_array(rows_type)(context, builder, args[1])
    fallback = context.make_array(fallback_type)(context, builder, args[2])
    intp = context.get_value_type(types.intp)
    zero = ir.Constant(intp, 0)
    stride = cgutils.unpack_tuple(builder, array.strides, 2)[1]
    bytes_per_double = ir.Constant(intp, 8)
    lanes = []
    for lane in range(LANES):
        row = builder.load(cgutils.get_item_pointer(context, builder, rows_type, rows, [ir.Constant(intp, lane)]))
        valid = builder.icmp_signed(">=", row, zero)
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, array, [builder.select(valid, row, zero), zero]
        )
        base = builder.select(valid, pointer, fallback.data)
        lanes.append(
            (builder.bitcast(base, ir.IntType(8).as_pointer()), builder.select(valid, stride, bytes_per_double))
        )
    return lanes


def _element(builder, lane, column):
    """Address of element ``column`` of a lane's row (from :func:`_lane_rows`)."""
    base, stride = lane
    return builder.bitcast(builder.gep(base, [builder.mul(column, stride)]), ir.DoubleType().as_pointer())


def _by_columns(builder, n_columns, body):
    """``body(column, width)`` over ``range(n_columns)`` in pieces of 4, then 2, then 1."""
    intp = n_columns.type
    n_quads = builder.and_(n_columns, ir.Constant(intp, -4))
    with cgutils.for_range_slice(builder, ir.Constant(intp, 0), n_quads, ir.Constant(intp, 4)) as (column, _):
        body(column, 4)
    has_pair = builder.icmp_signed("!=", builder.and_(n_columns, ir.Constant(intp, 2)), ir.Constant(intp, 0))
    with builder.if_then(has_pair):
        body(n_quads, 2)
    has_one = builder.icmp_signed("!=", builder.and_(n_columns, ir.Constant(intp, 1)), ir.Constant(intp, 0))
    with builder.if_then(has_one):
        body(builder.sub(n_columns, ir.Constant(intp, 1)), 1)


def _contiguous_rows(array_type):
    return array_type.layout == "C"


def _is_rows(array, rows, fallback):
    return (
        isinstance(array, types.Array)
        and array.ndim == 2
        and array.dtype == types.float64
        and isinstance(rows, types.Array)
        and rows.ndim == 1
        and rows.dtype == types.int64
        and isinstance(fallback, types.Array)
        and fallback.ndim == 1
        and fallback.dtype == types.float64
        and fallback.layout == "C"
    )


def _concatenate(builder, vectors):
    """One vector of the given vectors' elements in order (a power-of-two count of equal vectors)."""
    while len(vectors) > 1:
        size = vectors[0].type.count
        vectors = [
            builder.shuffle_vector(vectors[i], vectors[i + 1], _i32(range(2 * size))) for i in range(0, len(vectors), 2)
        ]
    return vectors[0]


@_intrinsic
def _gather_frame(typingctx, array, rows, ones, frames, t):
    """``frames[t, j, lane] = array[rows[lane], j]`` for every column j.

    ``ones[j]`` where ``rows[lane] < 0``. Pieces of 4 columns of a lane's row
    are read as one vector and the 8 x 4 block is transposed in registers.
    """
    if not (_is_rows(array, rows, ones) and _is_buffer(frames)):
        return None

    def codegen(context, builder, sig, args):
        lanes = _lane_rows(context, builder, sig, args)
        contiguous = _contiguous_rows(sig.args[0])
        frames_array = context.make_array(sig.args[3])(context, builder, args[3])
        n_columns = cgutils.unpack_tuple(builder, frames_array.shape, 3)[1]

        def body(column, width):
            part = ir.VectorType(ir.DoubleType(), width)
            pieces = []
            for lane in lanes:
                if contiguous:
                    pointer = builder.bitcast(_element(builder, lane, column), part.as_pointer())
                    pieces.append(builder.load(pointer, align=8))
                else:
                    piece = ir.Constant(part, ir.Undefined)
                    for k in range(width):
                        value = builder.load(_element(builder, lane, builder.add(column, ir.Constant(column.type, k))))
                        piece = builder.insert_element(piece, value, ir.Constant(ir.IntType(32), k))
                    pieces.append(piece)
            # concatenate the lanes' pieces, then take every width-th element
            block = _concatenate(builder, pieces)
            for k in range(width):
                v = builder.shuffle_vector(
                    block, ir.Constant(block.type, ir.Undefined), _i32(range(k, LANES * width, width))
                )
                index = builder.add(column, ir.Constant(column.type, k))
                builder.store(v, _vector_pointer(context, builder, sig.args[3], args[3], args[4], index), align=8)

        _by_columns(builder, n_columns, body)
        return context.get_dummy_value()

    return types.void(array, rows, ones, frames, types.intp), codegen


def _make_scatter(accumulate):
    def scatter(typingctx, array, rows, sink, source, t, factor):
        if not (_is_rows(array, rows, sink) and _is_buffer(source)):
            return None

        def codegen(context, builder, sig, args):
            lanes = _lane_rows(context, builder, sig, args)
            contiguous = _contiguous_rows(sig.args[0])
            source_array = context.make_array(sig.args[3])(context, builder, args[3])
            n_columns = cgutils.unpack_tuple(builder, source_array.shape, 3)[1]

            def body(column, width):
                part = ir.VectorType(ir.DoubleType(), width)
                vectors = []
                for k in range(width):
                    index = builder.add(column, ir.Constant(column.type, k))
                    pointer = _vector_pointer(context, builder, sig.args[3], args[3], args[4], index)
                    vectors.append(builder.fmul(builder.load(pointer, align=8), args[5]))
                # the width x 8 block transposed by shuffles: lane L's piece is (vectors[k][L] for k)
                block = _concatenate(builder, vectors)
                undefined = ir.Constant(block.type, ir.Undefined)
                # lane by lane, in order: two lanes may write the same row
                for lane_number, lane in enumerate(lanes):
                    piece = builder.shuffle_vector(block, undefined, _i32(range(lane_number, LANES * width, LANES)))
                    if contiguous:
                        pointer = builder.bitcast(_element(builder, lane, column), part.as_pointer())
                        if accumulate:
                            piece = builder.fadd(builder.load(pointer, align=8), piece)
                        builder.store(piece, pointer, align=8)
                    else:
                        for k in range(width):
                            value = builder.extract_element(piece, ir.Constant(ir.IntType(32), k))
                            pointer = _element(builder, lane, builder.add(column, ir.Constant(column.type, k)))
                            builder.store(builder.fadd(builder.load(pointer), value) if accumulate else value, pointer)

            _by_columns(builder, n_columns, body)
            return context.get_dummy_value()

        return types.void(array, rows, sink, source, types.intp, lane_vector), codegen

    return _intrinsic(scatter)


# array[rows[lane], j] (=, +=) source[t, j, lane] * factor[lane] for every
# column j; into ``sink`` where rows[lane] < 0. The 8 x 4 blocks are
# transposed in registers and a lane's 4 values are written as one vector.
_scatter_frame = _make_scatter(accumulate=False)
_scatter_add_frame = _make_scatter(accumulate=True)


@_inline
def _rows4(m, r, x, t):
    """Lane vectors ``sum over c of m[r + k, c] * x[t, c]`` for k = 0..3.

    Four rows at once: each ``x[t, c]`` is loaded once for four
    multiply-adds, and four independent accumulation chains hide the latency
    of the FMA unit (one row at a time waits on it).
    """
    a0 = _splat(0.0)
    a1 = _splat(0.0)
    a2 = _splat(0.0)
    a3 = _splat(0.0)
    for c in range(m.shape[1]):
        v = _load(x, t, c)
        a0 = _fma(a0, m[r, c], v)
        a1 = _fma(a1, m[r + 1, c], v)
        a2 = _fma(a2, m[r + 2, c], v)
        a3 = _fma(a3, m[r + 3, c], v)
    return a0, a1, a2, a3


@_inline
def _rows2(m, r, x, t):
    """Lane vectors ``sum over c of m[r + k, c] * x[t, c]`` for k = 0, 1 (as :func:`_rows4`)."""
    a0 = _splat(0.0)
    a1 = _splat(0.0)
    for c in range(m.shape[1]):
        v = _load(x, t, c)
        a0 = _fma(a0, m[r, c], v)
        a1 = _fma(a1, m[r + 1, c], v)
    return a0, a1


@_inline
def _row(m, r, x, t):
    """Lane vector ``sum over c of m[r, c] * x[t, c]``."""
    acc = _splat(0.0)
    for c in range(m.shape[1]):
        acc = _fma(acc, m[r, c], _load(x, t, c))
    return acc


# -------------------------------------------------------------------- blocks


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
def _frame_rows(first, length, t, symbols, rows):
    """``rows[lane]``: the row of frame ``t`` of the lane's sequence, or -1 past its end.

    With ``symbols`` (not empty): the frame's symbol instead of its row.
    """
    by_symbol = symbols.shape[0] > 0
    for lane in range(LANES):
        if t < length[lane]:
            rows[lane] = symbols[first[lane] + t] if by_symbol else first[lane] + t
        else:
            rows[lane] = -1


@_jit
def _load_frames(frameprob, symbols, first, length, longest, frames, rows, ones):
    """``frames[t, state, lane]``: the block's emission probabilities, lane-minor.

    From ``frameprob[row]``, or ``frameprob[symbol]`` with ``symbols``.
    Frames past the end of a lane's sequence get probability 1 (from ``ones``).
    """
    for t in range(longest):
        _frame_rows(first, length, t, symbols, rows)
        _gather_frame(frameprob, rows, ones, frames, t)


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
    for t in range(longest):
        total = _splat(0.0)
        if t == 0:
            for j in range(n_states):
                total = _emit_alpha(alpha, frames, 0, j, _splat(startprob[j]), total)
        else:
            # alpha_t[j] = frame_t[j] * sum_i alpha_{t-1}[i] transmat[i, j]
            in_fours = n_states - n_states % 4
            for j in range(0, in_fours, 4):
                a0, a1, a2, a3 = _rows4(into, j, alpha, t - 1)
                total = _emit_alpha(alpha, frames, t, j, a0, total)
                total = _emit_alpha(alpha, frames, t, j + 1, a1, total)
                total = _emit_alpha(alpha, frames, t, j + 2, a2, total)
                total = _emit_alpha(alpha, frames, t, j + 3, a3, total)
            if n_states - in_fours >= 2:
                a0, a1 = _rows2(into, in_fours, alpha, t - 1)
                total = _emit_alpha(alpha, frames, t, in_fours, a0, total)
                total = _emit_alpha(alpha, frames, t, in_fours + 1, a1, total)
            if n_states % 2:
                j = n_states - 1
                total = _emit_alpha(alpha, frames, t, j, _row(into, j, alpha, t - 1), total)
        _store(scale, 0, t, total)
        inverse = _reciprocal(total)
        _store(scale, 1, t, inverse)
        for j in range(n_states):
            _store(alpha, t, j, _mul(_load(alpha, t, j), inverse))
    # Log-likelihoods and underflow lane by lane, outside the SIMD loop above
    # (a lane whose frame underflowed only fills itself with inf/NaN there).
    failed_lane = -1
    failed_t = longest
    for lane in range(LANES):
        product = 1.0
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
                product *= c
                if product < _FOLD_BELOW:
                    total_log += np.log(product)
                    product = 1.0
        log_likelihood[lane] = total_log + np.log(product)
        # past the end of the sequence: no contribution to the counts
        for t in range(length[lane], longest):
            scale[1, t, lane] = 0.0
    if failed_lane >= 0:
        return failed_lane, failed_t
    return -1, -1


@_jit
def _buffers(n_states, offsets):
    """Sort order of the sequences by length, and the per-block work arrays."""
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(lengths, kind="mergesort")
    longest = lengths.max() if lengths.shape[0] else 0
    alpha = np.empty((longest, n_states, LANES))
    frames = np.empty((longest, n_states, LANES))
    # scale[0, t, lane]: normaliser c_t; scale[1, t, lane]: 1 / c_t
    scale = np.empty((2, longest, LANES))
    return order, alpha, frames, scale


@_jit
def forward_log_likelihoods(startprob, transmat, frameprob, offsets, log_likelihoods):
    """Per-sequence log-likelihoods of a batch (the forward pass alone).

    Returns ``(-1, -1)`` or the ``(sequence, position)`` that underflowed.
    """
    n_states = startprob.shape[0]
    n_sequences = offsets.shape[0] - 1
    order, alpha, frames, scale = _buffers(n_states, offsets)
    into = np.ascontiguousarray(transmat.T)
    first = np.empty(LANES, dtype=np.int64)
    length = np.empty(LANES, dtype=np.int64)
    rows = np.empty(LANES, dtype=np.int64)
    ones = np.ones(n_states)
    no_symbols = np.empty(0, dtype=np.int64)
    lane_log_likelihood = np.empty(LANES)
    for block_start in range(0, n_sequences, LANES):
        longest = _load_block(order, block_start, offsets, first, length)
        _load_frames(frameprob, no_symbols, first, length, longest, frames, rows, ones)
        lane, t = _forward_block(startprob, into, frames, length, longest, alpha, scale, lane_log_likelihood)
        if lane >= 0:
            return order[block_start + lane], t
        for lane in range(min(LANES, n_sequences - block_start)):
            log_likelihoods[order[block_start + lane]] = lane_log_likelihood[lane]
    return -1, -1


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


@_intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bits are the int64 ``bits`` (a bit cast)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


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


@_jit
def forward_filter(startprob, transmat, frameprob, offsets, filtered):
    """Causal (filtered) state probabilities ``P(state_t | x_1 .. x_t)`` of every sequence of a batch.

    The scaled forward pass, one sequence after another: ``filtered[t]`` is
    ``alpha_t`` normalised to sum 1, which only looks at frames up to ``t``
    (posteriors also look ahead). ``frameprob`` may be pre-scaled by any
    positive per-frame constant: normalising cancels it. Returns ``(-1, -1)``
    or the ``(sequence, position)`` whose frame has probability below
    :data:`UNDERFLOW` under every reachable state, as
    :func:`forward_log_likelihoods` does. Kept scalar and apart from the lane
    kernels above: its output is a frames x states array anyway, so memory
    traffic, not arithmetic, bounds it.
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

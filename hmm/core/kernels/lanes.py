"""SIMD lane plumbing of the kernels: lane vectors, their intrinsics and the block layout.

Sequences are processed :data:`LANES` at a time, one per lane. A lane vector
(:class:`LaneVector`) is an LLVM ``<LANES x double>`` living in registers; the
intrinsics here load and store them from work arrays ``[frame][state][lane]``,
multiply-add them, and transpose between the frames x states layout of the
callers' arrays and the lane layout (LANES x 4 tiles in registers). The
algorithms (:mod:`.forward`, :mod:`.forward_backward`, :mod:`.emissions`)
are written in terms of these and know nothing of LLVM.

Numba's on-disk cache keys a compiled function on its own source file only, so
the algorithms compiled against an older version of this module would be reused:
:mod:`.cache` drops the package's cache files whenever any kernel source changes
(with ``$NUMBA_CACHE_DIR`` set, clear that folder yourself after editing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.datamodel import models
from numba.extending import intrinsic, register_model

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


def _intrinsic(typing: Callable[..., Any]) -> Any:
    """``numba.extending.intrinsic``; typed ``Any`` for mypy, which would
    otherwise insist on the typing context argument at every call site."""
    return intrinsic(typing)


_inline = nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")


def _host_lanes() -> int:
    """Sequences per block: a lane vector is two of the CPU's widest vector registers.

    The forward and backward recurrences are latency-bound chains (every frame
    waits for the previous one), so each operation should carry as much
    independent work as the CPU can overlap: two registers' worth. On AVX-512
    that is 16 doubles (two zmm registers; 8 lanes left the FMA units idle
    more than half the time); on AVX2 it is 8 (two ymm registers; 16 would spill
    the kernels' accumulators out of the 16 ymm registers). The CPU is the one
    numba compiles for (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` when set,
    else the host): numba keys its cache on that CPU too, so a cache compiled
    for one lane count is never loaded for the other.
    """
    # numba.core.config sets its options at import time (mypy does not see them)
    cpu_name, cpu_features = getattr(config, "CPU_NAME", None), getattr(config, "CPU_FEATURES", None)
    if cpu_features is not None:
        features = cpu_features
    elif cpu_name in (None, "host"):
        features = llvm.get_host_cpu_features().flatten()
    else:
        return 8  # a named CPU without features (e.g. "generic" for a portable cache)
    return 16 if "+avx512f" in features.split(",") else 8


# Lanes past the end of their sequence, and the unused lanes of the last block,
# compute on harmless values and are never read back.
LANES = _host_lanes()

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


# Eight of a lane vector's lanes: one zmm register. Tiles of the frame products that
# need more accumulators than 16-lane vectors leave registers for work on 8 lanes at a time.


class HalfVector(types.Type):
    """Lanes 8 half .. 8 half + 7 of a 16-lane vector (:func:`_load_half`), as an LLVM ``<8 x double>``."""

    def __init__(self) -> None:
        super().__init__(name="HalfVector(8)")


half_vector = HalfVector()
_HALF = ir.VectorType(ir.DoubleType(), 8)


@register_model(HalfVector)
class _HalfVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _HALF)


def _half_address(context, builder, array_type, array, t, k, half):
    """Address of ``array[t, k, 8 half]`` as a pointer to 8 doubles (``half`` an LLVM value)."""
    pointer = builder.bitcast(_vector_pointer(context, builder, array_type, array, t, k), _HALF.as_pointer())
    return builder.gep(pointer, [half])


@_intrinsic
def _load_half(typingctx, a, t, k, half):
    """``a[t, k, 8 half : 8 half + 8]``."""
    if not _is_buffer(a):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_half_address(context, builder, sig.args[0], args[0], args[1], args[2], args[3]), align=8)

    return half_vector(a, types.intp, types.intp, types.intp), codegen


@_intrinsic
def _store_half(typingctx, a, t, k, half, v):
    """``a[t, k, 8 half : 8 half + 8] = v``."""
    if not _is_buffer(a):
        return None

    def codegen(context, builder, sig, args):
        pointer = _half_address(context, builder, sig.args[0], args[0], args[1], args[2], args[3])
        builder.store(args[4], pointer, align=8)

    return types.void(a, types.intp, types.intp, types.intp, half_vector), codegen


@_intrinsic
def _fma_half(typingctx, acc, x, y):
    """``acc + x * y`` on eight lanes (one fused multiply-add)."""

    def codegen(context, builder, sig, args):
        fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_HALF, [_HALF] * 3), "llvm.fmuladd.v8f64"
        )
        return builder.call(fmuladd, [args[1], args[2], args[0]])

    return half_vector(half_vector, half_vector, half_vector), codegen


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
def _sub(typingctx, x, y):
    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1])

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


# exp(x) for x <= 0 as polynomial arithmetic (Cephes' rational approximation
# after range reduction, within 1 ulp of libm), so that it is SIMD code: the
# compiler vectorises a loop of emissions._exp_nonpositive, and _exp_lanes is
# the same on lane vectors. libm's exp is a scalar call of ~10 ns, and the
# frames of a continuous model need n_states of them each.
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


def _vector_call(builder, name, values):
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * len(values)), f"llvm.{name}.v{LANES}f64"
    )
    return builder.call(function, values)


@_intrinsic
def _max(typingctx, x, y):
    """The larger of ``x`` and ``y`` lane by lane."""

    def codegen(context, builder, sig, args):
        return _vector_call(builder, "maxnum", [args[0], args[1]])

    return lane_vector(lane_vector, lane_vector), codegen


@_intrinsic
def _exp_lanes(typingctx, x):
    """``exp(x)`` lane by lane for ``x <= 0``: the arithmetic of ``emissions._exp_nonpositive``, operation
    for operation (separate multiplies and adds, as numba compiles that one), so both give the same bits."""

    def codegen(context, builder, sig, args):
        def c(value):
            return _broadcast(builder, ir.Constant(ir.DoubleType(), value))

        x = args[0]
        clamped = _vector_call(builder, "maxnum", [x, c(_EXP_FLOOR)])
        n = _vector_call(builder, "floor", [builder.fadd(builder.fmul(c(_LOG2E), clamped), c(0.5))])
        r = builder.fsub(builder.fsub(clamped, builder.fmul(n, c(_LN2_HI))), builder.fmul(n, c(_LN2_LO)))
        rr = builder.fmul(r, r)
        p = builder.fmul(
            r, builder.fadd(builder.fmul(builder.fadd(builder.fmul(c(_EXP_P0), rr), c(_EXP_P1)), rr), c(_EXP_P2))
        )
        q = builder.fadd(c(_EXP_Q2), builder.fmul(builder.fadd(builder.fmul(c(_EXP_Q0), rr), c(_EXP_Q1)), rr))
        q = builder.fadd(builder.fmul(q, rr), c(_EXP_Q3))
        value = builder.fadd(c(1.0), builder.fdiv(builder.fmul(c(2.0), p), builder.fsub(q, p)))
        integers = ir.VectorType(ir.IntType(64), LANES)
        exponent = builder.add(
            builder.fptosi(n, integers), _broadcast_int(builder, ir.Constant(ir.IntType(64), 1023), integers)
        )
        power = builder.bitcast(
            builder.shl(exponent, _broadcast_int(builder, ir.Constant(ir.IntType(64), 52), integers)), _VECTOR
        )
        scaled = builder.fmul(value, power)
        return builder.select(builder.fcmp_ordered(">=", x, c(_EXP_FLOOR)), scaled, c(0.0))

    return lane_vector(lane_vector), codegen


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


@_intrinsic
def _where_present(typingctx, length, t, x, fill):
    """``x`` in the lanes whose sequence has a frame ``t`` (``t < length``), ``fill`` in the others."""
    if not (
        isinstance(length, types.Array) and length.ndim == 1 and length.dtype == types.int64 and length.layout == "C"
    ):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        lanes = ir.VectorType(ir.IntType(64), LANES)
        values = builder.load(builder.bitcast(ary.data, lanes.as_pointer()), align=8)
        t = context.cast(builder, args[1], sig.args[1], types.int64)
        present = builder.icmp_signed(">", values, _broadcast_int(builder, t, lanes))
        return builder.select(present, args[2], _broadcast(builder, args[3]))

    return lane_vector(length, types.intp, lane_vector, types.float64), codegen


@_intrinsic
def _any_below(typingctx, x, threshold):
    """Whether a lane of ``x`` is below ``threshold`` or NaN (one vector compare and a mask test)."""

    def codegen(context, builder, sig, args):
        below = builder.fcmp_unordered("<", args[0], _broadcast(builder, args[1]))
        mask_type = ir.VectorType(ir.IntType(1), LANES)
        reduce = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(1), [mask_type]), f"llvm.vector.reduce.or.v{LANES}i1"
        )
        return builder.call(reduce, [below])

    return types.boolean(lane_vector, types.float64), codegen


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
    """``frames[t, j, lane] = array[rows[lane], j]`` for every column j of ``array``.

    ``ones[j]`` where ``rows[lane] < 0``. Pieces of 4 columns of a lane's row
    are read as one vector and the LANES x 4 block is transposed in registers.
    ``frames`` may have more columns than ``array``; those are left alone.
    """
    if not (_is_rows(array, rows, ones) and _is_buffer(frames)):
        return None

    def codegen(context, builder, sig, args):
        lanes = _lane_rows(context, builder, sig, args)
        contiguous = _contiguous_rows(sig.args[0])
        source = context.make_array(sig.args[0])(context, builder, args[0])
        n_columns = cgutils.unpack_tuple(builder, source.shape, 2)[1]

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


# ------------------------------------------------- symbol tables (categorical)
#
# A categorical frame's emission probabilities are a row of the small
# symbols x states table, a different row in every lane. The table is padded
# to a multiple of 8 columns (and a last row for lanes past their sequence's
# end), so a lane's row is read as whole 8-wide vectors and each 8 lanes x 8
# states tile is transposed in registers (24 two-input shuffles); the
# posteriors go back into a padded per-symbol table the same way. Loading
# 4-wide pieces and gathering them into 16-lane vectors took 1.1 and 1.4 ms
# of a 7 ms E-step (K=10, F=20, 4000 x 100); hardware gathers were slower
# still on this CPU. With up to 31 symbols and AVX-512 the frames come from a
# states x 32 table instead, each state's row in registers and 8 lanes' entries
# picked by permutes (:func:`_permute_symbols`): no padded states moved.

_TILE = 8
_EIGHT = ir.VectorType(ir.DoubleType(), _TILE)


def _transpose8(builder, vectors):
    """The 8 x 8 transpose of eight 8-wide vectors (rows in, columns out)."""
    t = []
    for i in range(0, _TILE, 2):
        t.append(builder.shuffle_vector(vectors[i], vectors[i + 1], _i32([0, 8, 2, 10, 4, 12, 6, 14])))
        t.append(builder.shuffle_vector(vectors[i], vectors[i + 1], _i32([1, 9, 3, 11, 5, 13, 7, 15])))
    # t[2g], t[2g + 1]: rows 2g, 2g + 1 interleaved (even, odd columns)
    low, high = _i32([0, 1, 8, 9, 4, 5, 12, 13]), _i32([2, 3, 10, 11, 6, 7, 14, 15])
    quads = {}  # (group of 4 rows, column) -> that column of the group's rows in elements 0-3, column + 4 in 4-7
    for group in range(2):
        even, odd = t[4 * group], t[4 * group + 1]
        even2, odd2 = t[4 * group + 2], t[4 * group + 3]
        quads[group, 0] = builder.shuffle_vector(even, even2, low)
        quads[group, 2] = builder.shuffle_vector(even, even2, high)
        quads[group, 1] = builder.shuffle_vector(odd, odd2, low)
        quads[group, 3] = builder.shuffle_vector(odd, odd2, high)
    columns = [None] * _TILE
    for column in range(4):
        first, second = quads[0, column], quads[1, column]
        columns[column] = builder.shuffle_vector(first, second, _i32([0, 1, 2, 3, 8, 9, 10, 11]))
        columns[column + 4] = builder.shuffle_vector(first, second, _i32([4, 5, 6, 7, 12, 13, 14, 15]))
    return columns


def _transpose2(builder, vectors):
    """Two 8-wide vectors (states) as eight 2-wide pieces (lanes): piece L = (v0[L], v1[L])."""
    even = builder.shuffle_vector(vectors[0], vectors[1], _i32([0, 8, 2, 10, 4, 12, 6, 14]))
    odd = builder.shuffle_vector(vectors[0], vectors[1], _i32([1, 9, 3, 11, 5, 13, 7, 15]))
    undefined = ir.Constant(_EIGHT, ir.Undefined)
    pieces = []
    for lane in range(_TILE):
        source = even if lane % 2 == 0 else odd
        pieces.append(builder.shuffle_vector(source, undefined, _i32([lane - lane % 2, lane - lane % 2 + 1])))
    return pieces


def _transpose4(builder, vectors):
    """Four 8-wide vectors (states) as eight 4-wide pieces (lanes): piece L = (v0[L], .., v3[L])."""
    evens, odds = [], []
    for i in (0, 2):
        evens.append(builder.shuffle_vector(vectors[i], vectors[i + 1], _i32([0, 8, 2, 10, 4, 12, 6, 14])))
        odds.append(builder.shuffle_vector(vectors[i], vectors[i + 1], _i32([1, 9, 3, 11, 5, 13, 7, 15])))
    low, high = _i32([0, 1, 8, 9, 2, 3, 10, 11]), _i32([4, 5, 12, 13, 6, 7, 14, 15])
    # lanes (0, 2), (4, 6), (1, 3), (5, 7): each a pair of 4-wide pieces
    pairs = {
        0: builder.shuffle_vector(evens[0], evens[1], low),
        4: builder.shuffle_vector(evens[0], evens[1], high),
        1: builder.shuffle_vector(odds[0], odds[1], low),
        5: builder.shuffle_vector(odds[0], odds[1], high),
    }
    undefined = ir.Constant(_EIGHT, ir.Undefined)
    pieces = [None] * _TILE
    for lane, pair in pairs.items():
        pieces[lane] = builder.shuffle_vector(pair, undefined, _i32([0, 1, 2, 3]))
        pieces[lane + 2] = builder.shuffle_vector(pair, undefined, _i32([4, 5, 6, 7]))
    return pieces


_TRANSPOSES = {2: _transpose2, 4: _transpose4, _TILE: _transpose8}


def _is_table(table, rows):
    return (
        isinstance(table, types.Array)
        and table.ndim == 2
        and table.dtype == types.float64
        and table.layout == "C"
        and isinstance(rows, types.Array)
        and rows.ndim == 2
        and rows.dtype == types.int64
        and rows.layout == "C"
    )


def _table_rows(context, builder, table_type, table_value, rows_type, rows_value, t):
    """Per lane: the address of its row of frame ``t`` in the padded table (row ``rows[t, lane]``)."""
    table = context.make_array(table_type)(context, builder, table_value)
    rows = context.make_array(rows_type)(context, builder, rows_value)
    intp = context.get_value_type(types.intp)
    base = builder.bitcast(table.data, ir.IntType(8).as_pointer())
    width = cgutils.unpack_tuple(builder, table.shape, 2)[1]
    row_bytes = builder.mul(width, ir.Constant(intp, 8))
    addresses = []
    for lane in range(LANES):
        pointer = cgutils.get_item_pointer(context, builder, rows_type, rows, [t, ir.Constant(intp, lane)])
        addresses.append(builder.gep(base, [builder.mul(builder.load(pointer), row_bytes)]))
    return addresses


def _tile_pointer(builder, address, first_column):
    """``address`` (a table row) + ``first_column`` doubles, as a pointer to 8 doubles."""
    column_bytes = builder.mul(first_column, ir.Constant(first_column.type, 8))
    return builder.bitcast(builder.gep(address, [column_bytes]), _EIGHT.as_pointer())


def _half_pointer(context, builder, array_type, array, t, k, half):
    """Address of ``array[t, k, 8 half]`` as a pointer to 8 doubles."""
    pointer = builder.bitcast(_vector_pointer(context, builder, array_type, array, t, k), _EIGHT.as_pointer())
    return builder.gep(pointer, [ir.Constant(ir.IntType(32), half)])


def _masked_load(builder, pointer, inside, fill):
    """The 8 doubles at ``pointer`` if ``inside`` (an i1), else ``fill``, without touching memory."""
    load = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(_EIGHT, [_EIGHT.as_pointer(), ir.IntType(32), ir.VectorType(ir.IntType(1), _TILE), _EIGHT]),
        "llvm.masked.load.v8f64.p0",
    )
    mask = builder.insert_element(
        ir.Constant(ir.VectorType(ir.IntType(1), _TILE), ir.Undefined), inside, ir.Constant(ir.IntType(32), 0)
    )
    mask = builder.shuffle_vector(mask, mask, _i32([0] * _TILE))
    return builder.call(load, [pointer, ir.Constant(ir.IntType(32), 8), mask, fill])


def _by_tiles(context, builder, n_states, body):
    """``body(first_state)`` for the tiles of 8 states covering ``range(n_states)``."""
    intp = context.get_value_type(types.intp)
    stop = builder.mul(
        builder.sdiv(builder.add(n_states, ir.Constant(intp, _TILE - 1)), ir.Constant(intp, _TILE)),
        ir.Constant(intp, _TILE),
    )
    with cgutils.for_range_slice(builder, ir.Constant(intp, 0), stop, ir.Constant(intp, _TILE)) as (first, _):
        body(first)


@_intrinsic
def _gather_symbols(typingctx, table, rows, frames, t):
    """``frames[t, j, lane]`` = state j's entry of row ``rows[t, lane]`` of ``table``.

    ``table``: the padded symbol table (:func:`_padded_table`); ``rows``
    from :func:`_symbol_rows` (the last row, ones, past a sequence's end).
    """
    if not (_is_table(table, rows) and _is_buffer(frames)):
        return None

    def codegen(context, builder, sig, args):
        addresses = _table_rows(context, builder, sig.args[0], args[0], sig.args[1], args[1], args[3])
        out = context.make_array(sig.args[2])(context, builder, args[2])
        n_states = cgutils.unpack_tuple(builder, out.shape, 3)[1]

        def body(first):
            for half in range(LANES // _TILE):
                lanes = addresses[half * _TILE : (half + 1) * _TILE]
                tile = [builder.load(_tile_pointer(builder, address, first), align=8) for address in lanes]
                for k, column in enumerate(_transpose8(builder, tile)):
                    state = builder.add(first, ir.Constant(first.type, k))
                    with builder.if_then(builder.icmp_signed("<", state, n_states), likely=True):
                        pointer = _half_pointer(context, builder, sig.args[2], args[2], args[3], state, half)
                        builder.store(column, pointer, align=8)

        _by_tiles(context, builder, n_states, body)
        return context.get_dummy_value()

    return types.void(table, rows, frames, types.intp), codegen


def _permute_pair(builder, low, index, high):
    """``(low ++ high)[index & 15]`` per element: one two-table permute on AVX-512 (``vpermi2pd``).

    Elsewhere element by element (never run there: :func:`_permute_table` is empty without
    AVX-512, but the kernels are compiled for every CPU)."""
    if LANES >= 16:
        permute = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_EIGHT, [_EIGHT, index.type, _EIGHT]), "llvm.x86.avx512.vpermi2var.pd.512"
        )
        return builder.call(permute, [low, index, high])
    both = builder.shuffle_vector(low, high, _i32(range(2 * _TILE)))
    value = ir.Constant(_EIGHT, ir.Undefined)
    for k in range(_TILE):
        position = builder.and_(
            builder.extract_element(index, ir.Constant(ir.IntType(32), k)), ir.Constant(ir.IntType(64), 15)
        )
        value = builder.insert_element(value, builder.extract_element(both, position), ir.Constant(ir.IntType(32), k))
    return value


@_intrinsic
def _permute_symbols(typingctx, by_state, rows, frames, t):
    """``frames[t, j, lane] = by_state[j, rows[t, lane]]`` for every state j.

    ``by_state`` from :func:`_permute_table` (states x :data:`PERMUTE_SYMBOLS`),
    ``rows`` from :func:`_symbol_rows`. A state's 32 entries are four 8-wide
    vectors; the entries of 8 lanes are two two-table permutes (symbols 0-15,
    16-31) and a select: 6 instructions per state and 16 lanes, where the
    8 x 8 transposes of :func:`_gather_symbols` move whole padded rows.
    """
    if not (_is_table(by_state, rows) and _is_buffer(frames)):
        return None

    def codegen(context, builder, sig, args):
        table = context.make_array(sig.args[0])(context, builder, args[0])
        rows_array = context.make_array(sig.args[1])(context, builder, args[1])
        n_states = cgutils.unpack_tuple(builder, table.shape, 2)[0]
        intp = context.get_value_type(types.intp)
        index_type = ir.VectorType(ir.IntType(64), _TILE)
        sixteen = ir.Constant(index_type, [16] * _TILE)
        indices, upper = [], []
        for half in range(LANES // _TILE):
            pointer = cgutils.get_item_pointer(
                context, builder, sig.args[1], rows_array, [args[3], ir.Constant(intp, half * _TILE)]
            )
            index = builder.load(builder.bitcast(pointer, index_type.as_pointer()), align=8)
            indices.append(index)
            upper.append(builder.icmp_signed(">=", index, sixteen))
        base = builder.bitcast(table.data, _EIGHT.as_pointer())
        with cgutils.for_range(builder, n_states) as loop:
            row = builder.gep(base, [builder.mul(loop.index, ir.Constant(intp, PERMUTE_SYMBOLS // _TILE))])
            quarters = [builder.load(builder.gep(row, [ir.Constant(intp, q)]), align=8) for q in range(4)]
            for half in range(LANES // _TILE):
                low = _permute_pair(builder, quarters[0], indices[half], quarters[1])
                high = _permute_pair(builder, quarters[2], indices[half], quarters[3])
                value = builder.select(upper[half], high, low)
                pointer = _half_pointer(context, builder, sig.args[2], args[2], args[3], loop.index, half)
                builder.store(value, pointer, align=8)
        return context.get_dummy_value()

    return types.void(by_state, rows, frames, types.intp), codegen


@_intrinsic
def _transpose_symbols(typingctx, symbols, first, rows, t, half):
    """``rows[t + k, 8 half + m] = symbols[first[8 half + m] + t + k]`` for k, m < 8: eight lanes'
    next eight symbols, read as one vector per lane (int64 or uint8 symbols) and transposed in registers."""
    if not (isinstance(symbols, types.Array) and symbols.ndim == 1 and symbols.dtype in (types.int64, types.uint8)):
        return None

    def codegen(context, builder, sig, args):
        symbols_array = context.make_array(sig.args[0])(context, builder, args[0])
        first_array = context.make_array(sig.args[1])(context, builder, args[1])
        rows_array = context.make_array(sig.args[2])(context, builder, args[2])
        intp = context.get_value_type(types.intp)
        index_type = ir.VectorType(ir.IntType(64), _TILE)
        lane0 = builder.mul(args[4], ir.Constant(intp, _TILE))
        tile = []
        for m in range(_TILE):
            lane = builder.add(lane0, ir.Constant(intp, m))
            start = builder.load(cgutils.get_item_pointer(context, builder, sig.args[1], first_array, [lane]))
            pointer = cgutils.get_item_pointer(
                context, builder, sig.args[0], symbols_array, [builder.add(start, args[3])]
            )
            if sig.args[0].dtype == types.uint8:
                narrow = ir.VectorType(ir.IntType(8), _TILE)
                vector = builder.zext(builder.load(builder.bitcast(pointer, narrow.as_pointer()), align=1), index_type)
            else:
                vector = builder.load(builder.bitcast(pointer, index_type.as_pointer()), align=8)
            tile.append(builder.bitcast(vector, _EIGHT))
        for k, column in enumerate(_transpose8(builder, tile)):
            row = builder.add(args[3], ir.Constant(intp, k))
            pointer = cgutils.get_item_pointer(context, builder, sig.args[2], rows_array, [row, lane0])
            builder.store(
                builder.bitcast(column, index_type), builder.bitcast(pointer, index_type.as_pointer()), align=8
            )
        return context.get_dummy_value()

    return types.void(symbols, first, rows, types.intp, types.intp), codegen


@_intrinsic
def _scatter_add_symbols(typingctx, counts, rows, t, source, k, factor):
    """``source[k, j, lane] * factor[lane]`` added to state j's entry of row ``rows[t, lane]``
    of ``counts`` (frame t's symbol), for every state j of ``source``.

    ``counts``: a padded table shaped like the symbol table, whose last row
    takes what lanes past their sequence's end add. Lane by lane in order, as
    two lanes may add to the same row.
    """
    if not (_is_table(counts, rows) and _is_buffer(source)):
        return None

    def codegen(context, builder, sig, args):
        addresses = _table_rows(context, builder, sig.args[0], args[0], sig.args[1], args[1], args[2])
        source_array = context.make_array(sig.args[3])(context, builder, args[3])
        n_states = cgutils.unpack_tuple(builder, source_array.shape, 3)[1]
        factors = [
            builder.shuffle_vector(args[5], args[5], _i32(range(half * _TILE, (half + 1) * _TILE)))
            for half in range(LANES // _TILE)
        ]
        zeros = ir.Constant(_EIGHT, [0.0] * _TILE)

        def tile(first, width, masked):
            # states first .. first + width - 1 of 8 lanes at a time, transposed to one piece of
            # `width` states per lane, added to the lane's row lane by lane
            for half in range(LANES // _TILE):
                values = []
                for k in range(width):
                    state = builder.add(first, ir.Constant(first.type, k))
                    pointer = _half_pointer(context, builder, sig.args[3], args[3], args[4], state, half)
                    if masked:
                        # a state past the last loads nothing and adds zero (a masked load: a
                        # select around a load becomes a branch per state)
                        inside = builder.icmp_signed("<", state, n_states)
                        value = _masked_load(builder, pointer, inside, zeros)
                    else:
                        value = builder.load(pointer, align=8)
                    values.append(builder.fmul(value, factors[half]))
                piece_type = ir.VectorType(ir.DoubleType(), width)
                for k, piece in enumerate(_TRANSPOSES[width](builder, values)):
                    address = builder.gep(addresses[half * _TILE + k], [builder.mul(first, ir.Constant(first.type, 8))])
                    pointer = builder.bitcast(address, piece_type.as_pointer())
                    builder.store(builder.fadd(builder.load(pointer, align=8), piece), pointer, align=8)

        intp = context.get_value_type(types.intp)
        eight = ir.Constant(intp, _TILE)
        rest = builder.srem(n_states, eight)
        whole = builder.sub(n_states, rest)
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), whole, eight) as (first, _):
            tile(first, _TILE, masked=False)
        # the last states in a tile of 2, 4 or 8 (K=10: 2 states need 2 shuffles per 8 lanes, not 24)
        with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(intp, 0))):
            narrow = builder.icmp_signed("<=", rest, ir.Constant(intp, 2))
            with builder.if_else(narrow) as (two, wider):
                with two:
                    tile(whole, 2, masked=True)
                with wider, builder.if_else(builder.icmp_signed("<=", rest, ir.Constant(intp, 4))) as (four, wide):
                    with four:
                        tile(whole, 4, masked=True)
                    with wide:
                        tile(whole, _TILE, masked=True)
        return context.get_dummy_value()

    return types.void(counts, rows, types.intp, source, types.intp, lane_vector), codegen


@_intrinsic
def _scatter_frame(typingctx, array, rows, sink, source, t, factor):
    """``array[rows[lane], j] = source[t, j, lane] * factor[lane]`` for every column j.

    Into ``sink`` where ``rows[lane] < 0``. The LANES x 4 blocks are
    transposed in registers and a lane's 4 values are written as one vector.
    """
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
            # lane by lane, in order (lanes past their sequence's end all write the sink)
            for lane_number, lane in enumerate(lanes):
                piece = builder.shuffle_vector(block, undefined, _i32(range(lane_number, LANES * width, LANES)))
                if contiguous:
                    pointer = builder.bitcast(_element(builder, lane, column), part.as_pointer())
                    builder.store(piece, pointer, align=8)
                else:
                    for k in range(width):
                        value = builder.extract_element(piece, ir.Constant(ir.IntType(32), k))
                        pointer = _element(builder, lane, builder.add(column, ir.Constant(column.type, k)))
                        builder.store(value, pointer)

        _by_columns(builder, n_columns, body)
        return context.get_dummy_value()

    return types.void(array, rows, sink, source, types.intp, lane_vector), codegen


@_inline
def _row_groups(m, width):
    """``groups[g, c, k] = m[width g + k, c]`` for the rows up to a multiple of ``width``.

    What :func:`_rows5` reads: a group's entries of column c side by side, at one base
    address per group. ``m[r + k, c]`` for k < 5 costs five row addresses per group, each
    with numba's fix-up for a negative index, in registers the loop needs for its accumulators.
    """
    n_groups = m.shape[0] // width
    groups = np.empty((n_groups, m.shape[1], width))
    for g in range(n_groups):
        for c in range(m.shape[1]):
            for k in range(width):
                groups[g, c, k] = m[width * g + k, c]
    return groups


@_inline
def _fma5(a0, a1, a2, a3, a4, groups, g, c, v):
    """``a_k + groups[g, c, k] * v`` for k = 0..4: one column of a group of 5 rows."""
    return (
        _fma(a0, groups[g, c, 0], v),
        _fma(a1, groups[g, c, 1], v),
        _fma(a2, groups[g, c, 2], v),
        _fma(a3, groups[g, c, 3], v),
        _fma(a4, groups[g, c, 4], v),
    )


@_inline
def _rows5(groups, g, x, t):
    """Lane vectors ``sum over c of m[5 g + k, c] * x[t, c]`` for k = 0..4 (as :func:`_rows4`),
    ``groups`` from :func:`_row_groups` of ``m``."""
    a0 = a1 = a2 = a3 = a4 = _splat(0.0)
    for c in range(groups.shape[1]):
        a0, a1, a2, a3, a4 = _fma5(a0, a1, a2, a3, a4, groups, g, c, _load(x, t, c))
    return a0, a1, a2, a3, a4


@_inline
def _rows5_normalising(groups, g, x, t, factor):
    """:func:`_rows5` of ``x[t] * factor``, storing ``x[t] * factor`` back into ``x[t]`` as it goes
    (the forward pass normalises the previous frame in the loop that reads it)."""
    a0 = a1 = a2 = a3 = a4 = _splat(0.0)
    for c in range(groups.shape[1]):
        v = _mul(_load(x, t, c), factor)
        _store(x, t, c, v)
        a0, a1, a2, a3, a4 = _fma5(a0, a1, a2, a3, a4, groups, g, c, v)
    return a0, a1, a2, a3, a4


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
def _frame_rows(first, length, t, rows):
    """``rows[lane]``: the row of frame ``t`` of the lane's sequence, or -1 past its end."""
    for lane in range(LANES):
        rows[lane] = first[lane] + t if t < length[lane] else -1


@_jit
def _load_frames(frameprob, first, length, longest, frames, rows, ones):
    """``frames[t, state, lane]``: the block's emission probabilities (rows of ``frameprob``), lane-minor.

    Frames past the end of a lane's sequence get probability 1 (from ``ones``);
    categorical blocks use :func:`_load_symbol_frames`.
    """
    for t in range(longest):
        _frame_rows(first, length, t, rows)
        _gather_frame(frameprob, rows, ones, frames, t)


@_jit
def _symbol_rows(symbols, first, length, longest, table, rows):
    """``rows[t, lane]``: the row of ``table`` (a padded table) of the symbol of frame t of the
    lane's sequence; its last row past the sequence's end.

    Once per block, for both the gather of the frames and the scatter of the
    posteriors (each frame's 16 rows were looked up twice before, lane by lane).
    """
    last = table.shape[0] - 1
    # the frames every lane has, 8 x 8 (frames x lanes) tiles at a time
    common = longest
    for lane in range(LANES):
        common = min(common, length[lane])
    common -= common % _TILE
    for t in range(0, common, _TILE):
        for half in range(LANES // _TILE):
            _transpose_symbols(symbols, first, rows, t, half)
    for lane in range(LANES):
        start = first[lane]
        n = length[lane]
        for t in range(common, n):
            rows[t, lane] = symbols[start + t]
        for t in range(n, longest):
            rows[t, lane] = last


@_jit
def _load_symbol_frames(table, by_state, rows, longest, frames):
    """:func:`_load_frames` of a categorical block: ``frames[t, state, lane] = table[symbol, state]``.

    ``table`` is padded (:func:`_padded_table`, last row ones for frames past
    the end of a lane's sequence), ``rows`` from :func:`_symbol_rows`; with a
    non-empty ``by_state`` (:func:`_permute_table`) the frames are permuted out of it instead.
    """
    if by_state.shape[0] > 0:
        for t in range(longest):
            _permute_symbols(by_state, rows, frames, t)
    else:
        for t in range(longest):
            _gather_symbols(table, rows, frames, t)


# Symbols (the padded table's rows, with the one past a sequence's end) up to which the frames
# are permuted out of registers (:func:`_permute_symbols`): a state's 32 entries are 4 zmm registers.
PERMUTE_SYMBOLS = 32


@_inline
def _permute_table(table):
    """states x 32: ``table`` transposed, then a column of ones; empty unless it fits and the CPU has AVX-512."""
    n_rows, n_columns = table.shape
    if LANES < 16 or n_rows + 1 > PERMUTE_SYMBOLS:
        return _aligned_empty(0).reshape((0, PERMUTE_SYMBOLS))
    out = _aligned_empty(n_columns * PERMUTE_SYMBOLS).reshape((n_columns, PERMUTE_SYMBOLS))
    out[:] = 0.0
    out[:, :n_rows] = table.T
    out[:, n_rows] = 1.0
    return out


# A lane vector is two of the CPU's widest registers; work arrays start on a
# 64-byte boundary (a cache line) so that no vector load or store of
# ``a[t, k, :]`` straddles two lines. numba's ``np.empty`` aligns to 32 bytes
# only, which split every 64-byte access in two.
_ALIGNMENT = 64


@_inline
def _aligned_empty(size):
    """An uninitialised float64 vector of ``size`` starting on a cache line."""
    pad = _ALIGNMENT // 8
    raw = np.empty(size + pad)
    skip = ((_ALIGNMENT - raw.ctypes.data % _ALIGNMENT) % _ALIGNMENT) // 8
    return raw[skip : skip + size]


@_inline
def _lane_buffer(n0, n1):
    """An uninitialised ``(n0, n1, LANES)`` float64 work array starting on a cache line."""
    return _aligned_empty(n0 * n1 * LANES).reshape((n0, n1, LANES))


@_inline
def _lane_zeros(n0, n1):
    """:func:`_lane_buffer` filled with zeros."""
    buffer = _lane_buffer(n0, n1)
    buffer[:] = 0.0
    return buffer


@_inline
def _padded_table(table, last):
    """``table`` (symbols x states) with columns padded to a multiple of 8 and a last row of ``last``.

    What :func:`_gather_symbols` reads (``last`` = 1: the probabilities past
    a sequence's end) and :func:`_scatter_add_symbols` adds to (``last`` = 0:
    the sink of lanes past a sequence's end); rows start on cache lines.
    """
    n_rows, n_columns = table.shape
    width = (n_columns + _TILE - 1) // _TILE * _TILE
    padded = _aligned_empty((n_rows + 1) * width).reshape((n_rows + 1, width))
    padded[:] = 0.0
    padded[:n_rows, :n_columns] = table
    padded[n_rows, :] = last
    return padded


@_jit
def _buffers(n_states, offsets):
    """Sort order of the sequences by length, and the per-block work arrays."""
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(lengths, kind="mergesort")
    longest = lengths.max() if lengths.shape[0] else 0
    alpha = _lane_buffer(longest, n_states)
    frames = _lane_buffer(longest, n_states)
    # scale[0, t, lane]: normaliser c_t; scale[1, t, lane]: 1 / c_t
    scale = _lane_buffer(2, longest)
    return order, alpha, frames, scale


@_intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bits are the int64 ``bits`` (a bit cast)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen

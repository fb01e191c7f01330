"""Sequences in hmmlearn's ``X, lengths`` layout, validated before any work.

Every rule broken by the data raises :class:`InvalidSequenceError` (a
``ValueError``) naming the sequence, the position inside it where that
applies, the field and the rule, e.g. ``sequence 3, position 17: X value nan
is not finite (observations must be finite numbers)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class InvalidSequenceError(ValueError):
    """Input data that breaks a rule of the model; raised before any work."""


class InvalidParameterError(ValueError):
    """Model parameters of the wrong shape or that are not distributions."""


def offsets_from_lengths(lengths: object, n_samples: int) -> np.ndarray:
    """Sequence boundaries (n_sequences + 1 entries) from hmmlearn's ``lengths``."""
    if lengths is None:
        if n_samples == 0:
            raise InvalidSequenceError("X has no samples: at least one observation is needed")
        return np.array([0, n_samples], dtype=np.int64)
    lengths_array = np.asarray(lengths)
    if lengths_array.ndim != 1 or lengths_array.size == 0:
        raise InvalidSequenceError(
            f"lengths must be a non-empty 1-D sequence of integers, got shape {lengths_array.shape}"
        )
    integral = np.issubdtype(lengths_array.dtype, np.integer) or (
        np.issubdtype(lengths_array.dtype, np.floating)
        and bool(np.all(np.isfinite(lengths_array) & (lengths_array == np.round(lengths_array))))
    )
    if not integral:
        raise InvalidSequenceError(f"lengths must be integers, got dtype {lengths_array.dtype}")
    lengths_array = lengths_array.astype(np.int64)
    bad = np.flatnonzero(lengths_array <= 0)
    if bad.size:
        raise InvalidSequenceError(
            f"sequence {bad[0]}: length {lengths_array[bad[0]]} is not positive (every sequence needs "
            f"at least one observation; {bad.size} sequence(s) break this)"
        )
    total = int(lengths_array.sum())
    if total != n_samples:
        raise InvalidSequenceError(
            f"lengths sum to {total} but X has {n_samples} samples (lengths must sum to the number of rows of X)"
        )
    offsets = np.zeros(lengths_array.size + 1, dtype=np.int64)
    np.cumsum(lengths_array, out=offsets[1:])
    return offsets


def locate(offsets: np.ndarray, row: int) -> tuple[int, int]:
    """(sequence, position) of a row of the concatenated X."""
    sequence = int(np.searchsorted(offsets, row, side="right") - 1)
    return sequence, int(row - offsets[sequence])


def where(offsets: np.ndarray, row: int, column: int | None = None) -> str:
    """Human-readable location of a row (and feature) of X."""
    sequence, position = locate(offsets, row)
    text = f"sequence {sequence}, position {position}"
    if column is not None:
        text += f", feature {column}"
    return text


def as_2d_float(X: object, offsets_hint: int | None = None) -> np.ndarray:
    """X as a C-contiguous (n_samples, n_features) float64 array, shape-checked."""
    array = np.asarray(X)
    if np.iscomplexobj(array):
        # A float conversion would drop the imaginary parts silently.
        raise InvalidSequenceError(f"X must hold real numbers, got dtype {array.dtype}")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)):
        raise InvalidSequenceError(f"X must be numeric, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InvalidSequenceError(f"X must be 2-D (n_samples, n_features), got shape {array.shape}")
    if array.shape[1] == 0:
        raise InvalidSequenceError("X has 0 features: at least one column is needed")
    return np.ascontiguousarray(array, dtype=np.float64)


def check_finite(X: np.ndarray, offsets: np.ndarray) -> None:
    """Every value of X must be a finite number."""
    bad = ~np.isfinite(X)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise InvalidSequenceError(
            f"{where(offsets, row, column)}: X value {X[row, column]} is not finite "
            f"(observations must be finite numbers; {int(bad.sum())} value(s) break this)"
        )


def check_n_features(X: np.ndarray, n_features: int) -> None:
    if X.shape[1] != n_features:
        raise InvalidSequenceError(
            f"X has {X.shape[1]} features per observation but the model has n_features={n_features}"
        )


def batches(offsets: np.ndarray, frames_per_batch: int) -> Iterator[tuple[int, int]]:
    """Split sequences into consecutive ranges ``[first, stop)`` of about
    ``frames_per_batch`` frames (at least one sequence each), so working
    memory is bounded whatever the size of the data."""
    n_sequences = offsets.shape[0] - 1
    first = 0
    while first < n_sequences:
        stop = int(np.searchsorted(offsets, offsets[first] + frames_per_batch, side="right")) - 1
        stop = min(max(stop, first + 1), n_sequences)
        yield first, stop
        first = stop

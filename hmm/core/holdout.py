"""Which sequences are held out: a pure function of each sequence's key, never of where it is read.

A held-out score is only worth comparing across candidates, re-runs and engines if every path
puts exactly the same sequences aside. So the choice hashes a key of the sequence (its id, or
its position in the data when there is no id column) with fixed functions written out here --
no Python ``hash`` (salted per process), no dependence on partitions, batches or engines -- and
holds the sequence out when the hash, read as a number in [0, 1), is below the fraction.

Integer keys go through splitmix64's finaliser; strings (UTF-8 bytes) through 64-bit FNV-1a and
then the same finaliser, so that similar ids spread evenly.
"""

from __future__ import annotations

import numbers
from typing import Any

import numba
import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def check_fraction(fraction: Any) -> float:
    """``holdout_fraction`` as a float in [0, 1) (1 would leave nothing to train on)."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= float(fraction) < 1:
        raise ValueError(f"holdout_fraction must be a number in [0, 1), got {fraction!r}")
    return float(fraction)


@numba.njit(cache=True)
def _mix(value: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """splitmix64's finaliser: every input bit affects every output bit."""
    value = (value ^ (value >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    value = (value ^ (value >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return value ^ (value >> np.uint64(31))


@numba.njit(cache=True)
def _hash_integers(keys: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    for i in range(keys.shape[0]):
        out[i] = _mix(np.uint64(keys[i]))


@numba.njit(cache=True)
def _hash_strings(data: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    for i in range(offsets.shape[0] - 1):
        value = _FNV_OFFSET
        for j in range(offsets[i], offsets[i + 1]):
            value = (value ^ np.uint64(data[j])) * _FNV_PRIME
        out[i] = _mix(value)


def hash_integers(keys: np.ndarray) -> np.ndarray:
    """64-bit hashes of integer keys (each read as its two's-complement 64 bits)."""
    keys = np.asarray(keys)
    bits = keys.astype(np.uint64) if keys.dtype.kind == "u" else keys.astype(np.int64).view(np.uint64)
    out = np.empty(len(bits), dtype=np.uint64)
    _hash_integers(np.ascontiguousarray(bits), out)
    return out


def hash_strings(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """64-bit hashes of strings given as UTF-8 bytes and offsets (an Arrow string array's buffers).

    Parameters
    ----------
    data : ndarray of uint8 of shape (n_bytes,)
        Every string's bytes, one after another.
    offsets : ndarray of int of shape (n_strings + 1,)
        Where each string starts in ``data``, and the end.
    """
    out = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash_strings(np.ascontiguousarray(data, dtype=np.uint8), np.ascontiguousarray(offsets, dtype=np.int64), out)
    return out


def held_out(hashes: np.ndarray, fraction: float) -> np.ndarray:
    """True for the keys whose hash, as a number in [0, 1) (its top 53 bits), is below ``fraction``."""
    unit = (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return unit < check_fraction(fraction)


def holdout_mask(keys: Any, fraction: float) -> np.ndarray:
    """Which of ``keys`` are held out: integers (ids or positions) or strings (ids).

    Parameters
    ----------
    keys : array-like of shape (n_sequences,)
        Integer keys, or str keys (hashed as UTF-8).
    fraction : float in [0, 1)
        About this share of keys is held out; 0 holds out none.

    Returns
    -------
    mask : ndarray of bool of shape (n_sequences,)
    """
    keys = np.asarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"holdout keys must be one-dimensional, got shape {keys.shape}")
    if keys.dtype.kind in "iu":
        return held_out(hash_integers(keys), fraction)
    if keys.dtype.kind in "UO" and all(isinstance(key, str) for key in keys.tolist()):
        encoded = [key.encode() for key in keys.tolist()]
        offsets = np.concatenate([[0], np.cumsum([len(item) for item in encoded], dtype=np.int64)])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return held_out(hash_strings(data, offsets), fraction)
    raise ValueError(f"holdout keys must be integers or strings, got dtype {keys.dtype}")

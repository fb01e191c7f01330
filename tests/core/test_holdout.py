"""Held-out sequences: a fixed function of each key, the same wherever and in whatever order it runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hmm.core.holdout import check_fraction, hash_integers, hash_strings, holdout_mask

MASK64 = (1 << 64) - 1


def splitmix_finaliser(value: int) -> int:
    """The reference, in plain Python integers (splitmix64's published constants)."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


def fnv1a(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & MASK64
    return value


def test_hashes_equal_the_reference_functions() -> None:
    keys = np.array([0, 1, 2, 12345678901, -1, -(2**63), 2**63 - 1])
    expected = [splitmix_finaliser(int(key) & MASK64) for key in keys]
    assert hash_integers(keys).tolist() == expected
    words = ["", "a", "seq-000017", "ünïcödé", "x" * 300]
    encoded = [word.encode() for word in words]
    offsets = np.concatenate([[0], np.cumsum([len(item) for item in encoded])])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    assert hash_strings(data, offsets).tolist() == [splitmix_finaliser(fnv1a(item)) for item in encoded]


def test_the_mask_depends_on_the_key_only() -> None:
    keys = np.arange(100_000)
    mask = holdout_mask(keys, 0.2)
    assert abs(mask.mean() - 0.2) < 0.01
    order = np.random.default_rng(0).permutation(keys.size)
    np.testing.assert_array_equal(holdout_mask(keys[order], 0.2), mask[order])  # any order, any chunking
    np.testing.assert_array_equal(holdout_mask(keys.astype(np.int32), 0.2), mask)  # any integer type
    np.testing.assert_array_equal(holdout_mask(keys.astype(np.uint64), 0.2), mask)
    assert not holdout_mask(keys, 0.0).any()
    smaller = holdout_mask(keys, 0.1)
    assert not (smaller & ~mask).any()  # a smaller fraction holds out a subset


def test_string_keys() -> None:
    ids = [f"user-{i}" for i in range(20_000)]
    mask = holdout_mask(ids, 0.3)
    assert abs(mask.mean() - 0.3) < 0.02
    np.testing.assert_array_equal(holdout_mask(np.array(ids), 0.3), mask)
    np.testing.assert_array_equal(holdout_mask(np.array(ids, dtype=object), 0.3), mask)


@pytest.mark.parametrize("bad", [1, 1.0, -0.1, float("nan"), float("inf"), True, "0.1", None])
def test_a_bad_fraction_is_refused_by_name(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^holdout_fraction must be a number in \[0, 1\), got "):
        check_fraction(bad)


@pytest.mark.parametrize("keys", [np.zeros((2, 2), dtype=int), np.array([0.5, 1.5]), np.array(["a", 1], dtype=object)])
def test_keys_that_are_not_integers_or_strings_are_refused(keys: Any) -> None:
    with pytest.raises(ValueError, match=r"^holdout keys must be"):
        holdout_mask(keys, 0.5)

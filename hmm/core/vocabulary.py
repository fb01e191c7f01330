"""Named symbols: a categorical model's fixed vocabulary and the mapping of strings to indices.

The vocabulary is a list of distinct, non-empty strings; its order is the symbol index, so
``emissionprob_[:, k]`` is the probability of ``symbols[k]``. Data given as strings is mapped
through it before any kernel sees it; a string outside the vocabulary is an error naming the
sequence and position, or, if the model names an ``unknown_symbol``, counts as that symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmm.core.limits import MAX_SYMBOL_CHARS, MAX_SYMBOLS
from hmm.core.sequences import InvalidParameterError, InvalidSequenceError, where


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_vocabulary(symbols: Any, unknown_symbol: Any = None) -> tuple[str, ...]:
    """``symbols`` as a tuple of strings if it is a usable vocabulary, else :class:`InvalidParameterError`.

    Rules: a list (or 1-D array) of 1 to :data:`~hmm.core.limits.MAX_SYMBOLS` distinct, non-empty
    strings of at most :data:`~hmm.core.limits.MAX_SYMBOL_CHARS` characters; ``unknown_symbol``,
    if given, one of them.
    """
    if isinstance(symbols, (str, bytes)) or not isinstance(symbols, (Sequence, np.ndarray)):
        raise InvalidParameterError(f"symbols must be a list of strings, got {type(symbols).__name__}")
    if isinstance(symbols, np.ndarray) and symbols.ndim != 1:
        raise InvalidParameterError(f"symbols must be a 1-D list of strings, got shape {symbols.shape}")
    values = list(symbols.tolist() if isinstance(symbols, np.ndarray) else symbols)
    if not values:
        raise InvalidParameterError("symbols is empty: a vocabulary needs at least one symbol")
    if len(values) > MAX_SYMBOLS:
        raise InvalidParameterError(
            f"symbols has {len(values):,} symbols, more than the limit of {MAX_SYMBOLS:,} (hmm.core.limits.MAX_SYMBOLS)"
        )
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidParameterError(f"symbols[{index}] is {_brief(value)}, not a string")
        if not value:
            raise InvalidParameterError(f"symbols[{index}] is the empty string; a symbol needs at least one character")
        if len(value) > MAX_SYMBOL_CHARS:
            raise InvalidParameterError(
                f"symbols[{index}] has {len(value)} characters, more than the limit of {MAX_SYMBOL_CHARS} "
                "(hmm.core.limits.MAX_SYMBOL_CHARS)"
            )
        if value in seen:
            raise InvalidParameterError(f"symbols[{index}] is {_brief(value)}, which is symbols[{seen[value]}] already")
        seen[value] = index
    if unknown_symbol is not None and unknown_symbol not in seen:
        raise InvalidParameterError(
            f"unknown_symbol is {_brief(unknown_symbol)}, which is not in symbols (the symbol unknown strings count as "
            "must be part of the vocabulary)"
        )
    return tuple(str(value) for value in values)


@dataclass(frozen=True)
class FactorizedSymbols:
    """String data as ``names[indices]``: how an Arrow string or dictionary column arrives (Arrow
    factorizes in C++), so mapping it through a vocabulary costs one lookup per distinct name and
    one gather, not a hash per observation."""

    names: np.ndarray  #: object array of str (Arrow's dictionary; may hold unused or repeated names)
    indices: np.ndarray  #: integer array, one per observation, into ``names``

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.indices.shape)

    def used_names(self) -> np.ndarray:
        """The names some observation uses (a dictionary column may carry others)."""
        return self.names[np.flatnonzero(np.bincount(self.indices, minlength=len(self.names)))]


def holds_strings(X: Any) -> bool:
    """True for data given as strings (a numpy str array, or an object array whose first value is a string)."""
    if isinstance(X, FactorizedSymbols):
        return True
    if X.dtype.kind == "U":
        return True
    return X.dtype == object and X.size > 0 and isinstance(X.flat[0], str)


def as_strings(X: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """1-D string data as a numpy ``str`` array; an object array mixing strings with anything else is refused."""
    if X.dtype.kind == "U":
        return X
    if X.dtype != object:
        raise InvalidSequenceError(f"X must hold strings, got dtype {X.dtype}")
    values = X.tolist()
    bad = next((row for row, value in enumerate(values) if not isinstance(value, str)), None)
    if bad is not None:
        location = where(offsets, bad) if offsets is not None else f"observation {bad}"
        raise InvalidSequenceError(
            f"{location}: symbol {_brief(values[bad])} is of type {type(values[bad]).__name__}, not a string "
            "(symbols are integers, or strings throughout)"
        )
    return np.array(values, dtype=str) if values else np.empty(0, dtype="U1")


def distinct_symbols(X: np.ndarray | FactorizedSymbols, offsets: np.ndarray | None = None) -> list[str]:
    """The distinct strings of 1-D string data, sorted (code point order): the vocabulary data gives."""
    if isinstance(X, FactorizedSymbols):
        used = X.used_names().tolist()
        if all(isinstance(value, str) and value for value in used):
            return sorted(set(used))
    # Anything else is named at its row by the rules below.
    strings = as_strings(X.names[X.indices] if isinstance(X, FactorizedSymbols) else X, offsets)
    empty = np.flatnonzero(strings == "")
    if empty.size:
        location = where(offsets, int(empty[0])) if offsets is not None else f"observation {empty[0]}"
        raise InvalidSequenceError(
            f"{location}: symbol is the empty string (a symbol needs at least one character; "
            f"{empty.size} observation(s) break this)"
        )
    return [str(value) for value in np.unique(strings).tolist()]


def encode(
    X: np.ndarray | FactorizedSymbols, offsets: np.ndarray, symbols: Sequence[str], unknown_symbol: str | None = None
) -> np.ndarray:
    """1-D string data as int64 symbol indices into ``symbols``.

    A string not in ``symbols`` counts as ``unknown_symbol`` if given, else raises
    :class:`InvalidSequenceError` naming the first one's sequence and position.
    """
    if isinstance(X, FactorizedSymbols) and all(isinstance(value, str) for value in X.names.tolist()):
        uniques, inverse = X.names, X.indices
    else:  # anything but strings is named by as_strings, at its row
        strings = as_strings(X.names[X.indices] if isinstance(X, FactorizedSymbols) else X, offsets)
        uniques, inverse = np.unique(strings, return_inverse=True)
    index = {symbol: code for code, symbol in enumerate(symbols)}
    missing = -1 if unknown_symbol is None else index[unknown_symbol]
    codes = np.array([index.get(value, missing) for value in uniques.tolist()], dtype=np.int64)
    observations = codes[inverse.reshape(-1)]
    if unknown_symbol is None and (codes < 0).any():
        outside = np.flatnonzero(observations < 0)
        row = int(outside[0])
        raise InvalidSequenceError(
            f"{where(offsets, row)}: symbol {_brief(str(uniques[inverse.reshape(-1)[row]]))} is not in the vocabulary "
            f"({len(symbols)} symbols: {_shown(symbols)}; {outside.size} observation(s) break this; "
            "unknown_symbol= maps such symbols to one of the vocabulary)"
        )
    return observations


def _shown(symbols: Sequence[str], most: int = 5) -> str:
    head = ", ".join(repr(s) for s in symbols[:most])
    return head + (", ..." if len(symbols) > most else "")

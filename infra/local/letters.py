"""The demo's data: the prose of Python's reference manual as sequences of letters.

The text ships with Python itself (``pydoc_data``), so the demo needs no download. Each
paragraph of prose is one sequence of named symbols, its letters and spaces (``"a"`` ...
``"z"``, ``" "``), stored as an ``array<string>`` column: the model's vocabulary is
:data:`ALPHABET`, so its parameters, the report and :func:`describe` speak in letters. A
2-state categorical HMM trained on them finds, with no labels, the split between vowels and
consonants (Cave & Neuwirth, 1980): the classic sanity check for Baum-Welch.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import numpy as np

#: The vocabulary, in symbol order: a space, then a-z (also the sorted order of the letters).
ALPHABET = " " + string.ascii_lowercase
SYMBOLS = list(ALPHABET)
VOWELS = "aeiou"


def letter_sequences(min_length: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Paragraphs of the Python reference manual as letters: X of shape (n, 1) (one-character strings), lengths."""
    from pydoc_data.topics import topics

    paragraphs = []
    for text in topics.values():
        for paragraph in re.split(r"\n\s*\n", text):
            # Prose only: skip code samples and grammar rules.
            if paragraph.startswith("   ") or "::=" in paragraph or ">>>" in paragraph:
                continue
            letters = re.sub(r"[^a-z]+", " ", paragraph.lower()).strip()
            if len(letters) >= min_length:
                paragraphs.append(letters)
    symbols = np.array(list("".join(paragraphs)), dtype="<U1")
    lengths = np.array([len(p) for p in paragraphs], dtype=np.int64)
    return symbols[:, None], lengths


def parquet_table(max_sequences: int | None = None) -> Any:
    """The letter sequences as an Arrow table (``id``, ``sequence``: array<string>), the first ones only if asked."""
    import pyarrow as pa

    X, lengths = letter_sequences()
    if max_sequences is not None:
        lengths = lengths[:max_sequences]
        X = X[: lengths.sum()]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    sequences = pa.ListArray.from_arrays(pa.array(offsets), pa.array(X.ravel().tolist(), pa.string()))
    return pa.table({"id": pa.array(np.arange(len(lengths)), pa.int64()), "sequence": sequences})


def write_parquet(directory: Path | str, max_sequences: int | None = None) -> str:
    """Write ``letters.parquet`` into ``directory``; returns the directory's file:// URI."""
    import pyarrow.parquet as pq

    folder = Path(directory).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(parquet_table(max_sequences), folder / "letters.parquet")
    return folder.as_uri()


def describe(model: Any) -> str:
    """What a categorical HMM learned on letters, in words: start, transitions, emissions per state."""
    lines = [
        "start probabilities:   " + "  ".join(f"state {s}: {p:.3f}" for s, p in enumerate(model.startprob_)),
        "transition matrix (row: from, column: to):",
    ]
    lines += ["    " + "  ".join(f"{p:.3f}" for p in row) for row in model.transmat_]
    lines.append("what each state emits (letters with probability >= 2%, most likely first; _ is a space):")
    names = model.symbols if model.symbols is not None else SYMBOLS  # its vocabulary: letters
    for state, row in enumerate(model.emissionprob_):
        order = np.argsort(row)[::-1]
        shown = [f"{names[k] if names[k] != ' ' else '_'}:{row[k]:.2f}" for k in order if row[k] >= 0.02]
        lines.append(f"    state {state}: {' '.join(shown)}")
    vowels = [names.index(v) for v in VOWELS]
    share = model.emissionprob_[:, vowels].sum(axis=1)
    lines.append(
        f"probability of {', '.join(VOWELS)} per state: "
        + ", ".join(f"state {s}: {v:.2f}" for s, v in enumerate(share))
    )
    return "\n".join(lines)

"""``make demo``: train an HMM on real text shipped with Python itself.

The data is the prose of the Python reference manual (``pydoc_data``, part
of the standard library), read as sequences of letters and spaces, one
sequence per paragraph. A 2-state categorical HMM trained on letters finds,
with no labels, the split between vowels and consonants (Cave & Neuwirth,
1980): the classic sanity check for Baum-Welch.
"""

from __future__ import annotations

import argparse
import re
import string
import time

import numpy as np

from .categorical import CategoricalHMM

ALPHABET = " " + string.ascii_lowercase


def letter_sequences(min_length: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Paragraphs of the Python reference manual as symbol sequences (0 = space, 1..26 = a..z)."""
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
    lookup = {c: i for i, c in enumerate(ALPHABET)}
    symbols = np.array([lookup[c] for c in "".join(paragraphs)], dtype=np.int64)
    lengths = np.array([len(p) for p in paragraphs], dtype=np.int64)
    return symbols[:, None], lengths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=2, help="number of hidden states (default 2)")
    parser.add_argument("--n-iter", type=int, default=500, help="maximum EM iterations (default 500)")
    parser.add_argument("--tol", type=float, default=1.0, help="stop when the log-likelihood gains less (default 1.0)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    X, lengths = letter_sequences()
    print(f"data: {len(lengths)} paragraphs, {len(X)} letters and spaces from Python's reference manual")
    model = CategoricalHMM(
        args.states, n_features=len(ALPHABET), n_iter=args.n_iter, tol=args.tol, random_state=args.seed
    )
    started = time.perf_counter()
    model.fit(X, lengths)
    elapsed = time.perf_counter() - started

    print(f"\n{'iteration':>9} {'log-likelihood':>16} {'delta':>12} {'seconds':>8}")
    history = list(model.monitor_.history)
    for i, (log_likelihood, seconds) in enumerate(zip(history, model.monitor_.seconds, strict=True), start=1):
        if 12 < i <= len(history) - 6:  # a long run: show its start and its end
            if i == 13:
                print(f"{'...':>9}")
            continue
        delta = f"{log_likelihood - history[i - 2]:+12.3f}" if i > 1 else f"{'':>12}"
        print(f"{i:>9} {log_likelihood:>16.3f} {delta} {seconds:>8.3f}")
    status = "converged" if model.monitor_.converged and model.monitor_.iter < args.n_iter else "stopped"
    print(f"{status} after {model.monitor_.iter} iterations in {elapsed:.2f} s (including compilation)")

    print("\nstart probabilities:", " ".join(f"{p:.3f}" for p in model.startprob_))
    print("transition matrix (row: from, column: to):")
    for row in model.transmat_:
        print("   ", " ".join(f"{p:.3f}" for p in row))
    print("\nwhat each state emits (letters with probability >= 2%, most likely first):")
    for state, row in enumerate(model.emissionprob_):
        order = np.argsort(row)[::-1]
        shown = [f"{ALPHABET[k] if k else '_'}:{row[k]:.2f}" for k in order if row[k] >= 0.02]
        print(f"  state {state}: {' '.join(shown)}")
    vowels = [ALPHABET.index(v) for v in "aeiou"]
    share = model.emissionprob_[:, vowels].sum(axis=1)
    print(
        "\nprobability mass on a, e, i, o, u per state:",
        " ".join(f"state {s}: {v:.2f}" for s, v in enumerate(share)),
    )


if __name__ == "__main__":
    main()

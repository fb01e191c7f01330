"""``make demo``: ``hmm-em train`` end to end on real text shipped with Python itself.

The data is the prose of the Python reference manual (``pydoc_data``, part
of the standard library), read as sequences of letters and spaces, one
sequence per paragraph, written as Parquet. The training runs as committed
iterations in a ``file://`` store with the Spark E-step on ``local[2]``,
exactly as a cluster runs it, then publishes the model and its report.

A 2-state categorical HMM trained on letters finds, with no labels, the
split between vowels and consonants (Cave & Neuwirth, 1980): the classic
sanity check for Baum-Welch. Running the demo again resumes the same
training (nothing is recomputed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import string
import time

import numpy as np

from . import cli
from .categorical import CategoricalHMM
from .store import open_store
from .training import Training

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


def write_parquet(directory: str) -> str:
    """The letter sequences as Parquet (columns id, sequence); returns its file:// URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, lengths = letter_sequences()
    sequences = np.split(X.ravel(), np.cumsum(lengths)[:-1])
    os.makedirs(directory, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array(np.arange(len(lengths)), pa.int64()),
            "sequence": pa.array([s.astype(np.int32) for s in sequences], pa.list_(pa.int32())),
        }
    )
    pq.write_table(table, os.path.join(directory, "letters.parquet"))
    return f"file://{os.path.abspath(directory)}"


def describe(model: CategoricalHMM) -> None:
    print("\nstart probabilities:", " ".join(f"{p:.3f}" for p in model.startprob_))
    print("transition matrix (row: from, column: to):")
    for row in model.transmat_:
        print("   ", " ".join(f"{p:.3f}" for p in row))
    print("what each state emits (letters with probability >= 2%, most likely first; _ is a space):")
    for state, row in enumerate(model.emissionprob_):
        order = np.argsort(row)[::-1]
        shown = [f"{ALPHABET[k] if k else '_'}:{row[k]:.2f}" for k in order if row[k] >= 0.02]
        print(f"  state {state}: {' '.join(shown)}")
    vowels = [ALPHABET.index(v) for v in "aeiou"]
    share = model.emissionprob_[:, vowels].sum(axis=1)
    print("probability of a, e, i, o, u per state:", " ".join(f"state {s}: {v:.2f}" for s, v in enumerate(share)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output", default="demo-output", help="folder for the data and the store (default ./demo-output)"
    )
    parser.add_argument("--engine", choices=("spark", "local"), default="spark")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--states", type=int, default=2, help="number of hidden states (default 2)")
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--tol", type=float, default=1.0, help="stop when the log-likelihood gains less (default 1.0)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    data_uri = write_parquet(os.path.join(args.output, "data"))
    store_uri = f"file://{os.path.abspath(os.path.join(args.output, 'store'))}"
    spec = {
        "model": "categorical",
        "n_components": args.states,
        "data": data_uri,
        "id_col": "id",
        "tol": args.tol,
        "max_iter": args.max_iter,
        "seed": args.seed,
        "model_args": {"n_features": len(ALPHABET)},
    }
    training_id = f"letters-{args.states}-states-seed-{args.seed}"
    print(f"data: {data_uri} (paragraphs of Python's reference manual as letters, 0 = space, 1-26 = a-z)")
    print(f"store: {store_uri}; training {training_id}; engine {args.engine}")
    print(f"$ hmm-em train --store {store_uri} --training-id {training_id} --engine {args.engine} --spec '...'\n")
    started = time.perf_counter()
    command = ["train", "--store", store_uri, "--training-id", training_id, "--engine", args.engine, "--spec"]
    command.append(json.dumps(spec))
    if args.engine == "spark":
        command += ["--master", args.master]
    status = cli.main(command)
    if status:
        return status
    print(f"\nwall time {time.perf_counter() - started:.1f} s (Spark start-up and compilation included)")
    model = Training(open_store(store_uri), training_id).load_params(
        Training(open_store(store_uri), training_id).latest() or 0
    )
    assert isinstance(model, CategoricalHMM)
    describe(model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

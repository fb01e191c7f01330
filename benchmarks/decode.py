"""Sequences decoded per second (Viterbi paths): hmm-em's decode step on Spark local[2], the library on
one thread (x 2 cores), and the 2016 style, a per-row Python map calling hmmlearn's ``predict``.

Run by hand (``python benchmarks/decode.py [--sizes 100000,1000000] [--full-2016]``); prints a
Markdown table. The data is ``benchmarks/spark.py``'s (categorical, K=10, F=20, T=100, Parquet
files of 50,000 sequences, ``--cache``), decoded with the model it was drawn from.

(a) hmm-em: ``hmm.training.decode.decode(..., outputs="viterbi", engine="spark")``, as
    ``jobs/decode.py`` runs it: one Spark task per group of Parquet splits, each executor reads its
    split with pyarrow, decodes each Arrow batch with one compiled Viterbi call and writes its part
    (id + path) to the output; the time includes listing and checking the data, the parts and the
    manifest. Median of 3 runs into fresh outputs, after a warm-up run on the smallest data set.
(b) the library on one thread: ``model.predict(X, lengths)`` over all sequences already in memory
    (no Parquet read or write), median of 3 in a fresh child process; "x 2 cores" doubles its rate,
    the ideal for local[2].
(c) the 2016 style: ``df.rdd.map`` of a Python function calling hmmlearn 0.3.3's
    ``CategoricalHMM.predict`` on each row (``implementation="scaling"``), written as Parquet (id +
    path) by Spark; one timed run after a warm-up on 1,000 rows. Above 100,000 sequences it is
    extrapolated linearly from the largest measured size unless ``--full-2016`` is given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Before numpy starts (benchmarks/spark.py sets the same, and Spark's environment, when imported).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import hmm  # noqa: E402
from benchmarks.spark import (  # noqa: E402 (sets Spark's environment)
    LENGTH,
    N_COMPONENTS,
    N_FEATURES,
    ensure_parquet,
    log,
    start_spark,
    true_parameters,
)

LARGEST_2016 = 100_000
REPEATS = 3


def true_model() -> hmm.CategoricalHMM:
    startprob, transmat, emissionprob = true_parameters()
    model = hmm.CategoricalHMM(N_COMPONENTS, n_features=N_FEATURES, implementation="scaling")
    model.startprob_, model.transmat_, model.emissionprob_ = startprob, transmat, emissionprob
    model.check_parameters()
    return model


def library_child(path: Path) -> dict[str, Any]:
    """In a fresh process: every sequence in memory, ``predict`` timed on one thread."""
    import pyarrow.parquet as pq

    from hmm.distributed.arrow import arrow_sequences

    X, offsets = arrow_sequences(pq.read_table(path, columns=["sequence"]).column("sequence"), symbols=True)
    lengths = np.diff(offsets)
    model = true_model()
    model.predict(X[: 10 * LENGTH], lengths[:10])  # numba: compile or load the cache
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        model.predict(X, lengths)
        seconds.append(time.perf_counter() - started)
    return {"seconds": statistics.median(seconds)}


def run_library(path: Path) -> float:
    output = subprocess.run(
        [sys.executable, __file__, "--library-child", str(path)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return float(json.loads(output.strip().splitlines()[-1])["seconds"])


def decode_hmm_em(spark: Any, model_file: str, path: Path, scratch: Path) -> float:
    from hmm.training.decode import decode

    output = scratch / f"hmm-em-{time.monotonic_ns()}"
    started = time.perf_counter()
    result = decode(
        output.as_uri(), path.as_uri(), model_path=model_file, outputs="viterbi", engine="spark", spark=spark
    )
    seconds = time.perf_counter() - started
    assert result["status"] == "decoded", result
    shutil.rmtree(output)
    return seconds


def decode_2016(spark: Any, path: Path, scratch: Path, rows: int | None = None) -> float:
    """Per row, in a Python worker: hmmlearn's predict on the row's sequence; Spark writes the paths."""
    from hmmlearn import hmm as hmmlearn_hmm

    startprob, transmat, emissionprob = true_parameters()
    reference = hmmlearn_hmm.CategoricalHMM(N_COMPONENTS, n_features=N_FEATURES, implementation="scaling")
    reference.startprob_, reference.transmat_, reference.emissionprob_ = startprob, transmat, emissionprob
    broadcast = spark.sparkContext.broadcast(reference)

    def predict(row: Any) -> tuple[int, list[int]]:
        import numpy as np

        states = broadcast.value.predict(np.asarray(row.sequence).reshape(-1, 1))
        return row.id, states.tolist()

    df = spark.read.parquet(str(path))
    if rows is not None:
        df = df.limit(rows)
    output = scratch / f"2016-{time.monotonic_ns()}"
    started = time.perf_counter()
    spark.createDataFrame(df.rdd.map(predict), "id long, viterbi array<int>", verifySchema=False).write.parquet(
        str(output)
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(output)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--cache", default="/tmp/hmm-em-bench", help="Parquet data folder (benchmarks/spark.py's)")
    parser.add_argument("--full-2016", action="store_true")
    parser.add_argument("--library-child")
    args = parser.parse_args()
    if args.library_child:
        print(json.dumps(library_child(Path(args.library_child))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    cache = Path(args.cache)
    paths = {n: ensure_parquet(cache, n) for n in sizes}
    library = {n: run_library(paths[n]) for n in sizes}
    spark = start_spark()
    scratch = Path(tempfile.mkdtemp(prefix="hmm-em-decode-bench-"))
    model_file = str(scratch / "model.npz")
    true_model().save(model_file)
    rows = []
    try:
        decode_hmm_em(spark, model_file, paths[min(sizes)], scratch)  # warm-up: workers, kernels
        decode_2016(spark, paths[min(sizes)], scratch, rows=1_000)
        measured_2016: tuple[int, float] | None = None
        for n in sizes:
            ours = statistics.median(decode_hmm_em(spark, model_file, paths[n], scratch) for _ in range(REPEATS))
            if n <= LARGEST_2016 or args.full_2016:
                old, estimated = decode_2016(spark, paths[n], scratch), False
                measured_2016 = (n, old)
            else:
                assert measured_2016 is not None, "measure the 2016 style at a size <= 100,000 first"
                old, estimated = measured_2016[1] * n / measured_2016[0], True
            rows.append((n, ours, library[n], old, estimated))
            note = " (extrapolated)" if estimated else ""
            log(f"{n}: hmm-em {ours:.2f} s, library {library[n]:.2f} s, 2016 {old:.1f} s{note}")
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; sequences of {LENGTH}, K={N_COMPONENTS}\n")
    print("| sequences | hmm-em decode, local[2] | library 1 thread | library x 2 cores | 2016 per-row hmmlearn |")
    print("|---:|---:|---:|---:|---:|")
    for n, ours, lib, old, estimated in rows:
        mark = " (extrapolated)" if estimated else ""
        print(
            f"| {n:,} | {n / ours:,.0f}/s ({ours:.2f} s) | {n / lib:,.0f}/s | {2 * n / lib:,.0f}/s "
            f"| {n / old:,.0f}/s ({old:.1f} s){mark} |"
        )


if __name__ == "__main__":
    main()

"""Random restarts in one training against the same restarts as trainings one after another.

Run by hand::

    python benchmarks/restarts.py                                  # 500,000 x 100, 8 restarts, 5 iterations
    python benchmarks/restarts.py --sequences 20000 --iterations 3

The workload is ``benchmarks/spark.py``'s (categorical, K=10 states, F=20 symbols, T=100, written
once into ``--cache``). Both ways run ``hmm-em train --engine spark --master local[2]`` (a Spark
session per command, as a step has one; ``tol`` 0 so every iteration runs):

* together: one training with ``n_init`` restarts (``prune_after`` beyond ``--iterations``, so
  all of them run every iteration): each iteration reads the data once, for every candidate;
* one after another: ``n_init`` trainings with seeds ``0 .. n_init - 1``, the same candidates.

Each candidate of the first equals the training of the second with its seed, bit for bit
(``tests/training/test_candidates.py``); the script checks it on the last iteration's parameters.
Reported: wall-clock seconds of each way (the commands, not writing the data), the mean E-step
seconds of an iteration (COMMIT timings) and the ratio.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

# Before anything imports numpy, numba or Spark: benchmarks/spark.py sets the environment.
from benchmarks.spark import N_COMPONENTS, N_FEATURES, cpu_model, ensure_parquet, log  # noqa: E402


def spec(data: Path, iterations: int, seed: int, n_init: int) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "model": "categorical",
        "n_components": N_COMPONENTS,
        "data": data.as_uri(),
        "id_col": "id",
        "tol": 0.0,
        "max_iter": iterations,
        "seed": seed,
        "model_args": {"n_features": N_FEATURES},
    }
    if n_init > 1:
        raw.update(n_init=n_init, prune_after=iterations + 1)
    return raw


def train(store: Path, training_id: str, raw: dict[str, Any], master: str) -> float:
    argv = [sys.executable, "-m", "hmm.training.cli", "train", "--store", store.as_uri(), "--training-id", training_id]
    argv += ["--engine", "spark", "--master", master, "--spec", json.dumps(raw)]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=500_000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hmm-em-bench"))
    args = parser.parse_args()
    data = ensure_parquet(args.cache, args.sequences)
    store = args.cache / f"restarts-store-{os.getpid()}"
    shutil.rmtree(store, ignore_errors=True)
    log(f"{cpu_model()}; load average {os.getloadavg()[0]:.2f}")
    together = train(store, "together", spec(data, args.iterations, 0, args.restarts), args.master)
    log(f"together: {together:.1f} s")
    separate = []
    for seed in range(args.restarts):
        separate.append(train(store, f"seed-{seed}", spec(data, args.iterations, seed, 1), args.master))
        log(f"seed {seed}: {separate[-1]:.1f} s")
    from hmm.training.commits import Training
    from hmm.training.store import open_store

    opened = open_store(store.as_uri())
    last = Training(opened, "together").record(args.iterations)["candidates"]
    for seed in range(args.restarts):
        alone = Training(opened, f"seed-{seed}").record(args.iterations)
        assert last[seed]["params_sha256"] == alone["params_sha256"], f"candidate {seed} differs"

    def estep(training_id: str) -> float:
        records = Training(opened, training_id).records()[1:]
        return sum(r["timings"]["estep_seconds"] for r in records) / len(records)

    separate_estep = sum(estep(f"seed-{seed}") for seed in range(args.restarts)) / args.restarts
    print(
        f"| {args.sequences} x 100, {args.iterations} iterations, {args.restarts} restarts, {args.master} "
        f"| one training: {together:.1f} s (E-step {estep('together'):.1f} s per iteration) "
        f"| {args.restarts} trainings: {sum(separate):.1f} s (E-step {separate_estep:.1f} s per iteration each) "
        f"| {sum(separate) / together:.2f}x |"
    )
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()

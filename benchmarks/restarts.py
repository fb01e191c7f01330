"""Random restarts in one training against the same restarts as trainings one after another.

Run by hand::

    python benchmarks/restarts.py                        # through the DAG: 500,000 x 100, 8 restarts, 10 iterations
    python benchmarks/restarts.py --sequences 20000 --iterations 3
    python benchmarks/restarts.py --via cli              # hmm-em train commands instead of the DAG

The workload is ``benchmarks/spark.py``'s (categorical, K=10 states, F=20 symbols, T=100, written
once into ``--cache``), ``tol`` 0 so every iteration runs. ``--via dag`` (the default) trains
through the ``hmm_training`` DAG in local mode exactly as ``benchmarks/dag.py`` and ``make demo``
do (a real Airflow 3 under ``dag.test()``, one Spark Connect server per DAG run, local[2]);
``--via cli`` runs ``hmm-em train --engine spark --master local[2]`` (a Spark session per command).
Three ways, the same 8 candidates:

* one training with ``n_init`` restarts and the defaults (``prune_after`` 5, ``keep`` 1): each
  iteration reads the data once, for every candidate; after 5 iterations only the best goes on;
* one training with ``n_init`` restarts that never prunes (``prune_after`` beyond ``--iterations``):
  every candidate runs every iteration, the same work as the trainings one after another;
* ``n_init`` trainings with seeds ``0 .. n_init - 1``, one after another.

Each candidate of the unpruned training equals the training of the same seed, bit for bit
(``tests/training/test_candidates.py``); the script checks it on the last iteration's
parameters, and checks that the pruned training's model is one of them.
Reported: wall-clock seconds of each way (not writing the data or creating the Airflow home),
the mean E-step seconds of an iteration (COMMIT timings) and the ratios.
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


def spec(data: Path, iterations: int, seed: int, n_init: int, prune: bool) -> dict[str, Any]:
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
        raw["n_init"] = n_init
        if not prune:
            raw["prune_after"] = iterations + 1
    return raw


class CommandTrainer:
    """``hmm-em train`` commands: a Spark session of their own each."""

    def __init__(self, store: Path, master: str):
        self.store, self.master = store, master

    def __call__(self, training_id: str, raw: dict[str, Any]) -> float:
        argv = [sys.executable, "-m", "hmm.training.cli", "train", "--store", self.store.as_uri()]
        argv += ["--training-id", training_id, "--engine", "spark", "--master", self.master, "--spec", json.dumps(raw)]
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


class DagTrainer:
    """The ``hmm_training`` DAG in local mode under ``dag.test()``, as ``make demo`` runs it."""

    def __init__(self, store: Path, work: Path):
        from infra.local.dag_runner import LocalAirflow

        self.store = store
        self.airflow = LocalAirflow(work / "airflow", log_file=work / "airflow.log").start()
        log(f"Airflow home {self.airflow.home}; log {self.airflow.log_file}")

    def __call__(self, training_id: str, raw: dict[str, Any]) -> float:
        from datetime import UTC, datetime

        conf = {**raw, "store": self.store.as_uri(), "training_id": training_id, "mode": "local", "engine": "spark"}
        started = time.perf_counter()
        # A date of its own: dag.test() clears the task instances of the run's logical date.
        self.airflow.train(conf, logical_date=datetime.now(UTC), show_progress=False)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=500_000)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--via", choices=("dag", "cli"), default="dag")
    parser.add_argument("--master", default="local[2]", help="with --via cli (the DAG's local mode uses local[*])")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hmm-em-bench"))
    args = parser.parse_args()
    data = ensure_parquet(args.cache, args.sequences)
    work = args.cache / f"restarts-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    store = work / "store"
    train = DagTrainer(store, work) if args.via == "dag" else CommandTrainer(store, args.master)
    load_start = os.getloadavg()
    log(f"{cpu_model()}; load average {load_start[0]:.2f}; via {args.via}")
    pruned = train("pruned", spec(data, args.iterations, 0, args.restarts, prune=True))
    log(f"one training, pruned after 5: {pruned:.1f} s")
    together = train("together", spec(data, args.iterations, 0, args.restarts, prune=False))
    log(f"one training, never pruned: {together:.1f} s")
    separate = []
    for seed in range(args.restarts):
        separate.append(train(f"seed-{seed}", spec(data, args.iterations, seed, 1, prune=False)))
        log(f"seed {seed}: {separate[-1]:.1f} s")
    from hmm.training.commits import Training
    from hmm.training.store import open_store

    opened = open_store(store.as_uri())
    last = Training(opened, "together").record(args.iterations)["candidates"]
    alone = [Training(opened, f"seed-{seed}").record(args.iterations)["params_sha256"] for seed in range(args.restarts)]
    for seed in range(args.restarts):
        assert last[seed]["params_sha256"] == alone[seed], f"candidate {seed} differs from the training of seed {seed}"
    assert Training(opened, "pruned").record(args.iterations)["params_sha256"] in alone, "pruned model is no candidate"

    def estep(training_id: str) -> float:
        records = Training(opened, training_id).records()[1:]
        return sum(r["timings"]["estep_seconds"] for r in records) / len(records)

    separate_estep = sum(estep(f"seed-{seed}") for seed in range(args.restarts)) / args.restarts
    load = " / ".join(f"{x:.1f}" for x in (load_start[0], os.getloadavg()[0]))
    print(
        f"| way ({args.sequences:,} x 100, {args.iterations} iterations, {args.restarts} restarts, via {args.via}, "
        f"load {load}) | seconds | E-step per iteration | {args.restarts} trainings / this |"
    )
    print("|---|---:|---:|---:|")
    print(
        f"| one training, pruned after 5 (keep 1) | {pruned:.1f} | {estep('pruned'):.1f} s | "
        f"{sum(separate) / pruned:.2f}x |"
    )
    print(
        f"| one training, never pruned | {together:.1f} | {estep('together'):.1f} s | {sum(separate) / together:.2f}x |"
    )
    print(f"| {args.restarts} trainings one after another | {sum(separate):.1f} | {separate_estep:.1f} s each | 1x |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Warm start on a weekly series of drifting data: EM iterations to converge, against random starts.

Each week's data come from the previous week's HMM with its emissions and transitions nudged
(multiplicative log-normal noise, renormalised): the situation of a weekly retraining. Week 0 is
fitted from a random start; every later week is fitted twice: from last week's fitted model
(``init_params=""``: the warm start a training's ``init_from`` does) and from random starts
(seeds 0..2). Reported per week: iterations to converge (hmmlearn's rule, ``tol``), the final
log-likelihood per observation, and the drift of the warm model from last week's, per state
(:func:`hmm.core.relabel.relabel`; the warm start keeps the labels, so its order is the identity).

    python -m benchmarks.warm_start [--weeks 6] [--sequences 1000] [--length 100]
    python -m benchmarks.warm_start --trainings     # the same weeks as trainings (hmm-em train)

``--trainings``: each week's data is written as Parquet and trained as a training would be
weekly (``hmm-em train --engine local``, ``tol`` as above, ``max_iter`` 2000): the warm chain
with ``init_from: "latest"`` in a store of its own (week 0 finds no model and starts at random;
every later week starts from the model the previous week published and is relabelled to it at
finalize), the random starts as trainings with seeds 0-2 in another store. Reported per week:
iterations (COMMITs after the initial one), the final log-likelihood per observation, the
permutation finalize found and the largest per-state emission drift it recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import hmm
from hmm.core.relabel import relabel

N_STATES, N_SYMBOLS = 6, 30


def drift(model: hmm.CategoricalHMM, rng: np.random.Generator, scale: float) -> hmm.CategoricalHMM:
    nudged = copy.deepcopy(model)
    for name in ("transmat_", "emissionprob_"):
        value = getattr(model, name) * np.exp(scale * rng.normal(size=getattr(model, name).shape))
        setattr(nudged, name, value / value.sum(axis=1, keepdims=True))
    return nudged


def first_truth(rng: np.random.Generator) -> hmm.CategoricalHMM:
    truth = hmm.CategoricalHMM(N_STATES, n_features=N_SYMBOLS)
    truth.startprob_ = rng.dirichlet(np.ones(N_STATES))
    transmat = rng.dirichlet(np.ones(N_STATES), size=N_STATES) + 4 * np.eye(N_STATES)
    truth.transmat_ = transmat / transmat.sum(axis=1, keepdims=True)
    truth.emissionprob_ = rng.dirichlet(np.full(N_SYMBOLS, 0.3), size=N_STATES)
    return truth


def fit(X: np.ndarray, lengths: list[int], tol: float, start: hmm.CategoricalHMM | None, seed: int = 0):
    settings = dict(n_features=N_SYMBOLS, n_iter=2000, tol=tol)
    if start is None:
        return hmm.CategoricalHMM(N_STATES, random_state=seed, **settings).fit(X, lengths)
    model = hmm.CategoricalHMM(N_STATES, init_params="", **settings)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        setattr(model, name, getattr(start, name).copy())
    return model.fit(X, lengths)


def drifting_weeks(args: argparse.Namespace):
    """(week, observations) of each week: the truth drifts from one week to the next."""
    rng = np.random.default_rng(0)
    truth = first_truth(rng)
    for week in range(args.weeks):
        X, _ = truth.sample(args.sequences * args.length, random_state=week)
        yield week, X
        truth = drift(truth, rng, args.drift)


def write_week(folder: Path, X: np.ndarray, lengths: list[int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    sequences = pa.ListArray.from_arrays(pa.array(offsets), pa.array(X.ravel().astype(np.int64)))
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table({"id": pa.array(np.arange(len(lengths), dtype=np.int64)), "sequence": sequences}),
        folder / "part-00000.parquet",
    )
    return folder


def train(store: Path, training_id: str, data: Path, tol: float, seed: int, warm: bool) -> dict:
    """One training to convergence with ``hmm-em train``; its last COMMIT and finalize's relabelling."""
    from hmm.training.commits import Training
    from hmm.training.store import open_store

    raw: dict = {
        "model": "categorical",
        "n_components": N_STATES,
        "data": data.as_uri(),
        "id_col": "id",
        "tol": tol,
        "max_iter": 2000,
        "seed": seed,
        "model_args": {"n_features": N_SYMBOLS},
    }
    if warm:
        raw["init_from"] = "latest"
    argv = [sys.executable, "-m", "hmm.training.cli", "train", "--store", store.as_uri(), "--training-id", training_id]
    subprocess.run([*argv, "--engine", "local", "--spec", json.dumps(raw)], check=True, stdout=subprocess.DEVNULL)
    training = Training(open_store(store.as_uri()), training_id)
    latest = training.latest()
    assert latest is not None
    return {"iterations": latest, "record": training.record(latest), "published": training.published()}


def published_report(published: dict | None) -> dict:
    """The report.json of a published model (its marker names report.md beside it)."""
    from urllib.parse import urlparse

    if not published:
        return {}
    return json.loads((Path(urlparse(published["report"]).path).parent / "report.json").read_text())


def trainings(args: argparse.Namespace) -> None:
    lengths = [args.length] * args.sequences
    root = Path(tempfile.mkdtemp(prefix="warm-start-"))
    print(
        "| week | warm training: iterations | random trainings (seeds 0-2): iterations | warm log L / obs "
        "| best random log L / obs | permutation found at finalize |"
    )
    print("|---|---|---|---|---|---|")
    for week, X in drifting_weeks(args):
        data = write_week(root / f"data-week-{week}", X, lengths)
        warm = train(root / "warm", f"week-{week}", data, args.tol, 0, warm=True)
        randoms = [train(root / "random", f"week-{week}-seed-{seed}", data, args.tol, seed, False) for seed in range(3)]
        n_obs = X.shape[0]

        def per_observation(result: dict, n_obs: int = n_obs) -> float:
            return result["record"]["log_likelihood"] / n_obs

        rows = published_report(warm["published"]).get("relabelling")
        found = "-"
        if rows:
            order = [row["was"] for row in rows]
            drift_max = max(row["emission_divergence"] for row in rows if row["emission_divergence"] is not None)
            found = f"{'identity' if order == sorted(order) else order}, largest emission drift {drift_max:.4f}"
        print(
            f"| {week} | {warm['iterations'] if week else '(random) ' + str(warm['iterations'])} "
            f"| {', '.join(str(r['iterations']) for r in randoms)} | {per_observation(warm):.4f} "
            f"| {max(per_observation(r) for r in randoms):.4f} | {found} |"
        )
    print(f"(stores under {root})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--drift", type=float, default=0.15, help="log-normal scale of the weekly nudge")
    parser.add_argument("--tol", type=float, default=0.1)
    parser.add_argument(
        "--trainings", action="store_true", help="each week as hmm-em trainings (warm: init_from latest)"
    )
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(
        f"commit {commit}, load average {os.getloadavg()[0]:.2f}; K={N_STATES}, {N_SYMBOLS} symbols, "
        f"{args.sequences} x {args.length} per week, drift {args.drift}, tol {args.tol}"
    )
    if args.trainings:
        trainings(args)
        return
    lengths = [args.length] * args.sequences
    previous = None
    print(
        "| week | warm: iterations | random (seeds 0-2): iterations | warm log L / obs | best random log L / obs "
        "| warm drift: max state emission JS | max transition row change |"
    )
    print("|---|---|---|---|---|---|---|")
    for week, X in drifting_weeks(args):
        randoms = [fit(X, lengths, args.tol, None, seed) for seed in range(3)]
        n_obs = len(X)
        best_random = max(model.monitor_.history[-1] for model in randoms) / n_obs
        random_iterations = ", ".join(str(model.monitor_.iter) for model in randoms)
        if previous is None:
            previous = max(randoms, key=lambda model: model.monitor_.history[-1])
            print(f"| {week} | - | {random_iterations} | - | {best_random:.4f} | - | - |")
        else:
            warm = fit(X, lengths, args.tol, previous)
            moved = relabel(copy.deepcopy(warm), previous)
            print(
                f"| {week} | {warm.monitor_.iter} | {random_iterations} | {warm.monitor_.history[-1] / n_obs:.4f} "
                f"| {best_random:.4f} | {max(d for d in moved.emission_divergence if d is not None):.4f} "
                f"| {max(c for c in moved.transition_change if c is not None):.4f} |"
            )
            previous = warm


if __name__ == "__main__":
    main()

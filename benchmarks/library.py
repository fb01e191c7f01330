"""Seconds per EM iteration: hmm-em against hmmlearn 0.3.3, single-threaded.

Run by hand (``python benchmarks/library.py [--quick]``); prints a Markdown
table. Both libraries fit the same data from the same explicit initial
parameters (``init_params=""``, ``tol=-inf``) for a fixed number of
iterations, so every iteration does the same work; the time of ``fit``
divided by the number of iterations is reported (so it includes the
per-fit validation, as a user sees it). hmm-em is timed after a warm-up fit
(numba compiles or loads its cache once per process). The best of three
fits is kept for hmm-em and for hmmlearn's scaling implementation (two and
one with ``--quick``); hmmlearn's log implementation is slow and gets one
fit of one iteration.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Single thread everywhere, before numpy / numba are imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hmm, installed or not

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from hmmlearn import hmm as hmmlearn_hmm  # noqa: E402

import hmm  # noqa: E402


@dataclass
class Case:
    """One benchmark: a model family, its size and how to make data and parameters."""

    label: str
    class_name: str  # the same name in hmm and in hmmlearn.hmm
    n_components: int
    n_sequences: int
    length: int
    # (rng, n_components, (n_sequences, length)) -> (X, initial parameters, constructor options)
    make: Callable[[np.random.Generator, int, tuple[int, int]], tuple[np.ndarray, dict[str, Any], dict[str, Any]]]


def _chain(rng: np.random.Generator, startprob: np.ndarray, transmat: np.ndarray, n_sequences: int, length: int):
    """State paths of all sequences, drawn together frame by frame: (n_sequences * length,)."""
    states = np.empty((n_sequences, length), dtype=np.int64)
    states[:, 0] = (rng.random(n_sequences)[:, None] > np.cumsum(startprob)).sum(axis=1)
    cdf = np.cumsum(transmat, axis=1)
    for t in range(1, length):
        states[:, t] = (rng.random(n_sequences)[:, None] > cdf[states[:, t - 1]]).sum(axis=1)
    return np.minimum(states, len(startprob) - 1).ravel()


def _start_and_transitions(rng: np.random.Generator, n_components: int) -> dict[str, Any]:
    transmat = rng.dirichlet(np.ones(n_components), size=n_components) + 4 * np.eye(n_components)
    return {
        "startprob_": rng.dirichlet(np.ones(n_components)),
        "transmat_": transmat / transmat.sum(axis=1, keepdims=True),
    }


def _categorical(n_features: int):
    def make(rng, n_components, shape):
        true = _start_and_transitions(rng, n_components)
        emissionprob = rng.dirichlet(np.full(n_features, 0.3), size=n_components)
        states = _chain(rng, true["startprob_"], true["transmat_"], *shape)
        cdf = np.cumsum(emissionprob, axis=1)
        X = np.minimum((rng.random(states.shape[0])[:, None] > cdf[states]).sum(axis=1), n_features - 1)
        start = _start_and_transitions(rng, n_components)
        start["emissionprob_"] = rng.dirichlet(np.ones(n_features), size=n_components)
        return X[:, None], start, {"n_features": n_features}

    return make


def _gaussian(n_features: int, covariance_type: str = "diag"):
    def make(rng, n_components, shape):
        true = _start_and_transitions(rng, n_components)
        states = _chain(rng, true["startprob_"], true["transmat_"], *shape)
        means = rng.normal(0, 3, size=(n_components, n_features))
        X = means[states] + rng.normal(size=(states.shape[0], n_features))
        start = _start_and_transitions(rng, n_components)
        start["means_"] = means + rng.normal(0, 1, size=means.shape)
        if covariance_type == "full":
            start["covars_"] = np.tile(1.5 * np.eye(n_features), (n_components, 1, 1))
        else:
            start["covars_"] = np.full((n_components, n_features), 1.5)
        return X, start, {"covariance_type": covariance_type}

    return make


def _gmm(n_features: int, n_mix: int):
    """Diagonal mixtures (GMMHMM's default covariance type) of ``n_mix`` components per state."""

    def make(rng, n_components, shape):
        true = _start_and_transitions(rng, n_components)
        states = _chain(rng, true["startprob_"], true["transmat_"], *shape)
        means = rng.normal(0, 3, size=(n_components, n_mix, n_features))
        mix = rng.integers(0, n_mix, states.shape[0])
        X = means[states, mix] + rng.normal(size=(states.shape[0], n_features))
        start = _start_and_transitions(rng, n_components)
        start["weights_"] = rng.dirichlet(np.full(n_mix, 5.0), size=n_components)
        start["means_"] = means + rng.normal(0, 0.5, size=means.shape)
        start["covars_"] = np.full((n_components, n_mix, n_features), 1.5)
        return X, start, {"n_mix": n_mix}

    return make


def _poisson(n_features: int):
    def make(rng, n_components, shape):
        true = _start_and_transitions(rng, n_components)
        states = _chain(rng, true["startprob_"], true["transmat_"], *shape)
        lambdas = rng.uniform(0.5, 20, size=(n_components, n_features))
        X = rng.poisson(lambdas[states]).astype(np.int64)
        start = _start_and_transitions(rng, n_components)
        start["lambdas_"] = lambdas * rng.uniform(0.7, 1.3, size=lambdas.shape)
        return X, start, {}

    return make


CASES = [
    Case("categorical K=10 F=20", "CategoricalHMM", 10, 4000, 100, _categorical(20)),
    Case("categorical K=30 F=20", "CategoricalHMM", 30, 1000, 100, _categorical(20)),
    Case("Gaussian diag K=10 D=5", "GaussianHMM", 10, 2000, 100, _gaussian(5)),
    Case("Gaussian full K=10 D=5", "GaussianHMM", 10, 2000, 100, _gaussian(5, "full")),
    Case("Poisson K=5 D=3", "PoissonHMM", 5, 2000, 100, _poisson(3)),
    Case("GMM diag K=5 n_mix=3 D=3", "GMMHMM", 5, 2000, 100, _gmm(3, 3)),
]


# Wall-clock seconds by default; --clock cpu takes the CPU seconds of this thread instead (both libraries
# run single-threaded), which the other processes of a shared machine inflate far less than wall time.
_clock: Callable[[], float] = time.perf_counter


def _fit_seconds(cls: type, case: Case, X, lengths, start: dict[str, Any], options: dict[str, Any], n_iter: int, **kw):
    model = cls(case.n_components, n_iter=n_iter, tol=-np.inf, init_params="", **options, **kw)
    for name, value in start.items():
        setattr(model, name, np.array(value, copy=True))
    started = _clock()
    model.fit(X, lengths)
    return (_clock() - started) / n_iter


def run_case(case: Case, quick: bool) -> dict[str, Any]:
    n_sequences = case.n_sequences // 10 if quick else case.n_sequences
    rng = np.random.default_rng(0)
    X, start, options = case.make(rng, case.n_components, (n_sequences, case.length))
    lengths = np.full(n_sequences, case.length)
    row: dict[str, Any] = {"case": case, "data": f"{n_sequences} x {case.length}"}
    ours = getattr(hmm, case.class_name, None)
    if ours is None:
        row["hmm-em"] = None
    else:
        # warm-up: compiles (or loads the numba cache) outside the timing
        _fit_seconds(ours, case, X[: 10 * case.length], lengths[:10], start, options, 1)
        row["hmm-em"] = min(_fit_seconds(ours, case, X, lengths, start, options, 5) for _ in range(2 if quick else 3))
    theirs = getattr(hmmlearn_hmm, case.class_name)
    # the best of three fits as for hmm-em: a single fit's time moved by 10% between runs here
    row["scaling"] = min(
        _fit_seconds(theirs, case, X, lengths, start, options, 1 if quick else 2, implementation="scaling")
        for _ in range(1 if quick else 3)
    )
    row["log"] = _fit_seconds(theirs, case, X, lengths, start, options, 1, implementation="log")
    return row


def checkout() -> str:
    """The measured code: this checkout's commit, marked when it has uncommitted changes (hmm.__version__ is
    the commit the package was last installed from, which an editable install does not update)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"hmm-em {hmm.__version__} (no git checkout)"
    return f"hmm-em at {commit}" + (" with uncommitted changes" if changes else "")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import hmmlearn

    return (
        f"{cpu}, {os.cpu_count()} cores (benchmarks use 1 thread); Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}, hmmlearn {hmmlearn.__version__}, {checkout()}"
    )


def _seconds(value: float | None) -> str:
    return "not available" if value is None else f"{value:.4f}"


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{a:.2f}" for a in averages)


def _ratio(theirs: float, ours: float | None) -> str:
    return "-" if ours is None else f"{theirs / ours:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, fewer repetitions")
    parser.add_argument("--only", default="", help="run the cases whose label contains this text (e.g. GMM)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock seconds, or this thread's CPU seconds (steadier on a loaded machine)",
    )
    args = parser.parse_args()
    global _clock
    _clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    logging.disable(logging.WARNING)  # hmmlearn's convergence chatter
    warnings.simplefilter("ignore")
    load_before = os.getloadavg()
    rows = [run_case(case, args.quick) for case in CASES if args.only in case.label]
    load_after = os.getloadavg()
    print(f"Machine: {machine()}\n")
    print(f"Load average (1, 5, 15 min): {_load(load_before)} at the start, {_load(load_after)} at the end\n")
    clock = "CPU seconds of the thread" if args.clock == "cpu" else "Seconds"
    print(f"{clock} per EM iteration (fit from fixed initial parameters, single thread):\n")
    print(
        "| model | sequences x length | hmm-em | hmmlearn scaling | hmmlearn log "
        "| speed-up vs scaling | speed-up vs log |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['case'].label} | {row['data']} | {_seconds(row['hmm-em'])} | {row['scaling']:.4f} "
            f"| {row['log']:.4f} | {_ratio(row['scaling'], row['hmm-em'])} | {_ratio(row['log'], row['hmm-em'])} |"
        )


if __name__ == "__main__":
    main()

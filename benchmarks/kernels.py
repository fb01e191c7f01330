"""The categorical E-step kernel of this checkout against another revision's, in one process.

Run by hand (``python benchmarks/kernels.py [--against REV] [--case LABEL] [--reps N]``). On this
shared 2-core VM the same kernel's time moves by 10-20% between processes, more than most
changes to a kernel are worth, so both versions run in the same process, one call after the
other, and the minimum of many calls is compared. ``hmm/core/kernels`` of ``REV`` (default
``HEAD``) is exported with ``git show`` into a temporary package (its imports renamed), next to
the working tree's; a child process compiles both into numba's on-disk cache, and this process
loads them from there, as a user's process does (see :func:`main`). Both run
``categorical_forward_backward`` over the library benchmark's data (``benchmarks/library.py``'s
case, in the batches of 65,536 frames the model uses) and must give the same statistics up to
rounding (the largest relative difference is printed: 0.0 means the same bits).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import argparse  # noqa: E402
import importlib  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from types import ModuleType  # noqa: E402

import library  # noqa: E402
import numpy as np  # noqa: E402

KERNELS = "hmm/core/kernels"


def export(revision: str, name: str, folder: Path) -> None:
    """``hmm/core/kernels`` of ``revision`` (``WORKTREE``: the files on disk) as package ``name`` in ``folder``."""
    package = folder / name
    package.mkdir()
    if revision == "WORKTREE":
        files = {path.name: path.read_text() for path in (ROOT / KERNELS).glob("*.py")}
    else:
        listing = subprocess.run(
            ["git", "ls-tree", "--name-only", f"{revision}:{KERNELS}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        files = {
            file: subprocess.run(
                ["git", "show", f"{revision}:{KERNELS}/{file}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
            for file in listing
            if file.endswith(".py")
        }
    for file, text in files.items():
        # the lane vector types are registered by name: each copy needs its own
        text = (
            text.replace("hmm.core.kernels.", f"{name}.")
            .replace('name=f"LaneVector(', f'name=f"LaneVector_{name}(')
            .replace('name="HalfVector(', f'name="HalfVector_{name}(')
        )
        (package / file).write_text(text)


def e_step_data(label: str):
    """Case ``label`` of the library benchmark (categorical): case, start parameters, symbols, offsets, table."""
    case = next(c for c in library.CASES if c.label.startswith(label) and c.class_name == "CategoricalHMM")
    rng = np.random.default_rng(0)
    X, start, _ = case.make(rng, case.n_components, (case.n_sequences, case.length))
    symbols = np.ascontiguousarray(X[:, 0]).astype(np.int64)
    offsets = np.arange(0, symbols.shape[0] + 1, case.length, dtype=np.int64)
    return case, start, symbols, offsets, np.ascontiguousarray(start["emissionprob_"].T)


def e_step(kernels: ModuleType, data) -> list[np.ndarray]:
    """One E-step of ``kernels`` over the data, in the batches of 65,536 frames the model uses."""
    case, start, symbols, offsets, by_symbol = data
    n_states = case.n_components
    per_batch = 65_536 // case.length
    log_likelihoods = np.empty(offsets.shape[0] - 1)
    start_counts, trans_counts = np.zeros(n_states), np.zeros((n_states, n_states))
    counts = np.zeros(by_symbol.shape)
    for s0 in range(0, offsets.shape[0] - 1, per_batch):
        s1 = min(s0 + per_batch, offsets.shape[0] - 1)
        failed = kernels.categorical_forward_backward(
            start["startprob_"],
            start["transmat_"],
            by_symbol,
            symbols[offsets[s0] : offsets[s1]],
            offsets[s0 : s1 + 1] - offsets[s0],
            log_likelihoods[s0:s1],
            start_counts,
            trans_counts,
            counts,
        )
        assert failed[0] < 0
    return [log_likelihoods, start_counts, trans_counts, counts]


VERSIONS = ("kernels_against", "kernels_worktree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision to compare the working tree with")
    parser.add_argument("--case", default="categorical K=10", help="a categorical case of benchmarks/library.py")
    parser.add_argument("--reps", type=int, default=40, help="timed calls of each version")
    parser.add_argument("--compile-only", metavar="FOLDER", help=argparse.SUPPRESS)  # the child process below
    args = parser.parse_args()
    data = e_step_data(args.case)
    if args.compile_only:
        sys.path.insert(0, args.compile_only)
        for name in VERSIONS:
            e_step(importlib.import_module(name), data)
        return
    with tempfile.TemporaryDirectory() as folder:
        export(args.against, VERSIONS[0], Path(folder))
        export("WORKTREE", VERSIONS[1], Path(folder))
        # Users run the kernels from numba's on-disk cache, and a kernel loaded from it can run
        # at another speed than the same kernel compiled in the running process (a cached
        # caller runs its own linked copies of the callees: seen 4.4 ms compiled, 5.8 ms cached
        # for the same source). So a child process compiles both versions into their caches
        # and this one loads them from there, as a user's process does.
        subprocess.run([sys.executable, __file__, "--compile-only", folder, "--case", args.case], check=True)
        sys.path.insert(0, folder)
        versions = {
            args.against: importlib.import_module(VERSIONS[0]),
            "working tree": importlib.import_module(VERSIONS[1]),
        }
        results = {label: e_step(module, data) for label, module in versions.items()}
        first, second = results.values()
        difference = max(
            float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300))) for a, b in zip(first, second, strict=True)
        )
        times: dict[str, list[float]] = {label: [] for label in versions}
        for _ in range(args.reps):
            for label, module in versions.items():
                began = time.thread_time()
                e_step(module, data)
                times[label].append(time.thread_time() - began)
    case = data[0]
    print(f"{case.label}, {case.n_sequences} x {case.length}, {args.reps} calls each, interleaved; CPU ms per E-step")
    print(f"largest relative difference of the statistics: {difference:.3g}")
    for label, values in times.items():
        ordered = sorted(values)
        print(f"{label:>14}: min {ordered[0] * 1e3:.2f}  median {ordered[len(ordered) // 2] * 1e3:.2f}")


if __name__ == "__main__":
    main()

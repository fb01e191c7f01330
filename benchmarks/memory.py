"""Peak memory of a large fit: CategoricalHMM, K=10 states, F=20 symbols.

Run by hand (``python benchmarks/memory.py [--sequences N] [--length T]``).
The fit runs in a fresh child process so that nothing else (this script,
earlier imports, a previous fit) counts towards its peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``). The default is 10 million
observations (100,000 sequences x 100), whose symbols alone are 80 MB as
int64; working memory is bounded by ``frames_per_batch`` whatever the size
of the data. Target: well under 2 GB.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hmm, installed or not

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

N_COMPONENTS = 10
N_FEATURES = 20
N_ITER = 2


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(n_sequences: int, length: int) -> dict[str, float]:
    """The measured process: import, make the data, fit; report the peaks."""
    import numpy as np

    import hmm

    after_import = _peak_mb()
    rng = np.random.default_rng(0)
    X = rng.integers(0, N_FEATURES, size=(n_sequences * length, 1), dtype=np.int64)
    lengths = np.full(n_sequences, length)
    after_data = _peak_mb()
    model = hmm.CategoricalHMM(N_COMPONENTS, n_features=N_FEATURES, n_iter=N_ITER, tol=-np.inf, init_params="")
    model.startprob_ = rng.dirichlet(np.ones(N_COMPONENTS))
    model.transmat_ = rng.dirichlet(np.ones(N_COMPONENTS), size=N_COMPONENTS)
    model.emissionprob_ = rng.dirichlet(np.ones(N_FEATURES), size=N_COMPONENTS)
    started = time.perf_counter()
    model.fit(X, lengths)
    return {
        "after_import_mb": after_import,
        "after_data_mb": after_data,
        "peak_mb": _peak_mb(),
        "seconds_per_iteration": (time.perf_counter() - started) / N_ITER,
        "data_mb": X.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.sequences, args.length)))
        return
    command = [sys.executable, __file__, "--child", "--sequences", str(args.sequences), "--length", str(args.length)]
    # once to compile (or load) the numba cache, once to measure
    subprocess.run([*command[:-4], "--sequences", "10", "--length", "10"], check=True, capture_output=True)
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    n = args.sequences * args.length
    print(
        f"CategoricalHMM K={N_COMPONENTS} F={N_FEATURES}, {args.sequences} sequences x {args.length} "
        f"= {n:,} observations ({result['data_mb']:.0f} MB of int64 symbols), {N_ITER} EM iterations"
    )
    print(f"peak RSS after imports:     {result['after_import_mb']:8.0f} MB")
    print(f"peak RSS after making data: {result['after_data_mb']:8.0f} MB")
    print(f"peak RSS of the whole fit:  {result['peak_mb']:8.0f} MB  (target < 2048 MB)")
    print(f"fit growth over the data:   {result['peak_mb'] - result['after_data_mb']:8.0f} MB")
    print(f"seconds per iteration:      {result['seconds_per_iteration']:8.2f}")


if __name__ == "__main__":
    main()

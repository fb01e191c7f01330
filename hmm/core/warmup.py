"""Compile every kernel once, into numba's cache: ``python -m hmm.core.warmup``.

The kernels are compiled on first use per argument types and cached on disk
(``cache=True``), in ``__pycache__`` beside the source or in
``$NUMBA_CACHE_DIR``. A process that finds no cache compiles for tens of
seconds: every EMR step would, because each is a new process on a fresh
node. The cluster's bootstrap action runs this module once per node after
installing the wheel, with the ``NUMBA_CACHE_DIR`` the steps use.

It fits, scores and decodes a tiny model of every kind (every covariance
type), on writable and read-only data, and runs the E-step on a batch as
the Spark executors do, which calls each kernel with the argument types
real data gives it.
"""

from __future__ import annotations

import time

import numpy as np

from hmm.core.categorical import CategoricalHMM
from hmm.core.gaussian import GaussianHMM
from hmm.core.gmm import GMMHMM
from hmm.core.poisson import PoissonHMM
from hmm.core.sequences import offsets_from_lengths

COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")


def _exercise(model, X: np.ndarray, lengths: np.ndarray) -> None:
    # Arrow hands the Spark E-step read-only arrays, a type of their own to numba.
    read_only = X.copy()
    read_only.setflags(write=False)
    model.fit(read_only, lengths)
    model.fit(X, lengths)
    model.score(X, lengths)
    model.predict_proba(X, lengths)
    model.predict_filtered_proba(read_only, lengths)  # a decode's executors read Arrow's arrays
    model.decode(X, lengths, algorithm="viterbi")
    model.decode(X, lengths, algorithm="map")
    # A Spark E-step hands each batch to the kernels as check_batch leaves it, where fit narrows
    # categorical symbols to uint8 first: the kernels for the batches' own types too.
    offsets = offsets_from_lengths(lengths, X.shape[0])
    for data in (read_only, X):
        model.batch_statistics(model.check_batch(data, offsets), offsets)


def warm_up() -> list[str]:
    """Run every kernel once; the names of the models exercised."""
    rng = np.random.default_rng(0)
    lengths = np.array([5, 7, 3])
    n_frames = int(lengths.sum())
    models: list[tuple[str, object, np.ndarray]] = [
        ("categorical", CategoricalHMM(2, n_iter=2, random_state=0), rng.integers(0, 3, (n_frames, 1))),
        # the kernels read uint8 symbols as they are: what the Spark split cache hands the executors
        ("categorical uint8", CategoricalHMM(2, n_iter=2, random_state=0), rng.integers(0, 3, (n_frames, 1), np.uint8)),
        ("poisson", PoissonHMM(2, n_iter=2, random_state=0), rng.poisson(3.0, (n_frames, 2))),
    ]
    continuous = rng.normal(size=(n_frames, 2))
    for covariance_type in COVARIANCE_TYPES:
        models.append(
            (f"gaussian {covariance_type}", GaussianHMM(2, covariance_type, n_iter=2, random_state=0), continuous)
        )
        models.append(
            (
                f"gmm {covariance_type}",
                GMMHMM(2, 2, covariance_type=covariance_type, n_iter=2, random_state=0),
                continuous,
            )
        )
    for _, model, X in models:
        _exercise(model, X, lengths)
    return [name for name, _, _ in models]


def main() -> None:
    started = time.perf_counter()
    names = warm_up()
    print(f"hmm-em kernels compiled and cached for {', '.join(names)} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

"""The E-step over a Spark DataFrame of sequences (pyspark is imported lazily).

One row per sequence, the observations in one array column (``sequence`` by
default). ``mapInArrow`` hands each Python worker Arrow record batches; a
batch's list offsets are exactly the ``X, lengths`` layout of the in-memory
library, so each batch is one call of the same compiled E-step
(:meth:`BaseHMM._batch_statistics`) and yields one small serialised
:class:`SufficientStats` record. The driver sorts the records by (partition,
batch) and adds them in that order, so re-running on the same input gives
bit-identical statistics, then runs the M-step.

Column types: categorical ``array<int>`` (or bigint); Poisson
``array<array<int>>``; Gaussian and GMM ``array<array<double>>`` (T x D). A
one-dimensional ``array<double>`` (or ``array<int>`` for Poisson) is read as
D = 1.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .sequences import InvalidSequenceError
from .stats import SufficientStats

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from .base import BaseHMM

RECORD_SCHEMA = "partition int, batch int, n_sequences long, error string, stats binary"
#: How many sequences ``fit`` collects to the driver for data-dependent
#: initialisation (k-means means, Poisson moments); categorical models take
#: ``n_features`` from an exact aggregate instead.
INIT_SAMPLE_SEQUENCES = 10_000


def is_dataframe(X: Any) -> bool:
    """True for a Spark DataFrame (classic or Connect) without importing pyspark."""
    return any(c.__module__.startswith("pyspark.sql") and c.__name__ == "DataFrame" for c in type(X).__mro__)


def arrow_sequences(column: pa.Array | pa.ChunkedArray, symbols: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(X, offsets)`` of an Arrow list column, zero-copy where Arrow allows.

    ``symbols``: one integer per frame (categorical); otherwise frames are
    vectors (a list per frame) or scalars (read as D = 1).
    """
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise InvalidSequenceError(f"the sequence column must be an array column, got type {column.type}")
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidSequenceError(f"sequence {first}: the sequence is null (every row needs an array of observations)")
    offsets = column.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    empty = np.flatnonzero(np.diff(offsets) == 0)
    if empty.size:
        raise InvalidSequenceError(
            f"sequence {empty[0]}: the sequence is empty (every sequence needs at least one observation; "
            f"{empty.size} sequence(s) in this batch break this)"
        )
    frames = column.flatten()
    nested = pa.types.is_list(frames.type) or pa.types.is_large_list(frames.type)
    if symbols and nested:
        raise InvalidSequenceError(f"a categorical sequence column must be array<int>, got {column.type}")
    if nested:
        widths = frames.value_lengths().to_numpy(zero_copy_only=False)
        if widths.size and (frames.null_count or np.any(widths != widths[0])):
            bad = int(np.flatnonzero(frames.is_null().to_numpy(zero_copy_only=False) | (widths != widths[0]))[0])
            sequence = int(np.searchsorted(offsets, bad, side="right") - 1)
            raise InvalidSequenceError(
                f"sequence {sequence}, position {bad - offsets[sequence]}: observation has "
                f"{0 if frames[bad].as_py() is None else widths[bad]} features but the first has {widths[0]} "
                "(every observation needs the same number of features)"
            )
        values = frames.flatten()
        width = int(widths[0]) if widths.size else 0
    else:
        values, width = frames, 1
    if values.null_count:
        bad = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // max(width, 1)
        sequence = int(np.searchsorted(offsets, bad, side="right") - 1)
        raise InvalidSequenceError(
            f"sequence {sequence}, position {bad - offsets[sequence]}: observation is null "
            "(observations must be numbers)"
        )
    X = values.to_numpy(zero_copy_only=False)
    return (X if symbols else X.reshape(-1, width)), offsets


def _check_batch(model: BaseHMM, X: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    observations = model._as_observations(X)
    model._check_values(observations, offsets)
    model._check_observations(observations, offsets)
    return observations


def _locate_error(error: Exception, partition: int, batch: int, ids: list[Any] | None) -> str:
    """Prefix a batch-local error with where the batch is, and the row's id if known."""
    message = str(error)
    match = re.match(r"sequence (\d+)", message)
    if match and ids is not None:
        message = f"sequence id={ids[int(match.group(1))]!r}" + message[match.end() :]
    return f"partition {partition}, batch {batch}: {message}"


def _statistics_records(
    model: BaseHMM, sequence_col: str, id_col: str | None
) -> Any:  # the mapInArrow function, run on the executors
    symbols = model._observation_kind == "symbol"

    def records(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        for index, batch in enumerate(batches):
            if batch.num_rows == 0:
                continue
            error, payload, n_sequences = None, None, batch.num_rows
            try:
                X, offsets = arrow_sequences(batch.column(sequence_col), symbols)
                payload = model._batch_statistics(_check_batch(model, X, offsets), offsets).to_bytes()
            except ValueError as exc:
                ids = batch.column(id_col).to_pylist() if id_col else None
                error = _locate_error(exc, partition, index, ids)
            yield pa.RecordBatch.from_pylist(
                [
                    {
                        "partition": partition,
                        "batch": index,
                        "n_sequences": n_sequences,
                        "error": error,
                        "stats": payload,
                    }
                ],
                schema=pa.schema(
                    [
                        ("partition", pa.int32()),
                        ("batch", pa.int32()),
                        ("n_sequences", pa.int64()),
                        ("error", pa.string()),
                        ("stats", pa.binary()),
                    ]
                ),
            )

    return records


def e_step(model: BaseHMM, df: DataFrame, sequence_col: str = "sequence", id_col: str | None = None) -> SufficientStats:
    """Expected counts over every row of ``df``: one record per Arrow batch, summed in order."""
    columns = [sequence_col] + ([id_col] if id_col else [])
    rows = df.select(*columns).mapInArrow(_statistics_records(model, sequence_col, id_col), RECORD_SCHEMA).collect()
    rows.sort(key=lambda row: (row["partition"], row["batch"]))
    errors = [row["error"] for row in rows if row["error"]]
    if errors:
        more = f" ({len(errors) - 1} more batch(es) have errors)" if len(errors) > 1 else ""
        raise InvalidSequenceError(errors[0] + more)
    total = model._empty_stats()
    for row in rows:
        total += SufficientStats.from_bytes(row["stats"])
    return total


def collect_sample(df: DataFrame, sequence_col: str, symbols: bool, n_sequences: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_sequences`` rows as ``(X, offsets)`` on the driver."""
    table = df.select(sequence_col).limit(n_sequences).toArrow()
    return arrow_sequences(table.column(sequence_col), symbols)


def fit_dataframe(model: BaseHMM, df: DataFrame, sequence_col: str = "sequence") -> BaseHMM:
    """``model.fit`` on a DataFrame: the EM loop on the driver, E-steps on Spark."""
    from pyspark import StorageLevel
    from pyspark.sql import functions

    model._check_settings()
    data = df.select(sequence_col).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        symbols = model._observation_kind == "symbol"
        if symbols and getattr(model, "n_features", None) is None:
            largest = data.select(functions.max(functions.array_max(sequence_col))).collect()[0][0]
            model.n_features = int(largest) + 1
        X, offsets = collect_sample(data, sequence_col, symbols, INIT_SAMPLE_SEQUENCES)
        X = model._as_observations(X)
        model._check_values(X, offsets)
        model._init(X, np.diff(offsets))
        model._check()
        model.monitor_._reset()
        for _ in range(model.n_iter):
            started = time.perf_counter()
            stats = e_step(model, data, sequence_col)
            model._m_step(stats)
            model.monitor_.report(stats.log_likelihood, time.perf_counter() - started)
            if model.monitor_.converged:
                break
    finally:
        data.unpersist()
    return model


def score_dataframe(model: BaseHMM, df: DataFrame, sequence_col: str = "sequence") -> float:
    """Log-likelihood of every sequence of ``df`` under ``model``."""
    model._check()
    return e_step(model, df, sequence_col).log_likelihood

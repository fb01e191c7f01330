"""The E-step and decoding over a Spark DataFrame of sequences (pyspark is imported lazily).

One row per sequence, the observations in one array column (``sequence`` by
default). ``mapInArrow`` hands each Python worker Arrow record batches; a
batch's list offsets are exactly the ``X, lengths`` layout of the in-memory
library, so each batch is one call of the same compiled E-step
(:meth:`BaseHMM._batch_statistics`) and yields one small serialised
:class:`SufficientStats` record. The driver sorts the records by (partition,
batch) and adds them in that order, so re-running on the same input gives
bit-identical statistics, then runs the M-step.

Decoding (``predict``, ``predict_proba``, ``score_samples``, ``predict_filtered_proba`` and
``transform`` on a DataFrame: :func:`transform_dataframe`) is one ``mapInArrow`` too: each batch
comes back with new columns, computed by :meth:`BaseHMM.infer_batch`, the same code as the
library's methods, so each value equals theirs bit for bit.

Runs on Spark 3.5 (EMR 7) and 4.x: it uses only DataFrame methods that both
have (``mapInArrow``, ``limit``, ``collect``); ``make test`` runs its tests on
both.

Column types: categorical ``array<int>`` (or bigint) or ``array<string>`` (named symbols: the
vocabulary is the model's ``symbols``, or the column's distinct strings, sorted, from an exact
pass over all rows before the first iteration); Poisson
``array<array<int>>``; Gaussian and GMM ``array<array<double>>`` (T x D). A
one-dimensional ``array<double>`` (or ``array<int>`` for Poisson) is read as
D = 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.core.limits import INIT_SAMPLE_SEQUENCES, max_model_bytes
from hmm.core.sequences import InvalidSequenceError
from hmm.core.stats import SufficientStats
from hmm.distributed.arrow import (
    RECORD_DDL,
    arrow_sequences,
    batch_record,
    inference_arrays,
    locate_error,
    record_schema,
    sum_statistics,
    vocabulary,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from hmm.core.base import BaseHMM
    from hmm.core.candidates import CandidateSet


def freeze_worker_heap() -> None:
    """Call first in a Spark task: makes the Python worker's after-task garbage collection cheap.

    pyspark's daemon runs ``gc.collect()`` in a reused Python worker after
    every task. With numpy, scipy, pyarrow, numba and hmm imported that full
    collection walks ~200k long-lived objects: 0.1 CPU-second per task on
    the 2-core benchmark machine, while the next EM iteration's task already
    waits for the worker. Freezing the objects alive when a task starts moves
    them out of the collector's sight (the previous task's garbage was
    already collected by then), so the collection only sees what this task
    creates. Measured: 10,000 sequences, 0.25 -> 0.11 s per iteration.
    """
    import gc

    gc.freeze()


def is_connect(spark: Any) -> bool:
    """``spark`` is a Spark Connect session (``sc://`` remote), not a classic one with a JVM in this process."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: Any) -> int:
    """Spark's task slots: ``defaultParallelism`` of a classic session; of a Connect session, which has no
    SparkContext, ``spark.default.parallelism`` if set, else the cores of its ``local[N]`` / ``local[*]``
    master (a Connect server runs on this machine in local mode), else 2.
    """
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured:
        return int(configured)
    master = spark.conf.get("spark.master", None) or ""
    if master.startswith("local["):
        cores = master[len("local[") :].split(",")[0].rstrip("]")
        return os.cpu_count() or 1 if cores == "*" else max(int(cores), 1)
    return 2


def _records(model: BaseHMM | CandidateSet, sequence_col: str, id_col: str | None, statistics: bool) -> Any:
    """The function mapInArrow runs on the executors: one record per Arrow batch.

    The driver's memory limit goes along, so every executor refuses the same sizes.
    """
    limit = max_model_bytes()

    def records(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark import TaskContext

        freeze_worker_heap()

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        schema = record_schema()
        for index, batch in enumerate(batches):
            if batch.num_rows:
                record = batch_record(model, batch, sequence_col, id_col, partition, index, statistics, limit=limit)
                yield pa.RecordBatch.from_pylist([record], schema=schema)

    return records


def batch_records(
    model: BaseHMM | CandidateSet,
    df: DataFrame,
    sequence_col: str = "sequence",
    id_col: str | None = None,
    statistics: bool = True,
) -> list[dict[str, Any]]:
    """Every batch's record, in (partition, batch) order.

    Parameters
    ----------
    model : BaseHMM
        Shipped to the executors; each runs :func:`hmm.distributed.arrow.batch_record` on its batches.
    df : pyspark.sql.DataFrame
        One row per sequence.
    sequence_col : str, default="sequence"
        The array column of frames.
    id_col : str, optional
        A column naming rows in error messages.
    statistics : bool, default=True
        Compute each batch's sufficient statistics; False: only validate and count.

    Returns
    -------
    list of dict
        One record per non-empty Arrow batch (:data:`hmm.distributed.arrow.RECORD_FIELDS`),
        errors included rather than raised.
    """
    columns = [sequence_col] + ([id_col] if id_col else [])
    rows = df.select(*columns).mapInArrow(_records(model, sequence_col, id_col, statistics), RECORD_DDL).collect()
    return sorted((row.asDict() for row in rows), key=lambda r: (r["partition"], r["batch"]))


def e_step(model: BaseHMM, df: DataFrame, sequence_col: str = "sequence", id_col: str | None = None) -> SufficientStats:
    """Expected counts over every row of ``df``: one record per Arrow batch, summed in order.

    Parameters
    ----------
    model : BaseHMM
        A model with parameters (initialised or fitted).
    df : pyspark.sql.DataFrame
        One row per sequence.
    sequence_col : str, default="sequence"
        The array column of frames.
    id_col : str, optional
        A column naming rows in error messages.

    Returns
    -------
    SufficientStats
        The E-step over every sequence, bit-identical across re-runs on the same input.

    Raises
    ------
    InvalidSequenceError
        A row breaks a rule: the first bad batch's error, located by partition, batch and row.
    """
    return sum_statistics(model, batch_records(model, df, sequence_col, id_col))


def e_step_candidates(models: list[BaseHMM], df: DataFrame, sequence_col: str = "sequence") -> list[SufficientStats]:
    """Each model's expected counts over every row of ``df``, all from one pass over it."""
    from hmm.core.candidates import CandidateSet

    candidates = CandidateSet(models)
    return sum_statistics(candidates, batch_records(candidates, df, sequence_col)).parts


def _arrow_streams(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The function mapInArrow runs for :func:`collect_arrow`: each batch as one Arrow IPC stream."""
    import pyarrow as pa

    for batch in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        yield pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()], pa.binary())], names=["arrow"])


def collect_arrow(df: DataFrame) -> pa.Table | None:
    """``df`` on the driver as an Arrow table, in partition order; None if it has no rows.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Small enough for the driver's memory (e.g. after ``limit``).

    Returns
    -------
    pyarrow.Table or None
        Every row of ``df`` with Spark's Arrow column types; None when ``df`` has no rows.

    Notes
    -----

    ``DataFrame.toArrow`` exists only from Spark 4.0 on, and EMR 7 ships Spark
    3.5: the executors write their Arrow batches as IPC streams into a binary
    column instead (``mapInArrow``, Spark 3.3 on), so the column types stay
    exactly Spark's Arrow types on every Spark version.
    """
    import pyarrow as pa

    rows = df.mapInArrow(_arrow_streams, "arrow binary").collect()
    tables = [pa.ipc.open_stream(row["arrow"]).read_all() for row in rows]
    tables = [table for table in tables if table.num_rows]
    return pa.concat_tables(tables) if tables else None


def collect_sample(df: DataFrame, sequence_col: str, symbols: bool, n_sequences: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_sequences`` rows as ``(X, offsets)`` on the driver.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        One row per sequence.
    sequence_col : str
        The array column of frames.
    symbols : bool
        Categorical data: one integer per frame.
    n_sequences : int
        At most this many rows (Spark's ``limit``: which rows is Spark's choice).

    Returns
    -------
    X : ndarray of shape (n_observations,) if ``symbols``, else (n_observations, n_features)
        The sample's frames, concatenated.
    offsets : ndarray of shape (n_sampled + 1,), dtype int64
        Sequence boundaries in ``X``.

    Raises
    ------
    InvalidSequenceError
        ``df`` has no rows, or a sampled row breaks a rule (:func:`~hmm.distributed.arrow.arrow_sequences`).
    """
    table = collect_arrow(df.select(sequence_col).limit(n_sequences))
    if table is None:
        raise InvalidSequenceError("the DataFrame has no sequences")
    return arrow_sequences(table.column(sequence_col), symbols)


def fit_dataframe(model: BaseHMM, df: DataFrame, sequence_col: str = "sequence") -> BaseHMM:
    """``model.fit`` on a DataFrame: the EM loop on the driver, E-steps on Spark.

    With ``n_init`` > 1 every candidate's E-step runs on each batch in the same pass
    (:mod:`hmm.core.candidates`). Each iteration reads ``df`` again; nothing is cached here because for
    Parquet input re-reading was faster than Spark's cache (measured at 1M
    sequences). Cache ``df`` yourself when its lineage is expensive.

    Parameters
    ----------
    model : BaseHMM
        Unfitted, with its settings (``n_iter``, ``tol``, ``init_params``, ...).
    df : pyspark.sql.DataFrame
        One row per sequence.
    sequence_col : str, default="sequence"
        The array column of frames.

    Returns
    -------
    BaseHMM
        ``model``, fitted: initialised from the first
        :data:`~hmm.core.limits.INIT_SAMPLE_SEQUENCES` rows (a categorical model without
        ``n_features`` takes the largest symbol of all rows + 1), then EM until converged or
        ``n_iter`` updates.

    Raises
    ------
    InvalidSequenceError
        ``df`` has no sequences, or a row breaks a rule (named by partition, batch and row).
    ValueError
        A setting is invalid (:meth:`BaseHMM.check_settings`).
    """
    from pyspark.sql import functions

    from hmm.core.candidates import run_candidates

    model.check_settings()
    data = df.select(sequence_col)
    if model.observes_symbols and getattr(model, "symbols", None) is None and _holds_strings(data, sequence_col):
        records = batch_records(model, data, sequence_col, statistics=False)
        errors = [r["error"] for r in records if r["error"]]
        if errors:
            raise InvalidSequenceError(errors[0])
        names = vocabulary(records)
        if not names:
            raise InvalidSequenceError("the DataFrame has no sequences with observations")
        model.infer_symbols(names)
    if model.observes_symbols and getattr(model, "n_features", None) is None:
        largest = data.select(functions.max(functions.array_max(sequence_col))).collect()[0][0]
        if largest is None:
            raise InvalidSequenceError("the DataFrame has no sequences with observations")
        model.infer_n_features(largest)
    X, offsets = collect_sample(data, sequence_col, model.observes_symbols, INIT_SAMPLE_SEQUENCES)
    candidates = model.restart_candidates()
    for candidate in candidates:
        candidate.initialize_from_sample(X, offsets)
    return model.adopt_best(run_candidates(candidates, lambda active: e_step_candidates(active, data, sequence_col)))


def _holds_strings(df: DataFrame, sequence_col: str) -> bool:
    """The sequence column is an array of strings (named symbols)."""
    from pyspark.sql.types import ArrayType, StringType

    kind = df.schema[sequence_col].dataType
    return isinstance(kind, ArrayType) and isinstance(kind.elementType, StringType)


def score_dataframe(model: BaseHMM, df: DataFrame, sequence_col: str = "sequence") -> float:
    """Log-likelihood of every sequence of ``df`` under ``model``.

    Parameters
    ----------
    model : BaseHMM
        A fitted model (or one with every parameter set).
    df : pyspark.sql.DataFrame
        One row per sequence.
    sequence_col : str, default="sequence"
        The array column of frames.

    Returns
    -------
    float
        The sum over the sequences of log P(sequence | model).

    Raises
    ------
    InvalidSequenceError
        A row breaks a rule; ``ValueError`` (or a subclass) if the parameters are invalid.
    """
    model.check_parameters()
    return e_step(model, df, sequence_col).log_likelihood


def _output_types() -> dict[str, Any]:
    """The Spark type of each inference output (:data:`hmm.core.base.INFERENCE_OUTPUTS`)."""
    from pyspark.sql.types import ArrayType, DoubleType, IntegerType

    return {
        "states": ArrayType(IntegerType()),
        "log_likelihood": DoubleType(),
        "posteriors": ArrayType(ArrayType(DoubleType())),
        "filtered": ArrayType(ArrayType(DoubleType())),
    }


def _inference(model: BaseHMM, sequence_col: str, columns: dict[str, str], limit: int) -> Any:
    """The function mapInArrow runs for :func:`transform_dataframe`: each batch with its new columns."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa
        from pyspark import TaskContext

        freeze_worker_heap()
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        for index, batch in enumerate(batches):
            if not batch.num_rows:
                continue
            try:
                arrays = inference_arrays(model, batch, sequence_col, list(columns), limit)
            except ValueError as error:
                raise InvalidSequenceError(locate_error(error, f"partition {partition}", index, None)) from None
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, *(arrays[kind] for kind in columns)], names=[*batch.schema.names, *columns.values()]
            )

    return run


def transform_dataframe(model: BaseHMM, df: DataFrame, sequence_col: str, columns: dict[str, str]) -> DataFrame:
    """``df`` with one new column per output: ``columns`` maps an output name
    (:data:`hmm.core.base.INFERENCE_OUTPUTS`) to its column's name.

    Lazy: one ``mapInArrow`` over ``df``, each Arrow batch one call of :meth:`BaseHMM.infer_batch`
    on the executors, rows and their order kept. A bad row fails the Spark job with the model's
    message (partition, batch, sequence within it).
    """
    from pyspark.sql.types import StructField, StructType

    model.check_parameters()
    types = _output_types()
    if not columns:
        raise ValueError("no output column asked for: name at least one")
    names = list(columns.values())
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"output column names must be non-empty strings, got {name!r}")
    if len(set(names)) < len(names):
        raise ValueError(f"output column names must differ, got {names}")
    if sequence_col not in df.columns:
        raise InvalidSequenceError(f"the DataFrame has no column {sequence_col!r} (columns: {df.columns})")
    clashes = sorted(set(names) & set(df.columns))
    if clashes:
        raise ValueError(f"the DataFrame already has column(s) {clashes}; choose other output column names")
    schema = StructType([*df.schema.fields, *(StructField(columns[kind], types[kind]) for kind in columns)])
    return df.mapInArrow(_inference(model, sequence_col, columns, max_model_bytes()), schema)

"""Arrow record batches of sequences -> validated arrays, statistics and scan summaries.

A batch's list column is hmmlearn's ``X, lengths`` layout already: the list
offsets are the sequence boundaries and the flattened values are the frames.
Every path uses this module per batch: a DataFrame's ``mapInArrow``
(:mod:`hmm.distributed.spark`) and the Parquet splits of a training (:mod:`hmm.distributed.sources`,
on Spark executors or in one process), so a batch is validated, counted and
turned into statistics by the same code wherever it runs.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from hmm.core.limits import MAX_SYMBOLS
from hmm.core.sequences import InvalidSequenceError
from hmm.core.stats import StatisticsSet, SufficientStats
from hmm.core.vocabulary import FactorizedSymbols, distinct_symbols, holds_strings

if TYPE_CHECKING:
    import pyarrow as pa

    from hmm.core.base import BaseHMM
    from hmm.core.candidates import CandidateSet

#: One record per batch, sent back to the driver.
RECORD_FIELDS = (
    ("partition", "int32"),
    ("batch", "int32"),
    ("n_sequences", "int64"),
    ("n_observations", "int64"),
    ("max_symbol", "int64"),
    ("symbols", "list<string>"),  # a scan of named symbols before the vocabulary is fixed: the batch's distinct ones
    ("n_features", "int64"),
    ("error", "string"),
    ("stats", "binary"),
    # With a hold-out: how many of the batch's sequences are held out, and each model's
    # log-likelihood of them (float64s); their frames are in no statistics.
    ("n_holdout", "int64"),
    ("holdout", "binary"),
)
_DDL_TYPES = {"int32": "int", "int64": "long", "list<string>": "array<string>"}
RECORD_DDL = ", ".join(f"{name} {_DDL_TYPES.get(kind, kind)}" for name, kind in RECORD_FIELDS)


def record_schema() -> pa.Schema:
    """The Arrow schema of a batch record (:data:`RECORD_FIELDS`; :data:`RECORD_DDL` is Spark's spelling).

    Returns
    -------
    pyarrow.Schema
        One field per entry of :data:`RECORD_FIELDS`, in that order.
    """
    import pyarrow as pa

    def arrow_type(kind: str) -> pa.DataType:
        return pa.list_(pa.string()) if kind == "list<string>" else getattr(pa, kind)()

    return pa.schema([(name, arrow_type(kind)) for name, kind in RECORD_FIELDS])


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind))


def arrow_sequences(column: pa.Array | pa.ChunkedArray, symbols: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(X, offsets)`` of an Arrow list column, zero-copy where Arrow allows.

    Parameters
    ----------
    column : pyarrow.Array or pyarrow.ChunkedArray
        A list column, one row per sequence: ``list<int>`` of symbols, ``list<string>`` (or
        dictionary-encoded strings) of named symbols, ``list<list<number>>`` of frames, or
        ``list<number>`` of scalar frames.
    symbols : bool
        One symbol per frame (categorical): an integer, or a string. Otherwise frames are vectors
        (a list per frame) or scalars (read as D = 1).

    Returns
    -------
    X : ndarray of shape (n_observations,) if ``symbols``, else (n_observations, n_features)
        Every sequence's frames, concatenated in row order, with the column's value type; for
        named symbols a :class:`hmm.core.vocabulary.FactorizedSymbols` (Arrow's dictionary
        encoding), which the model's vocabulary maps to indices.
    offsets : ndarray of shape (n_sequences + 1,), dtype int64
        Sequence ``i`` is ``X[offsets[i]:offsets[i + 1]]``; ``offsets[0] == 0``.

    Raises
    ------
    InvalidSequenceError
        The column is not a list column; a sequence is null or empty; a frame is null, has no
        features or another number of features than the first; a value is null; or a
        categorical column holds nested lists. The message names the sequence (its row in the
        column), the position and the feature.
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
        raise InvalidSequenceError(
            f"a categorical sequence column must be array<int>, got {column.type} (or array<string>: named symbols)"
        )
    if nested:
        if frames.null_count:
            bad = int(np.flatnonzero(frames.is_null().to_numpy(zero_copy_only=False))[0])
            sequence = int(np.searchsorted(offsets, bad, side="right") - 1)
            raise InvalidSequenceError(
                f"sequence {sequence}, position {bad - offsets[sequence]}: observation is null "
                "(every observation needs an array of features)"
            )
        widths = frames.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        if widths.size and np.any(widths != widths[0]):
            bad = int(np.flatnonzero(widths != widths[0])[0])
            sequence = int(np.searchsorted(offsets, bad, side="right") - 1)
            raise InvalidSequenceError(
                f"sequence {sequence}, position {bad - offsets[sequence]}: observation has "
                f"{widths[bad]} features but the first has {widths[0]} "
                "(every observation needs the same number of features)"
            )
        values = frames.flatten()
        width = int(widths[0]) if widths.size else 0
        if width == 0:
            raise InvalidSequenceError(
                "sequence 0, position 0: observation has 0 features (every observation needs at least one feature)"
            )
    else:
        values, width = frames, 1
    if values.null_count:
        value = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        bad = value // width
        sequence = int(np.searchsorted(offsets, bad, side="right") - 1)
        feature = f", feature {value % width}" if nested else ""
        raise InvalidSequenceError(
            f"sequence {sequence}, position {bad - offsets[sequence]}{feature}: observation is null "
            f"(observations must be {'symbols' if symbols else 'numbers'})"
        )
    if symbols and _is_text(values.type):
        import pyarrow.compute as pc

        if pa.types.is_dictionary(values.type) and not _is_text(values.type.value_type):
            raise InvalidSequenceError(
                f"a categorical sequence column must hold integers or strings, got {column.type}"
            )
        # Factorized by Arrow (C++): the model maps each distinct name once (hmm.core.vocabulary).
        encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
        names = encoded.dictionary.to_numpy(zero_copy_only=False)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        return FactorizedSymbols(names, indices), offsets  # type: ignore[return-value]
    X = values.to_numpy(zero_copy_only=False)
    return (X if symbols else X.reshape(-1, width)), offsets


def locate_error(error: Exception, where: str, batch: int, ids: list[Any] | None) -> str:
    """Prefix a batch-local error with where the batch is, and the row's id if known.

    Parameters
    ----------
    error : Exception
        An error whose message may start with ``sequence <row in batch>``.
    where : str
        Where the batch comes from, e.g. ``partition 3`` or a split's file.
    batch : int
        The batch's index within ``where``.
    ids : list or None
        The batch's id column, one value per row; None: rows are named by their index.

    Returns
    -------
    str
        ``"<where>, batch <batch>: <message>"``, with ``sequence <i>`` replaced by
        ``sequence id=<ids[i]!r>`` when ``ids`` are given.
    """
    message = str(error)
    match = re.match(r"sequence (\d+)", message)
    if match and ids is not None:
        message = f"sequence id={ids[int(match.group(1))]!r}" + message[match.end() :]
    return f"{where}, batch {batch}: {message}"


def error_record(partition: int, error: str) -> dict[str, Any]:
    """A record for a part of the data that could not be read at all (sorted before its batches).

    Parameters
    ----------
    partition : int
        The partition (or split) that could not be read.
    error : str
        Why, located as :func:`locate_error` does.

    Returns
    -------
    dict
        A record of :data:`RECORD_FIELDS` with batch -1, no sequences and ``error`` set.
    """
    record = _blank_record(partition, -1, 0)
    record["error"] = error
    return record


def _blank_record(partition: int, batch: int, n_sequences: int) -> dict[str, Any]:
    record: dict[str, Any] = {name: None for name, _ in RECORD_FIELDS}
    record.update(partition=partition, batch=batch, n_sequences=n_sequences, n_observations=0)
    return record


def batch_record(
    model: BaseHMM | CandidateSet,
    batch: pa.RecordBatch,
    sequence_col: str,
    id_col: str | None,
    partition: int,
    index: int,
    statistics: bool,
    where: str | None = None,
    limit: int | None = None,
    holdout_fraction: float = 0.0,
    first_row: int | None = None,
) -> dict[str, Any]:
    """Validate one batch and summarise it; with ``statistics``, also run the E-step on it.

    Rules on the data alone always apply; rules against the model (symbol <
    n_features) apply once the model knows its size; until then the size the
    data would give it must fit ``limit`` (:func:`hmm.core.base.check_model_size`,
    resolved by the caller so that executors apply the driver's). Errors become the
    record's ``error`` (located by partition, batch and row id), never an
    exception, so the driver can report the first bad rows of the whole data.

    Parameters
    ----------
    model : BaseHMM
        The model whose rules (and, with ``statistics``, parameters) apply.
    batch : pyarrow.RecordBatch
        Rows of sequences, with ``sequence_col`` (and ``id_col`` if given).
    sequence_col, id_col : str, str or None
        The list column of frames, and a column naming each row in errors.
    partition, index : int
        Where the batch is: its partition (or split) and its index there.
    statistics : bool
        Also compute the batch's sufficient statistics (the E-step); else only validate and count.
    where : str, optional
        How errors name the batch's origin; default ``partition <partition>``.
    limit : int, optional
        The memory limit in bytes for a model sized by this data; default the process's own.
    holdout_fraction : float, default=0
        With ``statistics``: the sequences :func:`holdout_rows` holds out get no statistics; the
        record's ``holdout`` has each model's log-likelihood of them.
    first_row : int, optional
        The position of the batch's first row in the data: the hold-out key without ``id_col``.

    Returns
    -------
    dict
        A record of :data:`RECORD_FIELDS`: ``n_sequences``, ``n_observations``, ``max_symbol``
        (categorical, without ``statistics``) or ``n_features``, ``stats``
        (:meth:`SufficientStats.to_bytes`, with ``statistics``) or ``error``; ``n_sequences`` and
        ``n_observations`` count held-out sequences too.
    """
    record = _blank_record(partition, index, batch.num_rows)
    try:
        X, offsets = arrow_sequences(batch.column(sequence_col), model.observes_symbols)
        if model.observes_symbols and holds_strings(X) and getattr(model, "symbols", None) is None:
            if statistics:
                raise InvalidSequenceError(
                    "the sequences hold strings but the model has no vocabulary (symbols=[...]): it is fixed "
                    "before the E-step, from a scan of all the data or given"
                )
            # A scan before the vocabulary is fixed: the batch's distinct symbols, for the driver's union.
            symbols = distinct_symbols(X, offsets)
            if len(symbols) > MAX_SYMBOLS:
                raise InvalidSequenceError(too_many_symbols(len(symbols), "this batch alone has"))
            record["n_observations"] = int(offsets[-1])
            record["symbols"] = symbols
            return record
        observations = model.check_batch(X, offsets, limit)
        record["n_observations"] = int(offsets[-1])
        if model.observes_symbols:
            # What a scan needs to size a model; an E-step's model has its size (one pass less per batch).
            record["max_symbol"] = None if statistics else int(observations.max())
        else:
            record["n_features"] = int(observations.shape[1])
        if statistics and holdout_fraction > 0:
            held = holdout_rows(batch, id_col, first_row, holdout_fraction)
            record["n_holdout"] = int(held.sum())
            record["stats"] = _statistics(model, *select_sequences(observations, offsets, ~held)).to_bytes()
            record["holdout"] = np.asarray(
                holdout_log_likelihoods(model, *select_sequences(observations, offsets, held)), dtype=np.float64
            ).tobytes()
        elif statistics:
            record["stats"] = model.batch_statistics(observations, offsets).to_bytes()
    except ValueError as error:
        ids = batch.column(id_col).to_pylist() if id_col else None
        record["error"] = locate_error(error, where or f"partition {partition}", index, ids)
    return record


def too_many_symbols(count: int, what: str) -> str:
    return (
        f"{what} {count:,} distinct symbols, more than a vocabulary's limit of {MAX_SYMBOLS:,} "
        "(hmm.core.limits.MAX_SYMBOLS)"
    )


def vocabulary(records: list[dict[str, Any]], where: Any = None) -> list[str] | None:
    """The vocabulary a scan's records give: their distinct symbols, sorted; None for integer symbols.

    Raises :class:`InvalidSequenceError` for data mixing integer and string symbols (naming a batch
    of each, by ``where(record)`` if given) or more distinct symbols than MAX_SYMBOLS.
    """
    named = [r for r in records if r["symbols"] is not None]
    if not named:
        return None
    numbered = [r for r in records if r["max_symbol"] is not None]
    if numbered:
        name = where or (lambda r: f"partition {r['partition']}, batch {r['batch']}")
        raise InvalidSequenceError(
            f"{name(named[0])} holds string symbols but {name(numbered[0])} holds integer symbols "
            "(every symbol of the data must be of one type)"
        )
    union = sorted(set().union(*(r["symbols"] for r in named)))
    if len(union) > MAX_SYMBOLS:
        raise InvalidSequenceError(too_many_symbols(len(union), "the data has"))
    return union


def holdout_rows(batch: pa.RecordBatch, id_col: str | None, first_row: int | None, fraction: float) -> np.ndarray:
    """Which rows of ``batch`` are held out (:func:`hmm.core.holdout.holdout_mask`).

    The key is the row's id (``id_col``: integers or strings, none null) or else its position in
    the data (``first_row`` + its row in the batch): never where or by which engine it is read.
    """
    import pyarrow as pa

    from hmm.core.holdout import hash_strings, held_out, holdout_mask

    if id_col is None:
        if first_row is None:
            raise ValueError("a hold-out without an id column needs the batch's first row position")
        return holdout_mask(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64), fraction)
    ids = batch.column(id_col)
    if ids.null_count:
        first = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidSequenceError(f"sequence {first}: the id is null (a hold-out keys each sequence by its id)")
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        return held_out(hash_strings(*string_buffers(ids)), fraction)  # no Python string per row
    values = ids.to_numpy(zero_copy_only=False)
    try:
        return holdout_mask(values if values.dtype.kind in "iu" else values.astype(object), fraction)
    except ValueError:
        raise InvalidSequenceError(
            f"the id column {id_col!r} is {ids.type}: a hold-out keys sequences by integer or string ids"
        ) from None


def string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow string (or large_string) array's UTF-8 bytes and its offsets into them, as numpy views.

    The offsets are the array's own slice of its buffer (not rebased), so a sliced array reads
    only its rows.
    """
    import pyarrow as pa

    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    _, offsets, data = strings.buffers()
    bounds = np.frombuffer(offsets, dtype=width)[strings.offset : strings.offset + len(strings) + 1]
    return (np.empty(0, np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)), bounds


def select_sequences(X: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frames and offsets of the sequences where ``rows`` (one bool per sequence) is True, in order."""
    lengths = np.diff(offsets)
    return X[np.repeat(rows, lengths)], np.concatenate([[0], np.cumsum(lengths[rows])]).astype(np.int64)


def _statistics(model: BaseHMM | CandidateSet, X: np.ndarray, offsets: np.ndarray) -> SufficientStats | StatisticsSet:
    """``batch_statistics`` of some sequences; zeros for none (no kernel call on an empty batch)."""
    return model.batch_statistics(X, offsets) if len(offsets) > 1 else model.new_statistics()


def holdout_log_likelihoods(model: BaseHMM | CandidateSet, X: np.ndarray, offsets: np.ndarray) -> list[float]:
    """Each model's log-likelihood of held-out sequences: the forward pass only (no statistics are
    kept for them), bit for bit the log-likelihood their E-step would give; 0 for none."""
    from hmm.core.candidates import CandidateSet

    if len(offsets) <= 1:
        return [0.0] * (len(model.models) if isinstance(model, CandidateSet) else 1)
    if isinstance(model, CandidateSet):
        return model.batch_log_likelihoods(X, offsets)
    return [model.batch_log_likelihood(X, offsets)]


def sum_holdout(records: list[dict[str, Any]], n_models: int) -> tuple[np.ndarray, int]:
    """Each model's held-out log-likelihood, summed in the records' order, and the held-out sequences."""
    total = np.zeros(n_models)
    count = 0
    for record in records:
        if record.get("holdout") is not None:
            total = total + np.frombuffer(record["holdout"], dtype=np.float64)
            count += record["n_holdout"]
    return total, count


@overload
def sum_statistics(model: BaseHMM, records: list[dict[str, Any]]) -> SufficientStats: ...
@overload
def sum_statistics(model: CandidateSet, records: list[dict[str, Any]]) -> StatisticsSet: ...
def sum_statistics(model: BaseHMM | CandidateSet, records: list[dict[str, Any]]) -> SufficientStats | StatisticsSet:
    """Add the batches' statistics in the records' order; the first error, if any, is raised.

    Parameters
    ----------
    model : BaseHMM or CandidateSet
        Gives the zero statistics (``new_statistics``) the sum starts from.
    records : list of dict
        Batch records with statistics (:func:`batch_record`), in the order to add them.

    Returns
    -------
    SufficientStats, or StatisticsSet for a candidate set
        The sum: the E-step over every batch. The same records in the same order give
        bit-identical sums.

    Raises
    ------
    InvalidSequenceError
        A record holds an error: the first one's message, with how many more batches have one.
    """
    errors = [r["error"] for r in records if r["error"]]
    if errors:
        more = f" ({len(errors) - 1} more batch(es) have errors)" if len(errors) > 1 else ""
        raise InvalidSequenceError(errors[0] + more)
    total = model.new_statistics()
    return functools.reduce(operator.add, (type(total).from_bytes(record["stats"]) for record in records), total)


def inference_arrays(
    model: BaseHMM, batch: pa.RecordBatch, sequence_col: str, outputs: list[str], limit: int | None = None
) -> dict[str, pa.Array]:
    """:meth:`BaseHMM.infer_batch` over one batch of sequences; each output as an Arrow array, one value per row.

    ``states``: list<int32> (one state per observation); ``log_likelihood``: float64;
    ``posteriors`` and ``filtered``: list<list<float64>> (length x n_components), Spark's
    ``array<int>``, ``double`` and ``array<array<double>>``. Raises the model's ``ValueError``
    (naming the batch's sequence) on a bad row.
    """
    import pyarrow as pa

    X, offsets = arrow_sequences(batch.column(sequence_col), model.observes_symbols)
    result = model.infer_batch(model.check_batch(X, offsets, limit), offsets, outputs)
    # Spark's Arrow lists have 32-bit offsets; one batch never holds 2**31 observations (BATCH_BYTES).
    by_row = pa.array(offsets.astype(np.int32))
    arrays: dict[str, pa.Array] = {}
    for name, values in result.items():
        if name == "log_likelihood":
            arrays[name] = pa.array(values, pa.float64())
        elif name == "states":
            arrays[name] = pa.ListArray.from_arrays(by_row, pa.array(values.astype(np.int32)))
        else:
            width = values.shape[1]
            by_frame = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
            frames = pa.ListArray.from_arrays(by_frame, pa.array(values.reshape(-1)))
            arrays[name] = pa.ListArray.from_arrays(by_row, frames)
    return arrays

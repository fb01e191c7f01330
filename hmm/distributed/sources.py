"""Where a training's sequences come from: Parquet files at a URI, read in splits.

The driver lists the data's Parquet files (names starting with ``.`` or ``_``
are skipped, as Spark and pyarrow do; on a file system each file is listed
once, however many paths lead to it, directory symlinks that loop are not
followed, and anything but regular files and directories is refused) and cuts
them into :class:`Split` s: a
file, or a run of a large file's row groups of about :data:`SPLIT_BYTES`.
Each split is read with pyarrow in record batches, and every batch goes
through the same code (:func:`hmm.distributed.arrow.batch_record`): validated, counted and,
for an E-step, turned into one small statistics record. Two engines run the
splits:

* ``spark``: the splits in Spark tasks (:func:`task_groups`: one per core, or
  per ``SPLIT_BYTES`` of data; EMR, or ``local[*]``); the executors read their
  files themselves, so Spark only schedules. This skips the JVM's Parquet-row
  -> Arrow conversion and the SQL planning of a DataFrame job, which were most
  of an iteration's time on small data and the main gap to the library on
  large data (``benchmarks/spark.py``).
* ``local``: the same splits one after another in this process, for data that
  one machine reads in reasonable time and for fast tests.

Records come back keyed by (split, batch) and are added in that order, so
both engines give bit-identical statistics on every run. A process that reads a
split again (the next iteration) memory-maps the batches it kept the first
time instead of decoding the Parquet again (:mod:`hmm.distributed.split_cache`).
"""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from hmm.core.limits import INIT_SAMPLE_SEQUENCES, max_model_bytes
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed import split_cache
from hmm.distributed.arrow import (
    arrow_sequences,
    batch_record,
    error_record,
    holdout_rows,
    sum_holdout,
    sum_statistics,
    vocabulary,
)
from hmm.distributed.uris import check_uri

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from pyspark.sql import SparkSession

    from hmm.core.base import BaseHMM
    from hmm.core.candidates import CandidateSet
    from hmm.core.stats import SufficientStats

ENGINES = ("spark", "local")
#: Rows per Arrow batch (Spark's default maxRecordsPerBatch) ...
BATCH_ROWS = 10_000
#: ... unless that is more than this many uncompressed bytes (long sequences).
BATCH_BYTES = 64 * 2**20
#: Files larger than this are split by row groups (Spark's default maxPartitionBytes).
SPLIT_BYTES = 128 * 2**20
#: A Spark task sends its records back in Arrow batches of about this many bytes.
RECORD_MESSAGE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Scan:
    """What one pass over the data found."""

    n_sequences: int
    n_observations: int
    max_symbol: int | None
    n_features: int | None
    errors: list[str]
    #: Named symbols, before the model has a vocabulary: the data's distinct strings, sorted.
    symbols: list[str] | None = None


@dataclass(frozen=True)
class Evaluation:
    """One E-step pass of several models over the data (:meth:`ParquetSequences.evaluate`)."""

    #: Each model's statistics over the sequences not held out.
    statistics: list[SufficientStats]
    #: Each model's log-likelihood of the held-out sequences (0 without a hold-out).
    holdout_log_likelihoods: list[float]
    #: Every sequence and frame of the data, held-out ones included (what iteration 0 pinned).
    n_sequences: int
    n_observations: int
    n_holdout: int


@dataclass(frozen=True)
class FileSystemSpec:
    """How to open the data's file system: small and picklable, rebuilt on each executor.

    S3 credentials come from each process's default chain (an EMR instance
    role, or the environment locally); the endpoint from ``AWS_ENDPOINT_URL_S3``
    or ``AWS_ENDPOINT_URL`` (a local S3 such as moto), the region from the
    environment or, on real S3, from the bucket itself.
    """

    scheme: str
    endpoint: str | None = None
    region: str | None = None

    @classmethod
    def for_uri(cls, uri: str) -> FileSystemSpec:
        """The file system of a checked data URI (``file://`` or ``s3://``).

        Parameters
        ----------
        uri : str
            A URI that :func:`hmm.distributed.uris.check_uri` accepted.

        Returns
        -------
        FileSystemSpec
            For S3: the endpoint and region from the environment; without either, the bucket's
            region asked from S3 (a request).
        """
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return cls("file")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and endpoint is None:
            import pyarrow.fs as pafs

            region = pafs.resolve_s3_region(parsed.netloc)
        return cls("s3", endpoint, region)

    def open(self) -> pafs.FileSystem:
        """A pyarrow file system: local, or S3 with this endpoint and region."""
        import pyarrow.fs as pafs

        if self.scheme == "file":
            return pafs.LocalFileSystem()
        options: dict[str, Any] = {"region": self.region} if self.region else {}
        if self.endpoint:
            options["endpoint_override"] = self.endpoint
        return pafs.S3FileSystem(**options)


@dataclass(frozen=True)
class Split:
    """One unit of work: a Parquet file, or a run of its row groups (``None``: all of them)."""

    path: str
    row_groups: tuple[int, ...] | None = None
    size: int = 0  # compressed bytes, to balance the tasks
    #: The whole file's size and modification time, which pin the data of a training.
    file_size: int | None = None
    mtime_ns: int | None = None

    def file_name(self, base: str) -> str:
        """The file's path below the data root ``base`` (its base name when the root is the file)."""
        return os.path.relpath(self.path, base) if self.path != base else os.path.basename(self.path)

    def describe(self, base: str) -> str:
        """How errors name the split: ``file <name>``, with its row groups when it is a run of them."""
        name = self.file_name(base)
        if self.row_groups is None:
            return f"file {name}"
        return f"file {name} (row groups {self.row_groups[0]}-{self.row_groups[-1]})"


def read_split(
    filesystem: pafs.FileSystem, split: Split, columns: list[str], symbols: str | None = None
) -> Iterator[pa.RecordBatch]:
    """The split's record batches: ``BATCH_ROWS`` rows each, fewer for wide rows.

    Parameters
    ----------
    filesystem : pyarrow.fs.FileSystem
        The data's file system (:meth:`FileSystemSpec.open`).
    split : Split
        The file, or the run of its row groups, to read.
    columns : list of str
        The columns to read.
    symbols : str, optional
        One of ``columns`` whose integer symbols the reader converts to int64 whatever their
        type (a categorical model without named symbols): when the split's Parquet statistics put
        all of them in [0, 255], the split cache keeps them as ``list<uint8>`` (a quarter of the
        bytes to map and widen), and batches read back from it have that type; the same values.

    Yields
    ------
    pyarrow.RecordBatch
        Non-empty batches of ``columns``, at most :data:`BATCH_ROWS` rows and about
        :data:`BATCH_BYTES` uncompressed bytes each, in file order: decoded from Parquet, or the
        same batches memory-mapped from this machine's split cache (:mod:`hmm.distributed.split_cache`)
        when this process or another on the machine read the split before.

    Raises
    ------
    InvalidSequenceError
        The file lacks one of ``columns``.
    pyarrow.ArrowInvalid, OSError
        The file is not Parquet, is damaged or cannot be read.
    """
    import pyarrow.parquet as pq

    entry = split_cache.entry_for(filesystem, split, columns, (BATCH_ROWS, BATCH_BYTES), symbols)
    if entry is not None:
        cached = split_cache.load(entry)
        if cached is not None:
            yield from cached
            return
    with filesystem.open_input_file(split.path) as handle:
        parquet = pq.ParquetFile(handle)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise InvalidSequenceError(f"has no column {missing[0]!r} (columns: {sorted(parquet.schema_arrow.names)})")
        metadata = parquet.metadata
        groups = range(metadata.num_row_groups) if split.row_groups is None else split.row_groups
        rows = sum(metadata.row_group(g).num_rows for g in groups)
        size = sum(metadata.row_group(g).total_byte_size for g in groups)
        batch_rows = max(1, min(BATCH_ROWS, BATCH_BYTES * rows // max(size, 1)))
        # One thread: a Spark task has one core, and pyarrow's pool would only add hand-offs.
        batches = parquet.iter_batches(
            batch_size=batch_rows, row_groups=split.row_groups, columns=columns, use_threads=False
        )
        batches = (batch for batch in batches if batch.num_rows)
        if entry is None:
            yield from batches
            return
        narrow = symbols if symbols is not None and _symbols_fit_a_byte(parquet, groups, symbols) else None
        yield from split_cache.cached_batches(entry, batches, rows, size, narrow)


def _symbols_fit_a_byte(parquet: Any, groups: Iterable[int], column: str) -> bool:
    """``column`` is a ``list<integer>`` whose statistics put every value of ``groups`` in [0, 255]."""
    import pyarrow as pa

    kind = parquet.schema_arrow.field(column).type
    if not pa.types.is_list(kind) or not pa.types.is_integer(kind.value_type):
        return False
    metadata = parquet.metadata
    leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path.split(".")[0] == column]
    if len(leaves) != 1:
        return False
    for group in groups:
        found = metadata.row_group(group).column(leaves[0]).statistics
        if found is None or not found.has_min_max or found.min < 0 or found.max > 255:
            return False
    return True


def split_records(
    model: BaseHMM | CandidateSet,
    filesystem: pafs.FileSystem,
    base: str,
    index: int,
    split: Split,
    sequence_col: str,
    id_col: str | None,
    statistics: bool,
    limit: int | None = None,
    holdout_fraction: float = 0.0,
    first_row: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per batch of ``split`` (the ``index``-th split of the data).

    A file that is not Parquet, is damaged or lacks a column becomes an error
    record that names it; other I/O errors on S3 propagate, so Spark retries
    the task.

    Parameters
    ----------
    model : BaseHMM
        Whose rules (and parameters, with ``statistics``) apply.
    filesystem : pyarrow.fs.FileSystem
        The data's file system.
    base : str
        The data root, for the file names in errors.
    index : int
        The split's index in the data: the records' ``partition``.
    split : Split
        What to read.
    sequence_col, id_col : str, str or None
        The list column of frames, and the column naming rows in errors.
    statistics : bool
        Also run the E-step on each batch.
    limit : int, optional
        The memory limit for a model sized by the data (the driver's, on executors).
    holdout_fraction : float, default=0
        Hold sequences out of the statistics (:func:`hmm.distributed.arrow.batch_record`).
    first_row : int, optional
        The split's first row's position in the data (the hold-out key without ``id_col``).

    Yields
    ------
    dict
        :func:`hmm.distributed.arrow.batch_record` of each batch, or one
        :func:`~hmm.distributed.arrow.error_record` for a file that cannot be read.

    Raises
    ------
    OSError
        An S3 read failed for another reason than a damaged file.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    columns = [sequence_col] + ([id_col] if id_col else [])
    where = split.describe(base)
    try:
        row = first_row
        # Integer symbols the model converts to int64 anyway may come back from the cache as uint8; a model
        # with named symbols names the integers' type in its error, so its data keeps it.
        narrowable = model.observes_symbols and getattr(model, "symbols", None) is None
        batches = read_split(filesystem, split, columns, sequence_col if narrowable else None)
        for number, batch in enumerate(batches):
            yield batch_record(
                model, batch, sequence_col, id_col, index, number, statistics, where, limit, holdout_fraction, row
            )
            row = None if row is None else row + batch.num_rows
    except InvalidSequenceError as error:
        yield error_record(index, f"{where}: {error}")
    except pa.ArrowInvalid as error:
        yield error_record(index, f"{where}: is not a readable Parquet file ({error})")
    except OSError as error:
        # pyarrow raises OSError both for a damaged file (a footer or page it cannot decode) and
        # for a failed read; only the second is worth Spark's retry, and only on S3.
        if not isinstance(filesystem, pafs.LocalFileSystem) and not _damaged(error):
            raise
        yield error_record(index, f"{where}: is not a readable Parquet file ({error})")


class ParquetSequences:
    """The Parquet data at ``uri`` (a file or a directory of files), one sequence per row.

    Parameters
    ----------
    uri : str
        ``file:///path`` or ``s3://bucket/prefix``: a Parquet file or a directory of them.
    sequence_col : str, default="sequence"
        The list column of frames.
    id_col : str, optional
        A column naming rows in error messages.
    engine : {"spark", "local"}, default="spark"
        Read the splits in Spark tasks, or one after another in this process.
    spark : SparkSession, optional
        The session of the ``spark`` engine; default: ``getOrCreate`` on first use.

    Raises
    ------
    InvalidURIError
        ``uri`` is not a URI :func:`~hmm.distributed.uris.check_uri` accepts.
    ValueError
        ``engine`` is unknown.
    """

    def __init__(
        self,
        uri: str,
        sequence_col: str = "sequence",
        id_col: str | None = None,
        engine: str = "spark",
        spark: SparkSession | None = None,
    ):
        self.uri = check_uri(uri, "data URI")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.sequence_col = sequence_col
        self.id_col = id_col
        self.engine = engine
        self._spark = spark
        self.filesystem_spec = FileSystemSpec.for_uri(self.uri)
        parsed = urlparse(self.uri)
        self.base = parsed.path if parsed.scheme == "file" else f"{parsed.netloc}{parsed.path}".rstrip("/")

    @property
    def spark(self) -> SparkSession:
        """The Spark session of the ``spark`` engine, started on first use if none was given."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            self._spark = SparkSession.builder.appName("hmm-em").getOrCreate()
        return self._spark

    # ------------------------------------------------------------- splits

    def splits(self) -> list[Split]:
        """The data's files in path order, large ones cut into runs of row groups.

        Returns
        -------
        list of Split
            One per file of at most :data:`SPLIT_BYTES`; a larger file as runs of row groups of
            about that many compressed bytes. Each pins its file's size and modification time.

        Raises
        ------
        InvalidSequenceError
            Nothing is at the URI, it holds no (non-hidden) files, or a local path is a
            dangling link, FIFO, socket or device (:func:`local_files`).
        """
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        filesystem = self.filesystem_spec.open()
        if self.filesystem_spec.scheme == "file":
            files = local_files(self.base, self.uri)
        else:
            info = filesystem.get_file_info(self.base)
            if info.type == pafs.FileType.NotFound:
                raise InvalidSequenceError(f"data URI {self.uri} does not exist")
            if info.type == pafs.FileType.File:
                listing = [info]
            else:
                listing = filesystem.get_file_info(pafs.FileSelector(self.base, recursive=True))
            files = [
                (f.path, f.size, f.mtime_ns)
                for f in listing
                if f.type == pafs.FileType.File and (f is info or not _hidden(f.path, self.base))
            ]
        files.sort(key=lambda file: file[0])
        if not files:
            raise InvalidSequenceError(f"data URI {self.uri} has no Parquet files")
        splits = []
        for path, file_size, mtime_ns in files:
            pin = {"file_size": file_size, "mtime_ns": mtime_ns}
            if file_size is None or file_size <= SPLIT_BYTES:
                splits.append(Split(path, None, file_size or 0, **pin))
                continue
            with filesystem.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
            run: list[int] = []
            run_bytes = 0
            for group in range(metadata.num_row_groups):
                size = _compressed_bytes(metadata.row_group(group))
                if run and run_bytes + size > SPLIT_BYTES:
                    splits.append(Split(path, tuple(run), run_bytes, **pin))
                    run, run_bytes = [], 0
                run.append(group)
                run_bytes += size
            whole = len(run) == metadata.num_row_groups
            splits.append(Split(path, None if whole else tuple(run), run_bytes, **pin))
        return splits

    # ------------------------------------------------------------ engines

    def records(
        self,
        model: BaseHMM | CandidateSet,
        statistics: bool,
        splits: list[Split] | None = None,
        holdout_fraction: float = 0.0,
    ) -> list[dict[str, Any]]:
        """One record per Arrow batch of ``splits`` (default: :meth:`splits`), in (split, batch) order.

        Parameters
        ----------
        model : BaseHMM
            Whose rules (and parameters, with ``statistics``) apply.
        statistics : bool
            Also run the E-step on each batch.
        splits : list of Split, optional
            The splits to read; default: all of them.
        holdout_fraction : float, default=0
            With ``statistics``: hold sequences out (by id, or by position in all of ``splits``).

        Returns
        -------
        list of dict
            Batch records (:data:`hmm.distributed.arrow.RECORD_FIELDS`), errors included, whichever
            engine read them.
        """
        splits = self.splits() if splits is None else splits
        indexed = list(enumerate(splits))
        # Positions (the hold-out key without an id column) from the files' own row counts, so
        # they do not depend on which task reads a split.
        first_rows = self.first_rows(splits) if statistics and holdout_fraction > 0 and not self.id_col else None
        work = _split_work(
            model,
            self.filesystem_spec,
            self.base,
            self.sequence_col,
            self.id_col,
            statistics,
            max_model_bytes(),
            holdout_fraction if statistics else 0.0,
            first_rows,
        )
        return self.map_splits(work, indexed)

    def map_splits(
        self, work: Callable[[Iterable[tuple[int, Split]]], Iterator[dict[str, Any]]], indexed: list[tuple[int, Split]]
    ) -> list[dict[str, Any]]:
        """``work`` over ``(index, split)`` pairs on this engine: Spark tasks of :func:`task_groups`, or
        this process; the records it yields (keys ``partition`` and ``batch``), in that order.

        ``work`` is pickled to the executors: a module-level function or a closure over small values.
        """
        if not indexed:
            return []
        if self.engine == "spark":
            from hmm.distributed.spark import default_parallelism, is_connect

            groups = task_groups(indexed, default_parallelism(self.spark))
            if is_connect(self.spark):
                # Spark Connect has no RDDs: row t of a range with one row per partition is task t,
                # which runs ``work`` over groups[t] (in the pickled closure) and returns each record
                # pickled, whatever its fields (E-step or decode records).
                tasks = self.spark.range(0, len(groups), 1, len(groups))
                rows = tasks.mapInArrow(_spark_task(work, groups), "record binary").collect()
                records = [pickle.loads(row.record) for row in rows]
            else:
                # A classic session runs the same tasks as an RDD of the task numbers: no SQL query to
                # plan and compile per iteration (measured at 1M, warm: the JVM's CPU per iteration
                # 0.10-0.14 -> 0.04-0.06 s, the wall 0.04 s shorter, the same records).
                numbers = self.spark.sparkContext.parallelize(range(len(groups)), len(groups))
                records = [pickle.loads(record) for record in numbers.mapPartitions(_rdd_task(work, groups)).collect()]
        else:
            records = list(work(indexed))
        return sorted(records, key=lambda r: (r["partition"], r["batch"]))

    # ------------------------------------------------------------- passes

    def scan(self, model: BaseHMM) -> Scan:
        """Validate every row and count; the first bad rows are reported by id.

        Parameters
        ----------
        model : BaseHMM
            Whose rules apply (its parameters are not needed).

        Returns
        -------
        Scan
            Counts, the largest symbol (categorical) or the number of features, and every
            batch's error, plus one if batches disagree on the number of features.
        """
        splits = self.splits()
        records = self.records(model, statistics=False, splits=splits)
        widths = {r["n_features"] for r in records if r["n_features"] is not None}
        errors = [r["error"] for r in records if r["error"]]
        if len(widths) > 1:
            errors.append(self._width_error(splits, [r for r in records if r["n_features"] is not None]))
        symbols = [r["max_symbol"] for r in records if r["max_symbol"] is not None]
        names = None
        if not errors:
            try:
                names = vocabulary(
                    records, lambda r: f"{splits[r['partition']].describe(self.base)}, batch {r['batch']}"
                )
            except InvalidSequenceError as error:
                errors.append(str(error))
        return Scan(
            n_sequences=sum(r["n_sequences"] for r in records),
            n_observations=sum(r["n_observations"] for r in records),
            max_symbol=max(symbols) if symbols else None,
            n_features=widths.pop() if len(widths) == 1 else None,
            errors=errors,
            symbols=names,
        )

    def _width_error(self, splits: list[Split], records: list[dict[str, Any]]) -> str:
        """The first batch whose observations have another number of features than the first batch's."""
        first = records[0]
        other = next(r for r in records if r["n_features"] != first["n_features"])

        def where(record: dict[str, Any]) -> str:
            return f"{splits[record['partition']].describe(self.base)}, batch {record['batch']}"

        return (
            f"{where(other)}: observations have {other['n_features']} features but those of {where(first)} have "
            f"{first['n_features']} (every observation of the data needs the same number of features)"
        )

    def first_rows(self, splits: list[Split]) -> list[int]:
        """The position in the data of each split's first row, from the Parquet footers' row counts."""
        import pyarrow.parquet as pq

        filesystem = self.filesystem_spec.open()
        positions, row, footers = [], 0, {}
        for split in splits:
            if split.path not in footers:
                with filesystem.open_input_file(split.path) as handle:
                    footers[split.path] = pq.ParquetFile(handle).metadata
            metadata = footers[split.path]
            groups = range(metadata.num_row_groups) if split.row_groups is None else split.row_groups
            positions.append(row)
            row += sum(metadata.row_group(g).num_rows for g in groups)
        return positions

    def evaluate(self, models: list[BaseHMM], holdout_fraction: float = 0.0) -> Evaluation:
        """The E-step of every model on one pass over the data, sequences held out by ``holdout_fraction``.

        Parameters
        ----------
        models : list of BaseHMM
            Models with parameters (:class:`hmm.core.candidates.CandidateSet`).
        holdout_fraction : float, default=0
            About this share of sequences (by :attr:`id_col`, else by position) gets no statistics.

        Returns
        -------
        Evaluation
            Each model's statistics and held-out log-likelihood, summed in (split, batch) order:
            bit-identical on every run and with either engine; for one model and no hold-out, the
            statistics are bit for bit :meth:`statistics`'.

        Raises
        ------
        InvalidSequenceError
            The first bad batch's error.
        """
        from hmm.core.candidates import CandidateSet

        candidates = CandidateSet(models)
        records = self.records(candidates, statistics=True, holdout_fraction=holdout_fraction)
        stats = sum_statistics(candidates, records)
        holdout, n_holdout = sum_holdout(records, len(models))
        return Evaluation(
            statistics=stats.parts,
            holdout_log_likelihoods=holdout.tolist(),
            n_sequences=sum(r["n_sequences"] for r in records),
            n_observations=sum(r["n_observations"] for r in records),
            n_holdout=n_holdout,
        )

    def statistics(self, model: BaseHMM) -> Any:
        """The E-step over every sequence.

        Parameters
        ----------
        model : BaseHMM
            A model with parameters.

        Returns
        -------
        SufficientStats
            Summed in (split, batch) order: bit-identical on every run and with either engine.

        Raises
        ------
        InvalidSequenceError
            The first bad batch's error (:func:`hmm.distributed.arrow.sum_statistics`).
        """
        return sum_statistics(model, self.records(model, statistics=True))

    def sample(
        self, model: BaseHMM, n_sequences: int = INIT_SAMPLE_SEQUENCES, holdout_fraction: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n_sequences`` sequences in split order (read here), for data-dependent initialisation.

        Parameters
        ----------
        model : BaseHMM
            Says whether frames are symbols.
        n_sequences : int, default=INIT_SAMPLE_SEQUENCES
            At most this many rows.
        holdout_fraction : float, default=0
            Skip the sequences the E-step holds out (:func:`hmm.distributed.arrow.holdout_rows`, keyed
            by id or by position in the data as there), so a held-out score never scores sequences
            the initial parameters were drawn from. Read in this process: the same on both engines.

        Returns
        -------
        X : ndarray of shape (n_observations,) if symbols, else (n_observations, n_features)
            The sample's frames, concatenated.
        offsets : ndarray of shape (n_sampled + 1,), dtype int64
            Sequence boundaries in ``X``.

        Raises
        ------
        InvalidSequenceError
            The data has no sequences (none that is not held out), or a sampled row breaks a rule.
        """
        import pyarrow as pa

        filesystem = self.filesystem_spec.open()
        batches: list[pa.RecordBatch] = []
        remaining = n_sequences
        holdout = holdout_fraction > 0
        columns = [self.sequence_col] + ([self.id_col] if holdout and self.id_col else [])
        row = 0  # the position in the data of the batch's first row: the hold-out key without an id column
        for split in self.splits():
            for batch in read_split(filesystem, split, columns):
                rows = batch.num_rows
                if holdout:
                    held = holdout_rows(batch, self.id_col, row, holdout_fraction)
                    batch = batch.filter(pa.array(~held))
                row += rows
                batches.append(batch.select([self.sequence_col]).slice(0, remaining))
                remaining -= batches[-1].num_rows
                if not remaining:
                    break
            if not remaining:
                break
        if not any(batch.num_rows for batch in batches):
            held_note = " that are not held out" if holdout else ""
            raise InvalidSequenceError(f"data URI {self.uri} has no sequences{held_note}")
        table = pa.Table.from_batches(batches)
        return arrow_sequences(table.column(self.sequence_col), model.observes_symbols)


def task_groups(splits: list[tuple[int, Split]], parallelism: int) -> list[list[tuple[int, Split]]]:
    """The splits in consecutive groups of about equal bytes, one Spark task each.

    As many groups as task slots, or one per ``SPLIT_BYTES`` of data if that
    is more: each Spark task costs tens of milliseconds whatever it reads
    (measured: 4 empty tasks on 2 cores take 50-60 ms longer than 2), which
    small data would otherwise pay per file. Which task reads a split does not
    change its records, so the grouping never changes the statistics.

    Parameters
    ----------
    splits : list of (int, Split)
        The splits with their indices, in order.
    parallelism : int
        Spark's task slots (``defaultParallelism``).

    Returns
    -------
    list of list of (int, Split)
        Non-empty groups of consecutive splits, each split in the group where its middle byte falls.
    """
    weights = [max(split.size, 1) for _, split in splits]
    total = sum(weights)
    count = min(len(splits), max(parallelism, -(-total // SPLIT_BYTES)))
    groups: list[list[tuple[int, Split]]] = [[] for _ in range(count)]
    done = 0
    for item, weight in zip(splits, weights, strict=True):
        groups[(2 * done + weight) * count // (2 * total)].append(item)  # where the split's middle byte falls
        done += weight
    return [group for group in groups if group]


def _spark_task(work: Any, groups: list[list[tuple[int, Split]]]) -> Any:
    """The function ``mapInArrow`` runs over the task numbers: ``work`` over each one's group of splits."""

    def task(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        from hmm.distributed.spark import freeze_worker_heap

        freeze_worker_heap()
        schema = pa.schema([("record", pa.binary())])

        def message(pickled: list[bytes]) -> pa.RecordBatch:
            return pa.RecordBatch.from_arrays([pa.array(pickled, pa.binary())], schema=schema)

        for batch in batches:
            for number in batch.column(0).to_pylist():
                # Records go back in Arrow batches of up to RECORD_MESSAGE_BYTES, not one each: an
                # E-step record is a few kB, and every Arrow batch is a message for the JVM.
                pickled: list[bytes] = []
                size = 0
                for record in work(groups[number]):
                    pickled.append(pickle.dumps(record))
                    size += len(pickled[-1])
                    if size >= RECORD_MESSAGE_BYTES:
                        yield message(pickled)
                        pickled, size = [], 0
                if pickled:
                    yield message(pickled)

    return task


def _rdd_task(work: Any, groups: list[list[tuple[int, Split]]]) -> Any:
    """The function ``mapPartitions`` runs over the task numbers of a classic session: as :func:`_spark_task`,
    each record pickled (pyspark batches them into few messages itself)."""

    def task(numbers: Iterable[int]) -> Iterator[bytes]:
        from hmm.distributed.spark import freeze_worker_heap

        freeze_worker_heap()
        for number in numbers:
            for record in work(groups[number]):
                yield pickle.dumps(record)

    return task


def _compressed_bytes(row_group: Any) -> int:
    return sum(row_group.column(c).total_compressed_size for c in range(row_group.num_columns))


#: What pyarrow's OSError says when it cannot decode a Parquet file, rather than read it.
_DAMAGED = ("thrift", "corrupt", "unexpected end of stream", "decompress", "magic bytes", "out of bounds")


def _damaged(error: OSError) -> bool:
    message = str(error).lower()
    return any(marker in message for marker in _DAMAGED)


def local_files(root: str, uri: str) -> list[tuple[str, int | None, int | None]]:
    """``(path, size, mtime_ns)`` of the regular files at or below ``root``, each file once.

    Symbolic links are followed, but a directory already listed (a link
    looping back to an ancestor, or a second link to the same directory) is
    not listed again, and a file reached by several paths (links, hard
    links) is listed under the first in name order, so no data is read twice.
    Hidden names are skipped; a dangling link, a FIFO, socket or device is
    refused by name: it would be missing data, or a read that never ends.

    Parameters
    ----------
    root : str
        The data's local path: a file or a directory.
    uri : str
        The data URI, for error messages.

    Returns
    -------
    list of (str, int or None, int or None)
        Path, size in bytes and modification time in nanoseconds of each file (the followed stat).

    Raises
    ------
    InvalidSequenceError
        Nothing is at ``root``, or a path is not a regular file or directory, or vanished while listed.
    """
    info = _stat(root, uri)
    if info is None:
        raise InvalidSequenceError(f"data URI {uri} does not exist")
    if not stat.S_ISDIR(info.st_mode):
        _check_regular(root, info, uri)
        return [(root, info.st_size, info.st_mtime_ns)]
    files: dict[tuple[int, int], tuple[str, int | None, int | None]] = {}
    listed = {(info.st_dev, info.st_ino)}
    pending = [root]  # depth first, in name order: a stack, children pushed in reverse
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                names = sorted(entry.name for entry in listing)
        except OSError as error:
            raise InvalidSequenceError(f"data URI {uri}: cannot list {directory}: {error.strerror}") from None
        below = []
        for name in names:
            path = os.path.join(directory, name)
            if _hidden(path, root):
                continue
            found = _stat(path, uri)
            if found is None:
                if not os.path.islink(path):  # removed since the directory was listed
                    raise InvalidSequenceError(f"data URI {uri}: {path} disappeared while the data was listed")
                raise InvalidSequenceError(
                    f"data URI {uri}: {path} is a symbolic link to {os.readlink(path)!r}, which does not exist"
                )
            identity = (found.st_dev, found.st_ino)
            if stat.S_ISDIR(found.st_mode):
                if identity not in listed:
                    listed.add(identity)
                    below.append(path)
                continue
            _check_regular(path, found, uri)
            files.setdefault(identity, (path, found.st_size, found.st_mtime_ns))
        pending.extend(reversed(below))
    return list(files.values())


def _stat(path: str, uri: str) -> os.stat_result | None:
    """``os.stat`` (links followed), None if nothing is there."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:  # a link loop (ELOOP), a permission, a name too long
        raise InvalidSequenceError(f"data URI {uri}: cannot read {path}: {error.strerror}") from None


def _check_regular(path: str, info: os.stat_result, uri: str) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    kind = {
        stat.S_IFIFO: "a FIFO",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
    }.get(stat.S_IFMT(info.st_mode), "not a regular file")
    raise InvalidSequenceError(f"data URI {uri}: {path} is {kind}, not a Parquet file (data must be regular files)")


def _hidden(path: str, base: str) -> bool:
    """Spark's and pyarrow's rule: names below the data root starting with ``.`` or ``_`` are not data."""
    return any(part.startswith((".", "_")) for part in os.path.relpath(path, base).split("/"))


def _split_work(
    model: BaseHMM | CandidateSet,
    filesystem_spec: FileSystemSpec,
    base: str,
    sequence_col: str,
    id_col: str | None,
    statistics: bool,
    limit: int,
    holdout_fraction: float = 0.0,
    first_rows: list[int] | None = None,
) -> Any:
    """What each task runs over its ``(index, split)`` pairs (module level: pickled small).

    ``limit``: the driver's model size limit, so every executor applies the same. ``first_rows``:
    each split's first row position (a hold-out without an id column).
    """

    def work(indexed_splits: Iterable[tuple[int, Split]]) -> Iterator[dict[str, Any]]:
        filesystem = filesystem_spec.open()
        for index, split in indexed_splits:
            first_row = None if first_rows is None else first_rows[index]
            yield from split_records(
                model,
                filesystem,
                base,
                index,
                split,
                sequence_col,
                id_col,
                statistics,
                limit,
                holdout_fraction,
                first_row,
            )

    return work

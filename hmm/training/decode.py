"""The decode step: a published model (or a model file) and Parquet sequences -> Parquet outputs keyed by id.

The output URI (``file:///path`` or ``s3://bucket/prefix``) is a store of its own::

    _DECODE.json          created first: what the output is a decode of (model SHA-256, data files, columns, outputs)
    part-<split>.parquet  one per split of the data (hmm.distributed.sources), each created once
    _SUCCESS              created last: the same definition and every part's SHA-256 and row count

Every object is created with a put-if-absent (:meth:`hmm.training.store.Store.create_if_absent`:
a fully written temporary file hard-linked to its name, or an S3 conditional write), so a part is
there completely or not at all, and nothing is written twice. Readers take the output once
``_SUCCESS`` exists (Spark's and pyarrow's readers skip ``_`` names, so they read exactly the
parts). A re-run after a crash checks ``_DECODE.json``, skips the parts already committed and
decodes the others; a finished output (``_SUCCESS``) is returned as it is. An output URI that
holds anything else (another model, other data or columns, other outputs, unrelated objects) is
refused before anything is written, as are an unknown model, data that does not fit the model
and a missing id column.

Outputs (``--outputs``): ``viterbi`` (the Viterbi path, ``array<int>``), ``log_likelihood`` (of
the sequence, ``double``), ``posterior`` (``predict_proba``, T x K ``array<array<double>>``) and
``filtered`` (``predict_filtered_proba``, causal, T x K). Each value equals the library's on the
same sequence, bit for bit, on both engines.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hmm import __version__
from hmm.core.limits import max_model_bytes
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed.arrow import arrow_sequences, inference_arrays, locate_error
from hmm.distributed.sources import FileSystemSpec, ParquetSequences, Split, read_split
from hmm.distributed.uris import InvalidURIError, brief, check_uri
from hmm.training.commits import FAULT_ENV, CorruptObjectError, Training, TrainingError
from hmm.training.spec import COLUMN
from hmm.training.steps import data_files
from hmm.training.store import MissingObjectError, Store, open_store

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from hmm.core.base import BaseHMM

#: Output name (``--outputs`` and the output column) -> what :meth:`BaseHMM.infer_batch` computes.
DECODE_OUTPUTS = {
    "viterbi": "states",
    "log_likelihood": "log_likelihood",
    "posterior": "posteriors",
    "filtered": "filtered",
}
CLAIM_KEY = "_DECODE.json"
SUCCESS_KEY = "_SUCCESS"
#: The fields of the definition that say what an output is (the model's description is not one:
#: the same model file reached by another path is the same model).
DEFINING = ("model_sha256", "data", "files", "sequence_col", "id_col", "outputs")
#: Largest model file read from a path (a model is kilobytes to megabytes).
MAX_MODEL_FILE_BYTES = 2**30


class UnknownModelError(ValueError):
    """The model named does not exist: no such training, no published model, no such file."""


class OutputConflictError(TrainingError):
    """The output URI holds something other than this decode; nothing was written."""


def part_key(index: int) -> str:
    return f"part-{index:05d}.parquet"


def parse_outputs(text: str | Sequence[str]) -> list[str]:
    """Output names from ``viterbi,log_likelihood,...`` (or a list), in :data:`DECODE_OUTPUTS` order."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in DECODE_OUTPUTS]
    if unknown or not names:
        raise ValueError(f"outputs {brief(text)}: choose one or more of {', '.join(DECODE_OUTPUTS)} (comma-separated)")
    return [n for n in DECODE_OUTPUTS if n in names]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def published_model(store_uri: str, training_id: str) -> tuple[BaseHMM, dict[str, Any], Any]:
    """The model readers follow: the highest ``model/<k>/PUBLISHED`` of the training, its SHA-256 checked.

    Returns ``(model, description, spec)``.
    """
    from hmm.core import persistence

    store = open_store(store_uri)
    training = Training(store, training_id)
    if not training.has_spec():
        raise UnknownModelError(f"training {training_id!r} does not exist in {store_uri}")
    marker = training.published()
    if marker is None:
        raise UnknownModelError(
            f"training {training_id!r} has no published model in {store_uri}: publish one first (hmm-em finalize)"
        )
    iteration = marker["iteration"]
    key = training.model_key(iteration, "model.npz")
    expected = marker.get("files", {}).get("model.npz") if isinstance(marker.get("files"), dict) else None
    data = store.read(key)
    digest = _sha256(data)
    if expected != digest:
        raise CorruptObjectError(
            f"published model {store.url(key)} has SHA-256 {digest}, its PUBLISHED marker records {expected}"
        )
    try:
        model = persistence.loads(data, source=store.url(key))
        model.check_parameters()
    except ValueError as error:
        raise CorruptObjectError(f"published model {store.url(key)} is invalid: {error}") from None
    description = {"training_id": training_id, "iteration": iteration, "source": store.url(key)}
    return model, {**description, "sha256": digest}, training.spec()


def model_file(location: str) -> tuple[BaseHMM, dict[str, Any]]:
    """A model saved by ``model.save`` (or a training's ``model.npz``): a path, ``file://`` or ``s3://`` URI."""
    from hmm.core import persistence

    if location.startswith(("file://", "s3://")):
        try:
            check_uri(location, "model file")
        except InvalidURIError as error:
            raise UnknownModelError(str(error)) from None
        parent, _, name = location.rpartition("/")
        try:
            data = open_store(parent).read(name)
        except MissingObjectError:
            raise UnknownModelError(f"model file {location} does not exist") from None
    else:
        try:
            if not os.path.isfile(location):
                raise UnknownModelError(f"model file {brief(location)} does not exist or is not a regular file")
            with open(location, "rb") as file:
                data = file.read(MAX_MODEL_FILE_BYTES + 1)
        except OSError as error:
            raise UnknownModelError(f"cannot read model file {brief(location)}: {error.strerror or error}") from None
        if len(data) > MAX_MODEL_FILE_BYTES:
            raise UnknownModelError(f"model file {brief(location)} is larger than {MAX_MODEL_FILE_BYTES} bytes")
    model = persistence.loads(data, source=location)  # InvalidModelFileError (a ValueError) names what is wrong
    model.check_parameters()
    return model, {"source": location, "sha256": _sha256(data)}


def check_data(model: BaseHMM, source: ParquetSequences, splits: list[Split]) -> pa.DataType:
    """Refuse data the model cannot decode, before anything is written; the id column's type.

    Every file must have the sequence and id columns, with the types of the first file; the first
    batch must pass the model's checks (kind of observations, number of features, symbols).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert source.id_col is not None
    filesystem = source.filesystem_spec.open()
    first: dict[str, pa.DataType] = {}
    seen: set[str] = set()
    for split in splits:
        if split.path in seen:
            continue
        seen.add(split.path)
        name = split.file_name(source.base)
        try:
            with filesystem.open_input_file(split.path) as handle:
                schema = pq.read_schema(handle)
        except pa.ArrowInvalid as error:  # an OSError (a read that failed) propagates: the CLI's exit 4
            raise InvalidSequenceError(
                f"data {source.uri}: file {name} is not a readable Parquet file ({error})"
            ) from None
        for column in (source.sequence_col, source.id_col):
            if column not in schema.names:
                kind = "id" if column == source.id_col else "sequence"
                raise InvalidSequenceError(
                    f"data {source.uri}: file {name} has no {kind} column {column!r} (columns: {sorted(schema.names)})"
                )
            kind_of = schema.field(column).type
            if first.setdefault(column, kind_of) != kind_of:
                raise InvalidSequenceError(
                    f"data {source.uri}: file {name} has column {column!r} of type {kind_of}, "
                    f"the first file has {first[column]}"
                )
    batch = next(read_split(filesystem, splits[0], [source.sequence_col]), None)
    if batch is not None:
        try:
            X, offsets = arrow_sequences(batch.column(source.sequence_col), model.observes_symbols)
            model.check_batch(X, offsets)
        except ValueError as error:
            size = f", n_features={model.n_features}" if getattr(model, "n_features", None) is not None else ""
            raise InvalidSequenceError(
                f"data {source.uri} does not fit the model (a {type(model).__name__}{size}): "
                f"{splits[0].describe(source.base)}, batch 0: {error}"
            ) from None
    return first[source.id_col]


def _definition_differences(stored: dict[str, Any], definition: dict[str, Any]) -> list[str]:
    return [field for field in DEFINING if stored.get(field) != definition[field]]


def _read_json(store: Store, key: str) -> dict[str, Any]:
    try:
        value = json.loads(store.read(key))
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not all(field in value for field in DEFINING):
        raise CorruptObjectError(f"{store.url(key)} is not a decode's {key}")
    return value


def _conflict(output_uri: str, stored: dict[str, Any], definition: dict[str, Any]) -> OutputConflictError:
    fields = _definition_differences(stored, definition)
    return OutputConflictError(
        f"output {output_uri} already holds another decode (fields {fields} differ); nothing was written. "
        "Choose another output URI"
    )


def _fault(point: str) -> None:
    """SIGKILL this process at ``point`` when :data:`FAULT_ENV` names it (the crash tests)."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class PreparedDecode:
    """What :func:`decode` checked before writing anything."""

    model: BaseHMM
    source: ParquetSequences
    splits: list[Split]
    id_type: Any  # the id column's Arrow type
    definition: dict[str, Any]
    output: str
    finished: dict[str, Any] | None  # the manifest, when this decode is finished already
    claimed: bool  # an earlier run of this decode claimed the output (it may have committed parts)


def prepare_decode(
    output_uri: str,
    data_uri: str,
    *,
    store_uri: str | None = None,
    training_id: str | None = None,
    model_path: str | None = None,
    outputs: str | Sequence[str] = ("viterbi",),
    sequence_col: str | None = None,
    id_col: str | None = None,
    engine: str = "local",
    spark: SparkSession | None = None,
) -> PreparedDecode:
    """Every check of :func:`decode`, nothing written: the model, the data against it, the output URI.

    Raises :class:`UnknownModelError`, ``ValueError`` s naming the bad input, or
    :class:`OutputConflictError` when the output URI holds anything but this decode.
    """
    output_uri = check_uri(output_uri, "output URI")
    check_uri(data_uri, "data URI")
    names = parse_outputs(outputs)
    if (training_id is None) == (model_path is None):
        raise ValueError("name the model by a training (store URI and training id) or by a model file, not both")
    if training_id is not None:
        if store_uri is None:
            raise ValueError("a training id needs the store URI it is in")
        model, described, spec = published_model(store_uri, training_id)
        sequence_col = sequence_col or spec.sequence_col
        id_col = id_col or spec.id_col
    else:
        assert model_path is not None
        model, described = model_file(model_path)
    sequence_col = sequence_col or "sequence"
    id_col = id_col or "id"
    for name in (sequence_col, id_col):
        if not COLUMN.fullmatch(name):
            raise ValueError(f"column name {brief(name)}: a column name is letters, digits and '_'")
    if id_col in DECODE_OUTPUTS or id_col == sequence_col:
        raise ValueError(f"the id column {id_col!r} cannot be named like an output or the sequence column")
    model.algorithm = "viterbi"  # the path output is the Viterbi path whatever the model's decoder setting
    source = ParquetSequences(data_uri, sequence_col, id_col, engine=engine, spark=spark)
    splits = source.splits()
    id_type = check_data(model, source, splits)
    definition = {
        "model_sha256": described["sha256"],
        "model": {k: v for k, v in described.items() if k != "sha256"},
        "data": data_uri,
        "files": data_files(splits, source.base),
        "sequence_col": sequence_col,
        "id_col": id_col,
        "outputs": names,
    }
    store = open_store(output_uri)
    finished = None
    claimed = False
    if store.exists(SUCCESS_KEY):
        finished = _read_json(store, SUCCESS_KEY)
        if _definition_differences(finished, definition):
            raise _conflict(output_uri, finished, definition)
    elif store.exists(CLAIM_KEY):
        claim = _read_json(store, CLAIM_KEY)
        if _definition_differences(claim, definition):
            raise _conflict(output_uri, claim, definition)
        claimed = True
    else:
        present = store.list("")
        if present:
            raise OutputConflictError(
                f"output {output_uri} already holds {len(present)} object(s) (e.g. {present[0]}) and no decode; "
                "nothing was written. Choose another output URI"
            )
    return PreparedDecode(model, source, splits, id_type, definition, output_uri, finished, claimed)


def decode(
    output_uri: str,
    data_uri: str,
    *,
    store_uri: str | None = None,
    training_id: str | None = None,
    model_path: str | None = None,
    outputs: str | Sequence[str] = ("viterbi",),
    sequence_col: str | None = None,
    id_col: str | None = None,
    engine: str = "spark",
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Decode every sequence of ``data_uri`` into ``output_uri``; idempotent and restartable.

    The model: the published model of ``training_id`` in ``store_uri`` (whose spec's
    ``sequence_col`` and ``id_col`` are the defaults), or the file ``model_path``. Returns
    ``status`` (``decoded`` or ``exists``), ``output``, ``n_rows``, ``n_parts``, ``skipped_parts``
    (committed by an earlier run) and the model's description.
    """
    prepared = prepare_decode(
        output_uri,
        data_uri,
        store_uri=store_uri,
        training_id=training_id,
        model_path=model_path,
        outputs=outputs,
        sequence_col=sequence_col,
        id_col=id_col,
        engine=engine,
        spark=spark,
    )
    output_uri, definition = prepared.output, prepared.definition
    if prepared.finished is not None:
        return _result("exists", output_uri, prepared.finished, skipped=len(prepared.finished["parts"]))
    store = open_store(output_uri)
    if not prepared.claimed and not store.create_if_absent(
        CLAIM_KEY, json.dumps(definition, sort_keys=True, indent=2).encode()
    ):
        claim = _read_json(store, CLAIM_KEY)  # a concurrent run claimed it first
        if _definition_differences(claim, definition):
            raise _conflict(output_uri, claim, definition)
    committed = set(store.list(""))
    work = _part_work(
        prepared.model,
        definition["outputs"],
        prepared.source.filesystem_spec,
        prepared.source.base,
        definition["sequence_col"],
        definition["id_col"],
        prepared.id_type,
        output_uri,
        committed,
        max_model_bytes(),
    )
    records = prepared.source.map_splits(work, list(enumerate(prepared.splits)))
    errors = [r["error"] for r in records if r["error"]]
    if errors:
        more = f" ({len(errors) - 1} more split(s) have errors)" if len(errors) > 1 else ""
        raise InvalidSequenceError(
            f"data {data_uri} cannot be decoded: {errors[0]}{more}; the parts committed so far stay in "
            f"{output_uri}, which stays unfinished (no {SUCCESS_KEY})"
        )
    manifest = {
        **definition,
        "parts": {r["part"]: {"sha256": r["sha256"], "rows": r["rows"]} for r in records},
        "n_rows": sum(r["rows"] for r in records),
        "code_version": __version__,
        "completed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    if not store.create_if_absent(SUCCESS_KEY, json.dumps(manifest, sort_keys=True, indent=2).encode()):
        manifest = _read_json(store, SUCCESS_KEY)  # a concurrent run of the same decode finished first
    skipped = sum(1 for r in records if r["existed"])
    return _result("decoded", output_uri, manifest, skipped)


def _result(status: str, output_uri: str, manifest: dict[str, Any], skipped: int) -> dict[str, Any]:
    return {
        "status": status,
        "output": output_uri,
        "n_rows": manifest["n_rows"],
        "n_parts": len(manifest["parts"]),
        "skipped_parts": skipped,
        "model": manifest["model"],
        "outputs": manifest["outputs"],
    }


def _part_work(
    model: BaseHMM,
    names: list[str],
    filesystem_spec: FileSystemSpec,
    base: str,
    sequence_col: str,
    id_col: str,
    id_type: pa.DataType,
    output_uri: str,
    committed: set[str],
    limit: int,
) -> Any:
    """What each task runs over its ``(index, split)`` pairs: one part per split, one record per part.

    Executors write their parts to the output store themselves (so no output crosses to the
    driver) and send back only the part's name, SHA-256 and row count, or the split's error.
    """

    def work(indexed_splits: Iterable[tuple[int, Split]]) -> Iterator[dict[str, Any]]:
        filesystem = filesystem_spec.open()
        store = open_store(output_uri)
        for index, split in indexed_splits:
            key = part_key(index)
            record: dict[str, Any] = {"partition": index, "batch": 0, "part": key, "error": None, "existed": False}
            if key in committed:
                data = store.read(key)
                record["existed"] = True
            else:
                try:
                    data = _part_bytes(model, names, filesystem, base, split, sequence_col, id_col, id_type, limit)
                except InvalidSequenceError as error:
                    yield {**record, "error": str(error)}
                    continue
                if not store.create_if_absent(key, data):
                    data = store.read(key)  # another run committed this part first: describe its bytes
                    record["existed"] = True
                _fault("after-decode-part")
            yield {**record, "sha256": _sha256(data), "rows": _parquet_rows(data)}

    return work


def _output_schema(names: list[str], id_col: str, id_type: pa.DataType) -> pa.Schema:
    import pyarrow as pa

    frames = pa.list_(pa.list_(pa.float64()))
    types = {"viterbi": pa.list_(pa.int32()), "log_likelihood": pa.float64(), "posterior": frames, "filtered": frames}
    return pa.schema([(id_col, id_type), *((name, types[name]) for name in names)])


def _part_bytes(
    model: BaseHMM,
    names: list[str],
    filesystem: Any,
    base: str,
    split: Split,
    sequence_col: str,
    id_col: str,
    id_type: pa.DataType,
    limit: int,
) -> bytes:
    """One split decoded as a Parquet file (one row group per Arrow batch), in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _output_schema(names, id_col, id_type)
    kinds = [DECODE_OUTPUTS[name] for name in names]
    sink = pa.BufferOutputStream()
    where = split.describe(base)
    with pq.ParquetWriter(sink, schema) as writer:
        try:
            for number, batch in enumerate(read_split(filesystem, split, [sequence_col, id_col])):
                try:
                    arrays = inference_arrays(model, batch, sequence_col, kinds, limit)
                except ValueError as error:
                    ids = batch.column(id_col).to_pylist()
                    raise InvalidSequenceError(locate_error(error, where, number, ids)) from None
                columns = [batch.column(id_col), *(arrays[kind] for kind in kinds)]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        except pa.ArrowInvalid as error:
            raise InvalidSequenceError(f"{where}: is not a readable Parquet file ({error})") from None
        except InvalidSequenceError as error:
            message = str(error)
            raise InvalidSequenceError(message if message.startswith(where) else f"{where}: {message}") from None
    return bytes(sink.getvalue().to_pybytes())


def _parquet_rows(data: bytes) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows)

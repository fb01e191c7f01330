"""The three step kinds of a training, each idempotent and restartable.

* :func:`init_training`: validate the spec, scan the data once, write
  ``spec.json`` and iteration 0 (the initial parameters).
* :func:`em_iteration`: iteration k from committed k-1: E-step over the data,
  M-step, commit k with the log-likelihood of k-1 and the convergence flag.
* :func:`finalize`: publish the last committed parameters and a report.

``jobs/`` wraps each in a spark-submit entry point; ``hmm-em`` (:mod:`hmm.training.cli`)
chains them for people and local runs; the Airflow DAG submits them as EMR
steps. Running a step twice is a no-op the second time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hmm import __version__
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed.sources import ParquetSequences, Split
from hmm.training.commits import (
    CANDIDATE_STATUSES,
    CorruptObjectError,
    DataChangedError,
    Training,
    TrainingError,
    converged_after,
)
from hmm.training.spec import LATEST, InvalidSpecError, TrainingSpec
from hmm.training.store import Store, open_store

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from hmm.core.base import BaseHMM


#: How many bad batches a data scan names (the first bad row of each).
REPORTED_ERRORS = 5
#: The phases of an iteration step in its COMMIT ``timings``; the other ``*_seconds`` there
#: (``startup_seconds``, ``spark_session_seconds``, ``launch_seconds``) are the job's start-up.
STEP_PHASES = ("load_seconds", "estep_seconds", "mstep_seconds")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _step_identity(engine: str) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "engine": engine,
        "code_version": __version__,
        "emr_step_id": os.environ.get("EMR_STEP_ID"),
    }


def _source(spec: TrainingSpec, engine: str, spark: SparkSession | None) -> ParquetSequences:
    return ParquetSequences(spec.data, spec.sequence_col, spec.id_col, engine=engine, spark=spark)


#: A candidate's status in a COMMIT (:data:`hmm.training.commits.CANDIDATE_STATUSES`).
RUNNING, CONVERGED, PRUNED, STOPPED = CANDIDATE_STATUSES


@dataclass(frozen=True)
class PreparedTraining:
    """What ``init_training`` writes, computed without writing anything."""

    counts: dict[str, Any]
    models: list[BaseHMM]  # each candidate's initial parameters (TrainingSpec.candidates order)
    splits: list[Split]  # the data's files when it was scanned: iteration 0 pins them
    base: str

    @property
    def model(self) -> BaseHMM:
        """The first candidate's initial parameters (the only one's, without candidates)."""
        return self.models[0]


def prepare_training(
    spec: TrainingSpec,
    engine: str = "spark",
    spark: SparkSession | None = None,
    reference: BaseHMM | None = None,
) -> PreparedTraining:
    """Everything init does before it writes: list and scan the data (the first bad rows are
    reported), initialise from the sample, and check the initial parameters and one EM update
    of them on the sample against the model's own parameter checks.

    Parameters
    ----------
    spec : TrainingSpec
        What to train on what.
    engine : {"spark", "local"}, default="spark"
        Read the data in Spark tasks, or in this process with pyarrow.
    spark : SparkSession, optional
        The ``spark`` engine's session; default: ``getOrCreate`` when first needed.
    reference : BaseHMM, optional
        A published model (``init_from``): the first candidate with its number of states starts
        from its parameters instead of the sample.

    Returns
    -------
    PreparedTraining
        The data's counts (``n_sequences``, ``n_observations``, ``max_symbol``, ``n_features``),
        every candidate initialised from the same sample, the data's splits and root.

    Raises
    ------
    InvalidSequenceError
        The data has bad rows (the first :data:`REPORTED_ERRORS` bad batches are named) or no sequences.
    InvalidSpecError
        The spec's model arguments do not give a usable model on this data.
    """
    source = _source(spec, engine, spark)
    splits = source.splits()
    # The largest number of states sets the memory the data may make a model need.
    scan = source.scan(spec.build_model(max(spec.components)))
    if scan.errors:
        shown = "; ".join(scan.errors[:REPORTED_ERRORS])
        hidden = len(scan.errors) - REPORTED_ERRORS
        more = f" (and {hidden} more batch(es) with errors)" if hidden > 0 else ""
        raise InvalidSequenceError(f"data {spec.data} is invalid: {shown}{more}")
    if scan.n_sequences == 0:
        raise InvalidSequenceError(f"data {spec.data} has no sequences")
    counts: dict[str, Any] = {
        "n_sequences": scan.n_sequences,
        "n_observations": scan.n_observations,
        "max_symbol": scan.max_symbol,
        "n_features": scan.n_features,
    }

    def fix_vocabulary(model: BaseHMM) -> BaseHMM:
        # Named symbols: the vocabulary is fixed here, once, and travels with the parameters of every
        # iteration; checking the settings sizes the model by it (n_features = the vocabulary's size).
        if scan.symbols is not None:
            try:
                model.infer_symbols(scan.symbols)
            except ValueError as error:
                raise InvalidSequenceError(f"data {spec.data} is invalid: {error}") from None
        model.check_settings()
        return model

    sampler = fix_vocabulary(spec.build_model())
    if scan.symbols is not None:
        counts["n_symbols"] = len(sampler.symbols)
    # Held-out sequences stay out of the initialisation too: their score is then of unseen data.
    sample, offsets = source.sample(sampler, holdout_fraction=spec.holdout_fraction)
    warm = warm_candidate(spec, reference)
    models = []
    for index, (n_components, seed) in enumerate(spec.candidates()):
        model = fix_vocabulary(spec.build_model(n_components, seed))
        if index == warm and reference is not None:
            try:
                model = warm_start(model, reference, counts)
            except ValueError as error:
                raise InvalidSpecError(f"spec field 'init_from' is {spec.init_from!r}: {error}") from None
        elif counts["max_symbol"] is not None:
            if reference is not None and getattr(model, "n_features", None) is None:
                # The challengers read the reference's symbols too, so their states compare with its.
                model.n_features = max(reference.n_features, counts["max_symbol"] + 1)
            model.infer_n_features(counts["max_symbol"])
        try:
            if index == warm and reference is not None:
                X = model.check_batch(sample, offsets)
            else:
                X = model.initialize_from_sample(sample, offsets)
            trial = copy.deepcopy(model)
            trial.update(trial.batch_statistics(X, offsets))
            trial.check_parameters()
        except (ValueError, TypeError, IndexError) as error:
            raise InvalidSpecError(
                f"spec field 'model_args' does not give a usable {spec.model} model on this data: {error}"
            ) from None
        models.append(model)
    return PreparedTraining(counts, models, splits, source.base)


def warm_candidate(spec: TrainingSpec, reference: BaseHMM | None) -> int | None:
    """The index of the candidate that starts from ``reference``: the first with its number of states.

    Raises
    ------
    InvalidSpecError
        No candidate has the reference's number of states.
    """
    if reference is None:
        return None
    for index, (n_components, _) in enumerate(spec.candidates()):
        if n_components == reference.n_components:
            return index
    raise InvalidSpecError(
        f"spec field 'init_from' is {spec.init_from!r}: its model has {reference.n_components} states, "
        f"the spec trains {spec.components}"
    )


def warm_start(model: BaseHMM, reference: BaseHMM, counts: Mapping[str, Any]) -> BaseHMM:
    """``model`` (its settings) holding ``reference``'s fitted parameters, checked against the data's counts.

    Raises
    ------
    ValueError
        The reference is another kind of model, or cannot read the data: fewer symbols than the
        data's largest + 1 (or than the spec's ``n_features``), or another number of features.
    """
    if type(model) is not type(reference):
        raise ValueError(f"its model is a {type(reference).__name__}, the spec trains a {type(model).__name__}")
    width = getattr(reference, "n_features", None)
    if model.observes_symbols:
        if getattr(model, "n_features", None) not in (None, width):
            raise ValueError(f"its model has {width} symbols, the spec's model_args.n_features is {model.n_features}")
        if counts["max_symbol"] is not None and counts["max_symbol"] >= width:
            raise ValueError(f"its model has {width} symbols, the data has symbol {counts['max_symbol']}")
    elif counts["n_features"] is not None and counts["n_features"] != width:
        raise ValueError(f"its model has {width} features, the data {counts['n_features']}")
    # What a model file holds as fitted (hmm.core.persistence), and the size the data would set.
    for name in ("n_features", "startprob_", "transmat_", *type(reference)._fitted_emission_attributes):
        if hasattr(reference, name):
            setattr(model, name, copy.deepcopy(getattr(reference, name)))
    model.check_parameters()
    return model


def validate_data(spec: TrainingSpec, engine: str = "spark", spark: SparkSession | None = None) -> dict[str, Any]:
    """:func:`prepare_training`'s checks (nothing written); the data's counts.

    What ``hmm-em validate`` runs. Parameters and errors as :func:`prepare_training`.

    Returns
    -------
    dict
        ``n_sequences``, ``n_observations``, ``max_symbol`` (categorical, else None) and
        ``n_features`` (vector frames, else None).
    """
    return prepare_training(spec, engine, spark).counts


def init_training(
    store_uri: str,
    training_id: str,
    spec: TrainingSpec,
    engine: str = "spark",
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Write spec.json and iteration 0. Same spec again: no-op. Another spec: TrainingError.

    All or nothing: :func:`prepare_training` runs every check before anything is written.
    spec.json records this code's version as the training's ``code_version``; an existing
    spec.json keeps the version that created it. The record of iteration 0 pins the data
    (files, sizes, modification times, counts).

    Parameters
    ----------
    store_uri : str
        The store's root (``file:///path`` or ``s3://bucket/prefix``).
    training_id : str
        The training to create.
    spec : TrainingSpec
        What to train on what.
    engine : {"spark", "local"}, default="spark"
        Read the data in Spark tasks, or in this process with pyarrow.
    spark : SparkSession, optional
        The ``spark`` engine's session; default: ``getOrCreate`` when first needed.

    Returns
    -------
    dict
        ``status`` (``committed``, or ``exists`` when iteration 0 was there) and iteration 0's
        COMMIT record.

    Raises
    ------
    TrainingError
        The training exists with another spec.
    InvalidSequenceError, InvalidSpecError
        As :func:`prepare_training`; nothing is written.
    StoreError
        The store cannot be read or written.
    """
    spec = replace(spec, code_version=__version__)
    training = Training(open_store(store_uri), training_id)
    if training.has_spec():
        training.create(spec)  # raises if the stored spec differs
        if 0 in training.committed():
            return {"status": "exists", **training.record(0)}
    started = time.perf_counter()
    pin, reference = resolve_init_from(training, spec)
    prepared = prepare_training(spec, engine, spark, reference)
    record: dict[str, Any] = {
        "log_likelihood": None,
        "improvement": None,
        "converged": False,
        "n_sequences": prepared.counts["n_sequences"],
        "n_observations": prepared.counts["n_observations"],
        "data": {"files": data_files(prepared.splits, prepared.base)},
        "timings": {"total_seconds": time.perf_counter() - started},
        "step": _step_identity(engine),
        "committed_at": _now(),
    }
    if spec.init_from is not None:
        record["init_from"] = pin  # the reference finalize relabels to; None: "latest" found none
    if spec.has_candidates:
        warm = warm_candidate(spec, reference)
        record["candidates"] = []
        for index, ((n_components, seed), model) in enumerate(zip(spec.candidates(), prepared.models, strict=True)):
            params_key, digest = training.store_params(0, model)
            record["candidates"].append(
                {
                    "index": index,
                    "n_components": n_components,
                    "seed": seed,
                    "warm_start": index == warm,
                    "iteration": 0,
                    "params_key": params_key,
                    "params_sha256": digest,
                    "log_likelihood": None,
                    "holdout_log_likelihood": None,
                    "aic": None,
                    "bic": None,
                    "status": RUNNING,
                }
            )
    training.create(spec)
    won = training.commit(0, prepared.models[0], record, spec)
    return {"status": "committed" if won else "exists", **training.record(0)}


def resolve_init_from(training: Training, spec: TrainingSpec) -> tuple[dict[str, Any] | None, BaseHMM | None]:
    """The published model a training starts from (``init_from``) and where it is: nothing is written.

    ``init_from`` names a training of the same store, whose latest published model is taken; or
    ``"latest"``: the model published last (by ``published_at``) by any other training of the
    store whose spec equals this one but for ``data`` and ``init_from`` (:func:`same_setup`). It
    is found in the index finalize writes per setup (:func:`latest_published`), or for stores
    written before it by listing ``trainings/*/model/*/PUBLISHED``. ``"latest"`` finding none
    starts at random (a first run).

    Returns
    -------
    pin : dict or None
        ``training_id``, ``iteration``, ``model_key`` and ``model_sha256`` of the reference,
        which iteration 0's COMMIT records (so re-runs and finalize use that very model).
    reference : BaseHMM or None
        The reference model, its SHA-256 checked against its PUBLISHED marker.

    Raises
    ------
    InvalidSpecError
        ``init_from`` names no training of the store with a published model.
    """
    if spec.init_from is None:
        return None, None
    if spec.init_from == LATEST:
        source = latest_published(training, spec)
        if source is None:
            return None, None
    else:
        source = named_reference(training.store, spec, training.id)
    marker = source.published()
    assert marker is not None
    key = source.model_key(marker["iteration"], "model.npz")
    pin = {
        "training_id": source.id,
        "iteration": marker["iteration"],
        "model_key": key,
        "model_sha256": marker["files"].get("model.npz"),
    }
    return pin, load_reference(training, pin)


def named_reference(store: Store, spec: TrainingSpec, training_id: str | None = None) -> Training:
    """The training ``init_from`` names (not ``"latest"``), if it has a published model: reads, never writes.

    What ``hmm-em validate --store`` and the DAG's validate task check before anything is written.

    Raises
    ------
    InvalidSpecError
        ``init_from`` names no training of the store with a published model, or the training itself.
    """
    assert spec.init_from is not None and spec.init_from != LATEST
    source = Training(store, spec.init_from)
    if source.id == training_id or source.published() is None:
        raise InvalidSpecError(
            f"spec field 'init_from' is {spec.init_from!r}: the store {store.url('')} has no other "
            "training of that id with a published model (name one, or give 'latest')"
        )
    return source


def check_init_from(store_uri: str, spec: TrainingSpec, training_id: str | None = None) -> None:
    """Refuse (:class:`InvalidSpecError`) an ``init_from`` naming no training with a published model in the
    store at ``store_uri``; nothing to check without ``init_from`` or for ``"latest"`` (none: a random start)."""
    if spec.init_from is not None and spec.init_from != LATEST:
        named_reference(open_store(store_uri), spec, training_id)


def load_reference(training: Training, pin: dict[str, Any]) -> BaseHMM:
    """The published model ``pin`` names (:func:`resolve_init_from`), checked against its SHA-256."""
    from hmm.core import persistence

    data = training.store.read(pin["model_key"])
    url = training.store.url(pin["model_key"])
    if hashlib.sha256(data).hexdigest() != pin["model_sha256"]:
        raise CorruptObjectError(f"published model {url} is not the one its PUBLISHED marker records")
    return persistence.loads(data, source=url)


def same_setup(a: TrainingSpec, b: TrainingSpec) -> bool:
    """Whether two specs train the same thing but for their data (and what they were started from)."""
    ignore = ("data", "init_from")
    return {k: v for k, v in a.fields().items() if k not in ignore} == {
        k: v for k, v in b.fields().items() if k not in ignore
    }


#: Finalize indexes every publication under ``<SETUPS_PREFIX><setup digest>/`` (:func:`index_publication`),
#: so ``init_from: "latest"`` lists one small prefix instead of every training's objects. Entries are
#: created once like every training object (If-None-Match on S3; infra/'s bucket policy refuses any
#: other PUT there and any deletion); ``latest`` reads only their names, so the clusters' role may
#: create them and no role reads them.
SETUPS_PREFIX = "setups/"


def setup_digest(spec: TrainingSpec) -> str:
    """SHA-256 of what a spec trains but its ``data`` and ``init_from`` (:func:`same_setup`'s equality).

    From :meth:`TrainingSpec.definition` (fields at their defaults left out), so a field added later
    with a default does not move the trainings published before it to another setup.
    """
    definition = {k: v for k, v in spec.definition().items() if k not in ("data", "init_from")}
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def publication_key(spec: TrainingSpec, training_id: str, published_at: str) -> str:
    """``<SETUPS_PREFIX><setup digest>/<published_at, compact>-<training id>.json``: names sort by time."""
    stamp = published_at.replace("+00:00", "Z").replace("-", "").replace(":", "")
    return f"{SETUPS_PREFIX}{setup_digest(spec)}/{stamp}-{training_id}.json"


def index_publication(training: Training, spec: TrainingSpec, marker: Mapping[str, Any]) -> None:
    """Create the index entry of a PUBLISHED marker (once: a re-run or a second writer creates nothing).

    Its key follows from the marker (its ``published_at``) and the training, so every writer of that
    marker names the same entry; two trainings publishing at the same moment differ by training id.
    """
    files, published_at = marker.get("files"), marker.get("published_at")
    if not isinstance(files, dict) or not isinstance(published_at, str):
        return  # a marker written by code before ones had both: found by listing (latest_published)
    entry = {
        "training_id": training.id,
        "iteration": marker["iteration"],
        "model_sha256": files.get("model.npz"),
        "spec_sha256": marker.get("spec_sha256"),
        "published_at": marker["published_at"],
    }
    key = publication_key(spec, training.id, published_at)
    training.store.create_if_absent(key, json.dumps(entry, sort_keys=True, indent=2).encode())


def latest_published(training: Training, spec: TrainingSpec) -> Training | None:
    """The other training of the store with the same setup (:func:`same_setup`) that published last.

    Lists only the setup's index (:func:`index_publication`): the newest entry by
    (``published_at``, training id), a deterministic choice between trainings that published at the
    same moment. Trainings published before the index existed have no entry: when the index names
    none, the whole of ``trainings/`` is listed as before.
    """
    prefix = f"{SETUPS_PREFIX}{setup_digest(spec)}/"
    entries = []
    for key in training.store.list(prefix):
        stamp, _, name = key[len(prefix) :].partition("-")
        if name.endswith(".json") and name[: -len(".json")] != training.id:
            entries.append((stamp, name[: -len(".json")]))
    for _, training_id in sorted(entries, reverse=True):
        other = _published_same_setup(training, training_id, spec)
        if other is not None:
            return other[1]
    return _latest_published_by_listing(training, spec)


def _published_same_setup(training: Training, training_id: str, spec: TrainingSpec) -> tuple[str, Training] | None:
    """(``published_at``, the training) if ``training_id`` has a published model and the same setup."""
    try:
        other = Training(training.store, training_id)
        if not same_setup(other.spec(), spec):
            return None
        marker = other.published()
    except (TrainingError, InvalidSpecError):  # an unreadable neighbour is not a candidate reference
        return None
    return None if marker is None else (str(marker.get("published_at", "")), other)


def _latest_published_by_listing(training: Training, spec: TrainingSpec) -> Training | None:
    """:func:`latest_published` for stores written before the index: every training's PUBLISHED markers."""
    found: list[tuple[str, str, Training]] = []
    ids = set()
    for key in training.store.list("trainings/"):
        parts = key.split("/")
        if len(parts) == 5 and parts[2] == "model" and parts[4] == "PUBLISHED" and parts[1] != training.id:
            ids.add(parts[1])
    for training_id in sorted(ids):
        other = _published_same_setup(training, training_id, spec)
        if other is not None:
            found.append((other[0], training_id, other[1]))
    return max(found, key=lambda item: item[:2])[2] if found else None


def check_same_data(training: Training, pinned: dict[str, Any], splits: list[Split], base: str) -> None:
    """The data's files are the ones iteration 0 pinned (records without a pin pass).

    Parameters
    ----------
    training : Training
        The training, for the message.
    pinned : dict
        Iteration 0's COMMIT record.
    splits : list of Split
        The data's splits now.
    base : str
        The data root the splits' file names are relative to.

    Raises
    ------
    DataChangedError
        Files were added, removed or changed (size or modification time); the first three of
        each are named.
    """
    files = pinned.get("data", {}).get("files") if isinstance(pinned.get("data"), dict) else None
    if files is None:
        return
    now = {f[0]: f for f in data_files(splits, base)}
    then = {f[0]: f for f in files}
    added = sorted(set(now) - set(then))
    removed = sorted(set(then) - set(now))
    changed = sorted(name for name in set(now) & set(then) if list(now[name]) != list(then[name]))
    if added or removed or changed:
        what = "; ".join(
            f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
            for label, names in (("added", added), ("removed", removed), ("changed", changed))
            if names
        )
        raise DataChangedError(
            f"the data of training {training.id!r} changed since iteration 0 ({what}); nothing committed. "
            "Training on new data is a new training: start one with another training_id"
        )


def data_files(splits: list[Split], base: str) -> list[list[Any]]:
    """[name, bytes, modification time in ns] of each data file (a file cut in splits counts once).

    Parameters
    ----------
    splits : list of Split
        The data's splits.
    base : str
        The data root; names are relative to it.

    Returns
    -------
    list of [str, int or None, int or None]
        One entry per file, sorted by name: what iteration 0's COMMIT pins as ``data.files``.
    """
    files: dict[str, list[Any]] = {}
    for split in splits:
        name = split.file_name(base)
        files[name] = [name, split.file_size, split.mtime_ns]
    return [files[name] for name in sorted(files)]


def em_iteration(
    store_uri: str,
    training_id: str,
    iteration: int,
    engine: str = "spark",
    spark: SparkSession | None = None,
    startup: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Commit iteration ``iteration`` from committed ``iteration - 1``.

    The data must be what iteration 0 pinned (files, sizes, modification times, then sequence
    and observation counts): otherwise :class:`DataChangedError`, nothing committed.
    ``startup``: timings of the job process before this step (``*_seconds``, see
    :func:`hmm.training.cli.job_startup`), recorded in the COMMIT next to the step's own phases.

    Parameters
    ----------
    store_uri : str
        The store's root.
    training_id : str
        The training.
    iteration : int
        The iteration to commit, >= 1.
    engine : {"spark", "local"}, default="spark"
        Read the data in Spark tasks, or in this process with pyarrow.
    spark : SparkSession, optional
        The ``spark`` engine's session; default: ``getOrCreate`` when first needed.
    startup : dict of str to float, optional
        The job's start-up timings.

    Returns
    -------
    dict
        ``status`` (``committed``; ``exists`` when the iteration was committed already; ``lost``
        when another process committed it meanwhile) and the iteration's COMMIT record.

    Raises
    ------
    ValueError
        ``iteration`` is not an integer >= 1.
    TrainingError
        The training does not exist, iteration - 1 is not committed, or the training converged before.
    DataChangedError
        The data differs from what iteration 0 pinned.
    CorruptObjectError
        A stored object the step reads is not what the code wrote.
    InvalidSequenceError
        A row of the data breaks a rule.
    """
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
        raise ValueError(f"iteration must be an integer >= 1, got {iteration!r}")
    started = time.perf_counter()
    training = Training(open_store(store_uri), training_id)
    if not training.has_spec():
        raise TrainingError(f"training {training_id!r} does not exist in {store_uri}: run init_training first")
    committed = training.committed()
    if iteration in committed:
        return {"status": "exists", **training.record(iteration)}
    if iteration - 1 not in committed:
        latest = committed[-1] if committed else None
        raise TrainingError(
            f"iteration {iteration - 1} of training {training_id!r} is not committed (latest committed: {latest}); "
            f"run iteration {0 if latest is None else latest + 1} first"
        )
    spec = training.spec()
    previous = training.record(iteration - 1)
    if previous["converged"]:
        raise TrainingError(
            f"training {training_id!r} converged at iteration {iteration - 1}; there is no iteration {iteration}"
        )
    training.check_bound(previous, spec)
    past = [r for r in training.records() if r["iteration"] < iteration]
    first = past[0]
    # Without candidates (the spec's defaults) the COMMIT's own parameters are the one candidate.
    entries = previous.get("candidates") or [
        {"params_key": previous["params_key"], "params_sha256": previous["params_sha256"], "status": RUNNING}
    ]
    running = [index for index, entry in enumerate(entries) if entry["status"] == RUNNING]
    models = [
        training.load_stored(
            entries[index]["params_key"],
            entries[index]["params_sha256"],
            f"of iteration {iteration - 1}" + (f" (candidate {index})" if spec.has_candidates else ""),
        )
        for index in running
    ]
    source = _source(spec, engine, spark)
    check_same_data(training, first, source.splits(), source.base)
    loaded = time.perf_counter()
    evaluation = source.evaluate(models, spec.holdout_fraction)  # one pass over the data for every candidate
    estep = time.perf_counter()
    if (evaluation.n_sequences, evaluation.n_observations) != (first["n_sequences"], first["n_observations"]):
        raise DataChangedError(
            f"the data of training {training_id!r} changed since iteration 0: {evaluation.n_sequences} sequences and "
            f"{evaluation.n_observations} observations, iteration 0 had {first['n_sequences']} and "
            f"{first['n_observations']}; nothing committed. Training on new data is a new training"
        )
    entries = [dict(entry) for entry in entries]
    updated: dict[int, BaseHMM] = {}
    histories = {}
    for index, model, stats, held_out in zip(
        running, models, evaluation.statistics, evaluation.holdout_log_likelihoods, strict=True
    ):
        # AIC and BIC of the parameters the E-step ran with, on the sequences it trained on.
        aic, bic = model.information_criteria(stats.log_likelihood, stats.n_observations)
        model.update(stats)
        model.monitor_.reset()  # the history lives in the COMMIT records, not in the parameters
        histories[index] = [*candidate_history(past, index), stats.log_likelihood]
        updated[index] = model
        entry = entries[index]
        scored = (entry["params_key"], entry["params_sha256"])  # the parameters the E-step ran with: iteration - 1's
        entry.update(
            iteration=iteration,
            log_likelihood=stats.log_likelihood,
            holdout_log_likelihood=held_out if spec.holdout_fraction > 0 else None,
            aic=float(aic),
            bic=float(bic),
            status=CONVERGED if converged_after(histories[index], spec) else RUNNING,
        )
        if spec.holdout_patience is not None and patience_ran_out(entry, iteration, held_out, scored, spec):
            del updated[index]  # it stands for its best parameters, committed before: nothing new to store
    if iteration == spec.prune_after:
        for index in rank_candidates(entries, spec)[spec.keep :]:
            if entries[index]["status"] == RUNNING:
                entries[index]["status"] = PRUNED
    chosen = rank_candidates(entries, spec)[0]
    if chosen in updated:
        model = updated[chosen]
    else:  # the best stopped earlier: its parameters are committed again as this iteration's
        model = training.load_stored(
            entries[chosen]["params_key"], entries[chosen]["params_sha256"], f"of candidate {chosen}"
        )
    history = histories.get(chosen) or candidate_history(past, chosen)
    mstep = time.perf_counter()
    if spec.has_candidates:  # without candidates, commit stores the one model's parameters
        for index, updated_model in updated.items():
            params_key, digest = training.store_params(iteration, updated_model)
            entries[index].update(params_key=params_key, params_sha256=digest)
    record: dict[str, Any] = {
        "log_likelihood": entries[chosen]["log_likelihood"] if spec.has_candidates else history[-1],
        "improvement": history[-1] - history[-2] if len(history) >= 2 else None,
        "converged": not any(entry["status"] == RUNNING for entry in entries),
        "n_sequences": evaluation.n_sequences,
        "n_observations": evaluation.n_observations,
        "timings": {
            **(startup or {}),
            # Everything the step reads before the E-step: checks, spec, parameters, history, data listing.
            "load_seconds": loaded - started,
            "estep_seconds": estep - loaded,
            "mstep_seconds": mstep - estep,
        },
        "step": _step_identity(engine),
        "committed_at": _now(),
    }
    if spec.has_candidates:
        record["candidates"] = entries
        record["best_candidate"] = chosen
    if spec.holdout_fraction > 0:
        record["n_holdout_sequences"] = evaluation.n_holdout
    won = training.commit(iteration, model, record, spec)
    return {"status": "committed" if won else "lost", **training.record(iteration)}


def patience_ran_out(
    entry: dict[str, Any], iteration: int, held_out: float, scored: tuple[str, str], spec: TrainingSpec
) -> bool:
    """Early stop on the held-out score: update a candidate's COMMIT entry; whether it stopped now.

    The E-step of iteration ``k`` scores the parameters going into it, iteration ``k - 1``'s
    (``scored``: their params key and SHA-256). ``best_holdout`` records the best score so far, the
    iteration whose parameters earned it and where they are. Once ``holdout_patience`` iterations'
    parameters in a row have not beaten it, the candidate is ``stopped`` (``stop_reason`` says why)
    and stands for its best parameters: its ``params_key``/``params_sha256`` become theirs, so
    ranking, the COMMIT's own parameters and publishing all take them.
    """
    best = entry.get("best_holdout")
    if best is None or held_out > best["holdout_log_likelihood"]:
        best = {
            "iteration": iteration - 1,
            "holdout_log_likelihood": held_out,
            "params_key": scored[0],
            "params_sha256": scored[1],
        }
    entry["best_holdout"] = best
    assert spec.holdout_patience is not None
    if iteration - 1 - best["iteration"] < spec.holdout_patience:
        return False
    entry.update(
        status=STOPPED,
        stop_reason=(
            f"held-out log-likelihood not above iteration {best['iteration']}'s for {spec.holdout_patience} "
            "iteration(s) (holdout_patience): stands for that iteration's parameters"
        ),
        params_key=best["params_key"],
        params_sha256=best["params_sha256"],
    )
    return True


def candidate_history(records: list[dict[str, Any]], index: int) -> list[float]:
    """The log-likelihoods candidate ``index`` reported, iteration by iteration (its monitor's history)."""
    if not records or "candidates" not in records[0]:
        return [r["log_likelihood"] for r in records if r["iteration"] >= 1]
    return [
        r["candidates"][index]["log_likelihood"]
        for r in records
        if r["iteration"] >= 1 and r["candidates"][index]["iteration"] == r["iteration"]
    ]


def candidate_score(entry: Mapping[str, Any], spec: TrainingSpec) -> float:
    """What candidates are ranked by (higher is better): the held-out log-likelihood with a hold-out (a
    stopped candidate's best); else, across several numbers of states, minus the BIC; else the log-likelihood."""
    if entry.get("log_likelihood") is None:
        return -math.inf
    if entry.get("status") == STOPPED:  # it stands for its best parameters: their score
        return float(entry["best_holdout"]["holdout_log_likelihood"])
    if spec.holdout_fraction > 0:
        return float(entry["holdout_log_likelihood"])
    if len(spec.components) > 1:
        return -float(entry["bic"])
    return float(entry["log_likelihood"])


def rank_candidates(entries: list[dict[str, Any]], spec: TrainingSpec) -> list[int]:
    """Candidate indices, best first (:func:`hmm.core.candidates.rank` of :func:`candidate_score`)."""
    from hmm.core.candidates import Candidate, rank

    return rank([Candidate(model=None, score=candidate_score(entry, spec)) for entry in entries])  # type: ignore[arg-type]


def finalize(store_uri: str, training_id: str) -> dict[str, Any]:
    """Publish the last committed parameters and the report under ``model/<iteration>/``.

    Every file is created once (put-if-absent) and never replaced; the ``PUBLISHED`` marker,
    created last, records each file's SHA-256. Publishing an earlier iteration (``hmm-em report``
    during a training) never blocks publishing a later one; readers follow the highest marker.

    Parameters
    ----------
    store_uri : str
        The store's root.
    training_id : str
        The training.

    Returns
    -------
    dict
        ``status`` (``published``; ``exists`` when that iteration was published before) and the
        PUBLISHED marker: ``iteration``, ``converged``, ``model`` and ``report`` URIs, ``files``
        (name -> SHA-256), ``spec_sha256``, ``published_at``.

    Raises
    ------
    TrainingError
        The training has no committed iteration.
    CorruptObjectError
        A stored object is not what the code wrote.
    """
    from hmm.training.report import build_report

    store = open_store(store_uri)
    training = Training(store, training_id)
    latest = training.latest()
    if latest is None:
        raise TrainingError(f"training {training_id!r} has no committed iteration in {store_uri}")
    published = training.published(latest)
    if published is not None:
        index_publication(training, training.spec(), published)  # a run killed before it indexed
        return {"status": "exists", **published}
    spec = training.spec()
    model = training.load_params(latest, spec)
    record = training.record(latest)
    pin = training.record(0).get("init_from")
    relabelling = None
    if pin:  # stable state labels: the published model's states renumbered to match the reference's
        from hmm.core.relabel import relabel

        relabelling = relabel(model, load_reference(training, pin))
    # Only the records up to the published iteration: a later one may have landed meanwhile.
    records = [r for r in training.records() if r["iteration"] <= latest]
    if relabelling is None:
        files = build_report(spec, records, model)
    else:
        files = build_report(spec, records, model, relabelling)
    digests = {}
    for name, data in files.items():
        key = training.model_key(latest, name)
        if not store.create_if_absent(key, data):
            data = store.read(key)  # another writer published this iteration first: describe its bytes
        digests[name] = hashlib.sha256(data).hexdigest()
    marker = {
        "iteration": latest,
        "converged": bool(record["converged"]),
        "model": store.url(training.model_key(latest, "model.npz")),
        "report": store.url(training.model_key(latest, "report.md")),
        "files": digests,
        "spec_sha256": spec.digest(),
        "published_at": _now(),
    }
    won = store.create_if_absent(training.published_key(latest), json.dumps(marker, sort_keys=True, indent=2).encode())
    published = training.published(latest) or marker  # the winner's marker, if another writer was first
    index_publication(training, spec, published)
    return {"status": "published" if won else "exists", **published}


def train(
    store_uri: str,
    training_id: str,
    spec: TrainingSpec | None = None,
    engine: str = "spark",
    spark: SparkSession | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """init (if ``spec``), iterations until converged or max_iter, finalize; resumes where it stopped.

    Parameters
    ----------
    store_uri : str
        The store's root.
    training_id : str
        The training.
    spec : TrainingSpec, optional
        Start (or continue) a training with this spec; None: resume an existing training.
    engine : {"spark", "local"}, default="spark"
        Read the data in Spark tasks, or in this process with pyarrow.
    spark : SparkSession, optional
        The ``spark`` engine's session; default: ``getOrCreate`` when first needed.
    progress : callable, default=print
        Called with one line after init and after each iteration (:func:`format_progress`).

    Returns
    -------
    dict
        :func:`finalize`'s result.

    Raises
    ------
    TrainingError
        No spec is given and the training does not exist; or as the steps raise.
    """
    training = Training(open_store(store_uri), training_id)
    if spec is not None:
        result = init_training(store_uri, training_id, spec, engine, spark)
        progress(f"init: {result['status']} ({result['n_sequences']} sequences, {result['n_observations']} frames)")
    elif not training.has_spec():
        raise TrainingError(f"training {training_id!r} does not exist in {store_uri}: give a spec to start it")
    while not training.converged():
        iteration = (training.latest() or 0) + 1
        result = em_iteration(store_uri, training_id, iteration, engine, spark)
        progress(format_progress(result))
    return finalize(store_uri, training_id)


def format_progress(record: dict[str, Any]) -> str:
    """One line per iteration: log-likelihood, delta, the step's seconds (and the job's start-up), convergence.

    Parameters
    ----------
    record : dict
        :func:`em_iteration`'s result (a COMMIT record with ``status``).

    Returns
    -------
    str
    """
    improvement = record.get("improvement")
    delta = f"{improvement:+.6g}" if improvement is not None else "n/a"
    timings = record.get("timings", {})
    seconds = sum(timings.get(phase) or 0.0 for phase in STEP_PHASES)
    startup = timings.get("startup_seconds")
    job = f"; job start-up {startup:.1f} s" if startup is not None else ""
    flag = " converged" if record.get("converged") else ""
    return (
        f"iteration {record['iteration']:>4} [{record.get('status', '')}] "
        f"log-likelihood {record['log_likelihood']:.6f} delta {delta} ({seconds:.2f} s{job}){flag}"
    )

"""A training as a sequence of committed EM iterations in a store: the commit protocol.

Layout under the store root (see README "Storage and the commit protocol")::

    trainings/<id>/spec.json                    immutable: what is trained on what
    trainings/<id>/iterations/<k>/params-<sha>.npz   parameters after k updates
    trainings/<id>/iterations/<k>/COMMIT        written last, only if absent
    trainings/<id>/model/                       the published model and report

An iteration exists only once its ``COMMIT`` exists. A writer first stores
the parameters under a content-addressed name (so a second writer can never
replace bytes a COMMIT points to), then creates ``COMMIT`` with a
put-if-absent; of two writers of the same iteration exactly one commit wins
and the other changes nothing. Readers trust only committed iterations and
verify the parameters' SHA-256 recorded in the COMMIT. The resume point is
the highest committed iteration.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hmm.core import persistence
from hmm.core.convergence import has_converged
from hmm.distributed.uris import brief
from hmm.training.spec import InvalidSpecError, TrainingSpec, check_training_id
from hmm.training.store import Store

if TYPE_CHECKING:  # the models (numba, scipy, scikit-learn) load when load_params needs them
    from hmm.core.base import BaseHMM

#: An iteration number as it appears in keys: decimal ASCII, no leading zeros.
ITERATION = re.compile(r"0|[1-9][0-9]{0,8}")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: A params key below a training's prefix.
PARAMS_KEY = re.compile(r"/iterations/(0|[1-9][0-9]{0,8})/params-[0-9a-f]{16}\.npz")
#: Set to before-params, before-commit or after-commit to SIGKILL the process
#: at that point of a commit: the fault tests use it to prove resumption.
FAULT_ENV = "HMM_EM_FAULT"


class TrainingError(RuntimeError):
    """A training step cannot run as asked (missing iteration, conflicting spec, corrupt object)."""


class CorruptObjectError(TrainingError):
    """A stored object (spec.json, COMMIT, parameters, PUBLISHED) is not what the code wrote; names its URL."""


class DataChangedError(ValueError):
    """The data differs from what the training pinned at iteration 0; training on new data is a new training."""


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Training:
    """One training's objects in a store: spec, committed iterations, published model.

    Everything read back is checked before it is used: a stored object that is not what the
    code wrote (garbage, truncated, another training's, another spec's) raises
    :class:`CorruptObjectError` naming its URL.

    Parameters
    ----------
    store : Store
        Where the training lives, under ``trainings/<training_id>/``.
    training_id : str
        1-128 letters, digits, '_', '-', '.' (:func:`hmm.training.spec.check_training_id`).

    Raises
    ------
    InvalidSpecError
        ``training_id`` is invalid.
    """

    def __init__(self, store: Store, training_id: str):
        self.store = store
        self.id = check_training_id(training_id)
        self.prefix = f"trainings/{self.id}"

    # ---------------------------------------------------------------- spec

    @property
    def spec_key(self) -> str:
        """The key of the training's spec.json."""
        return f"{self.prefix}/spec.json"

    def spec(self) -> TrainingSpec:
        """The stored spec.

        Raises
        ------
        MissingObjectError
            The training has no spec.json.
        CorruptObjectError
            spec.json is not a valid spec.
        """
        try:
            return TrainingSpec.from_json(self.store.read(self.spec_key))
        except InvalidSpecError as error:
            raise CorruptObjectError(f"stored spec {self.store.url(self.spec_key)} is invalid: {error}") from None

    def has_spec(self) -> bool:
        """Whether spec.json exists (the training was created)."""
        return self.store.exists(self.spec_key)

    def create(self, spec: TrainingSpec) -> bool:
        """Write spec.json if absent. Same spec again: False (no-op). Another spec: TrainingError.

        Iterations without a spec.json (it was deleted) are never adopted by a new spec: their
        COMMITs record the digest of the spec they were computed under.

        Parameters
        ----------
        spec : TrainingSpec
            What to train; its code version is stored but not compared.

        Returns
        -------
        bool
            True if this call created spec.json; False if the same spec was there.

        Raises
        ------
        TrainingError
            Another spec is stored (the message lists the fields that differ), or iterations are
            committed without a spec.json. Nothing is written.
        """
        if not self.has_spec():
            orphans = self.committed()
            if orphans:
                raise TrainingError(
                    f"training {self.id!r} has committed iterations {orphans[0]}..{orphans[-1]} but no spec.json; "
                    "they cannot be adopted by a new spec. Use another training_id."
                )
        if self.store.create_if_absent(self.spec_key, spec.to_json()):
            return True
        existing = self.spec()
        if existing != spec:  # the code version does not count: see RECORDED_FIELDS
            stored = existing.fields()
            differences = sorted(k for k, v in spec.fields().items() if stored.get(k) != v)
            raise TrainingError(
                f"training {self.id!r} already exists with a different spec (fields {differences} differ); "
                "nothing was changed. Use another training_id to train with this spec."
            )
        return False

    # ---------------------------------------------------------- iterations

    def committed(self) -> list[int]:
        """Committed iteration numbers, ascending."""
        numbers = []
        start = f"{self.prefix}/iterations/"
        for key in self.store.list(start):
            number, _, name = key[len(start) :].partition("/")
            if name == "COMMIT" and ITERATION.fullmatch(number):
                numbers.append(int(number))
        return sorted(numbers)

    def has_commit(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` is committed: one look at its COMMIT (no listing)."""
        return self.store.exists(self._commit_key(iteration))

    def latest(self) -> int | None:
        """The highest committed iteration; None before iteration 0 is committed."""
        numbers = self.committed()
        return numbers[-1] if numbers else None

    def record(self, iteration: int) -> dict[str, Any]:
        """COMMIT ``iteration``, its structure checked.

        Parameters
        ----------
        iteration : int
            A committed iteration.

        Returns
        -------
        dict
            The COMMIT record: ``iteration``, ``params_key``, ``params_sha256``, ``spec_sha256``,
            ``log_likelihood``, ``converged``, ``n_sequences``, ``n_observations`` and timings.

        Raises
        ------
        MissingObjectError
            ``iteration`` is not committed.
        CorruptObjectError
            The COMMIT is not a JSON object or a field is not what the code writes.
        """
        key = self._commit_key(iteration)
        record = _parse_json_object(self.store.read(key))
        if record is None:
            raise CorruptObjectError(f"stored COMMIT {self.store.url(key)} is corrupt: not a JSON object")
        problem = _record_problem(record, iteration, self._params_prefix(iteration))
        if problem is not None:
            raise CorruptObjectError(f"stored COMMIT {self.store.url(key)} is corrupt: {problem}")
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every COMMIT record (:meth:`record`), by ascending iteration."""
        return [self.record(k) for k in self.committed()]

    def history(self, upto: int | None = None) -> list[float]:
        """Log-likelihoods reported by iterations 1..upto (hmmlearn's monitor history).

        Iteration k's COMMIT reports the log-likelihood of the parameters of iteration k - 1 (the
        E-step that computed iteration k), as hmmlearn's monitor does.

        Parameters
        ----------
        upto : int, optional
            The last iteration to include; default: all committed.

        Returns
        -------
        list of float
            One value per committed iteration 1..upto, in order.
        """
        return [
            r["log_likelihood"]
            for r in self.records()
            if r["iteration"] >= 1 and (upto is None or r["iteration"] <= upto)
        ]

    def check_bound(self, record: Mapping[str, Any], spec: TrainingSpec) -> None:
        """The COMMIT was computed under ``spec`` (records written before digests were recorded pass).

        Parameters
        ----------
        record : dict
            A COMMIT record (:meth:`record`).
        spec : TrainingSpec
            The training's spec.

        Raises
        ------
        CorruptObjectError
            The record's ``spec_sha256`` is another spec's digest.
        """
        recorded = record.get("spec_sha256")
        if recorded is not None and recorded != spec.digest():
            key = self._commit_key(record["iteration"])
            raise CorruptObjectError(
                f"stored COMMIT {self.store.url(key)} was computed under another spec (digest {recorded[:12]}) "
                f"than {self.store.url(self.spec_key)} (digest {spec.digest()[:12]}); nothing was changed"
            )

    def load_params(self, iteration: int, spec: TrainingSpec | None = None) -> BaseHMM:
        """The model committed as iteration ``iteration``: checksum, spec binding and parameters verified.

        Parameters
        ----------
        iteration : int
            A committed iteration (0: the initial parameters).
        spec : TrainingSpec, optional
            The training's spec, if already read; default: read spec.json.

        Returns
        -------
        BaseHMM
            The model with that iteration's parameters (a :mod:`hmm.core.persistence` file).

        Raises
        ------
        TrainingError
            ``iteration`` is not committed.
        CorruptObjectError
            The COMMIT is corrupt or bound to another spec, or the parameters' SHA-256 differs from
            the COMMIT's, or they are not a valid model file or valid parameters.
        """
        if not self.store.exists(self._commit_key(iteration)):
            raise TrainingError(f"iteration {iteration} of training {self.id!r} is not committed")
        record = self.record(iteration)
        self.check_bound(record, spec or self.spec())
        return self.load_stored(record["params_key"], record["params_sha256"], f"of iteration {iteration}")

    def load_stored(self, key: str, sha256: str, what: str) -> BaseHMM:
        """The parameters a COMMIT points to (``key``), checked against its ``sha256``.

        Parameters
        ----------
        key : str
            A params key of this training (``iterations/<k>/params-<sha>.npz``).
        sha256 : str
            The SHA-256 the COMMIT records for it.
        what : str
            How errors name them, e.g. ``of iteration 3``.

        Raises
        ------
        CorruptObjectError
            The key is not this training's parameters, the bytes have another SHA-256, or they
            are not a valid model file or valid parameters.
        """
        if (
            not isinstance(key, str)
            or not PARAMS_KEY.fullmatch(key[len(self.prefix) :])
            or not key.startswith(self.prefix)
        ):
            raise CorruptObjectError(f"parameters {what} of training {self.id!r}: {str(key)[:200]!r} is not its key")
        url = self.store.url(key)
        data = self.store.read(key)
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise CorruptObjectError(
                f"parameters {what} of training {self.id!r} are corrupt: "
                f"{url} has SHA-256 {digest}, COMMIT records {sha256}"
            )
        try:
            model = persistence.loads(data, source=url)
            model.check_parameters()
        except ValueError as error:
            raise CorruptObjectError(f"stored parameters {url} are invalid: {error}") from None
        return model

    def commit(self, iteration: int, model: BaseHMM, record: dict[str, Any], spec: TrainingSpec) -> bool:
        """Store parameters, then create COMMIT if absent. True if this call committed.

        Parameters that fail the model's own checks (non-finite, not distributions) are never
        stored: :class:`TrainingError`, nothing written.

        Parameters
        ----------
        iteration : int
            The iteration to commit.
        model : BaseHMM
            Its parameters, stored content-addressed (``params-<first 16 hex of SHA-256>.npz``).
        record : dict
            What the COMMIT reports (log-likelihood, converged, counts, timings); the keys it
            binds (``iteration``, ``params_key``, ``params_sha256``, ``spec_sha256``) are added.
        spec : TrainingSpec
            The spec the iteration was computed under.

        Returns
        -------
        bool
            True if this call created the COMMIT; False if another process committed the
            iteration first (its COMMIT stands; the parameters written here are then unreferenced).

        Raises
        ------
        TrainingError
            ``model``'s parameters are invalid.
        """
        params_key, digest = self.store_params(iteration, model)
        _fault("before-commit")
        full = {
            **record,
            "iteration": iteration,
            "params_key": params_key,
            "params_sha256": digest,
            "spec_sha256": spec.digest(),
        }
        won = self.store.create_if_absent(self._commit_key(iteration), json.dumps(full, sort_keys=True).encode())
        _fault("after-commit")
        return won

    def store_params(self, iteration: int, model: BaseHMM) -> tuple[str, str]:
        """Store ``model``'s parameters for ``iteration`` (content-addressed); their key and SHA-256.

        Raises
        ------
        TrainingError
            ``model``'s parameters are invalid: nothing is written.
        """
        try:
            model.check_parameters()
        except ValueError as error:
            raise TrainingError(
                f"iteration {iteration} of training {self.id!r} produced invalid parameters ({error}); "
                "nothing committed"
            ) from None
        data = persistence.dumps(model)
        digest = hashlib.sha256(data).hexdigest()
        params_key = f"{self._params_prefix(iteration)}{digest[:16]}.npz"
        _fault("before-params")
        # Content-addressed: if the key exists it already holds these bytes.
        self.store.create_if_absent(params_key, data)
        return params_key, digest

    def _commit_key(self, iteration: int) -> str:
        return f"{self.prefix}/iterations/{iteration}/COMMIT"

    def _params_prefix(self, iteration: int) -> str:
        return f"{self.prefix}/iterations/{iteration}/params-"

    # ------------------------------------------------------------ publishing
    #
    # model/<k>/ holds the model and report of iteration k, each object created once (put-if-absent)
    # and never replaced; model/<k>/PUBLISHED is created last and records every file's SHA-256. The
    # published model of a training is the highest k with a PUBLISHED marker: publishing an
    # intermediate iteration never blocks the final one, and no marker contradicts its files.

    def model_key(self, iteration: int, name: str) -> str:
        """The key of file ``name`` of the model published for ``iteration``."""
        return f"{self.prefix}/model/{iteration}/{name}"

    def published_key(self, iteration: int) -> str:
        """The key of ``iteration``'s PUBLISHED marker."""
        return self.model_key(iteration, "PUBLISHED")

    def published_iterations(self) -> list[int]:
        """Iterations with a PUBLISHED marker, ascending."""
        return self._published_listing()[0]

    def _published_listing(self) -> tuple[list[int], bool]:
        """The iterations with a marker, and whether ``model/PUBLISHED`` (the layout of code before
        iteration-addressed models, one marker naming its iteration) exists."""
        start = f"{self.prefix}/model/"
        numbers, legacy = [], False
        for key in self.store.list(start):
            number, _, name = key[len(start) :].partition("/")
            if name == "PUBLISHED" and ITERATION.fullmatch(number):
                numbers.append(int(number))
            legacy = legacy or (number == "PUBLISHED" and not name)
        return sorted(numbers), legacy

    def published(self, iteration: int | None = None) -> dict[str, Any] | None:
        """The PUBLISHED marker of ``iteration`` (default: the highest), or None if there is none.

        Parameters
        ----------
        iteration : int, optional
            A published iteration; default: the highest.

        Returns
        -------
        dict or None
            The marker: ``iteration`` and ``files`` (name -> SHA-256), as finalize wrote it; a
            marker of the layout before iteration-addressed models counts for its iteration.

        Raises
        ------
        CorruptObjectError
            The marker is not the one of that iteration.
        """
        numbers, legacy = self._published_listing()
        if numbers and (iteration is None or iteration in numbers):
            number = numbers[-1] if iteration is None else iteration
            key = self.published_key(number)
            marker = _parse_json_object(self.store.read(key))
            if marker is None or marker.get("iteration") != number or not isinstance(marker.get("files"), dict):
                raise CorruptObjectError(
                    f"stored marker {self.store.url(key)} is corrupt: not iteration {number}'s marker"
                )
            return marker
        if not legacy:
            return None
        key = f"{self.prefix}/model/PUBLISHED"
        marker = _parse_json_object(self.store.read(key))
        if marker is None or not isinstance(marker.get("iteration"), int):
            raise CorruptObjectError(f"stored marker {self.store.url(key)} is corrupt: not a marker")
        return marker if iteration in (None, marker["iteration"]) else None

    def converged(self) -> bool:
        """Whether the latest COMMIT (iteration >= 1) says the training converged (or reached max_iter)."""
        latest = self.latest()
        return latest is not None and latest >= 1 and bool(self.record(latest)["converged"])


def _parse_json_object(data: bytes) -> dict[str, Any] | None:
    """A stored JSON object, or None if the bytes are not one (garbage, truncated, too deep)."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _record_problem(record: Mapping[str, Any], iteration: int, params_prefix: str) -> str | None:
    """What is wrong with a COMMIT record, or None."""
    if record.get("iteration") != iteration or isinstance(record.get("iteration"), bool):
        return f"it records iteration {record.get('iteration')!r}"
    key = record.get("params_key")
    digest = record.get("params_sha256")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        return f"params_sha256 {str(digest)[:80]!r} is not a SHA-256"
    if not isinstance(key, str) or key != f"{params_prefix}{digest[:16]}.npz":
        return f"params_key {str(key)[:200]!r} is not this iteration's parameters"
    log_likelihood = record.get("log_likelihood")
    if iteration >= 1 and (isinstance(log_likelihood, bool) or not isinstance(log_likelihood, (int, float))):
        return f"log_likelihood {log_likelihood!r} is not a number"
    if not isinstance(record.get("converged"), bool):
        return f"converged {record.get('converged')!r} is not true or false"
    for name in ("n_sequences", "n_observations"):
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{name} {brief(value)} is not a count"
    spec_digest = record.get("spec_sha256")
    if spec_digest is not None and (not isinstance(spec_digest, str) or not SHA256.fullmatch(spec_digest)):
        return f"spec_sha256 {str(spec_digest)[:80]!r} is not a SHA-256"
    if "candidates" in record:
        return _candidates_problem(record["candidates"], iteration)
    return None


#: A candidate's status in a COMMIT (hmm.training.steps): training, converged (or max_iter), pruned.
#: A candidate's status in a COMMIT: still training; converged (or max_iter); stopped by pruning;
#: stopped early on the held-out score (``holdout_patience``; it then stands for its best parameters).
CANDIDATE_STATUSES = ("running", "converged", "pruned", "stopped")


def _candidates_problem(candidates: Any, iteration: int) -> str | None:
    """What is wrong with a COMMIT's ``candidates`` list, or None (their parameters are checked when loaded)."""
    if not isinstance(candidates, list) or not candidates:
        return "candidates is not a non-empty list"
    for position, entry in enumerate(candidates):
        if not isinstance(entry, dict) or entry.get("index") != position:
            return f"candidate {position} is not candidate {position}"
        ran = entry.get("iteration")
        if isinstance(ran, bool) or not isinstance(ran, int) or not 0 <= ran <= iteration:
            return f"candidate {position} records iteration {ran!r}"
        if entry.get("status") not in CANDIDATE_STATUSES:
            return f"candidate {position} has status {brief(entry.get('status'))}"
    return None


def converged_after(history: list[float], spec: TrainingSpec) -> bool:
    """hmmlearn's rule over the log-likelihoods reported so far.

    Parameters
    ----------
    history : list of float
        The log-likelihoods iterations 1.. reported (:meth:`Training.history`).
    spec : TrainingSpec
        Gives ``tol`` and ``max_iter``.

    Returns
    -------
    bool
        True when the last gain is below ``tol`` or ``max_iter`` updates are done.
    """
    return has_converged(history, spec.tol, spec.max_iter)

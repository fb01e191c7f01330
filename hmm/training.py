"""A training as a sequence of committed EM iterations in a store.

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
import math
import os
import re
import signal
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import persistence
from .convergence import has_converged
from .store import InvalidURIError, Store, brief, check_uri

if TYPE_CHECKING:  # the models (numba, scipy, scikit-learn) load when build_model or load_params needs them
    from .base import BaseHMM

MODEL_TYPES = {
    "categorical": "CategoricalHMM",
    "gaussian": "GaussianHMM",
    "poisson": "PoissonHMM",
    "gmm": "GMMHMM",
}
# Names are checked with fullmatch on ASCII classes: ``re.match`` with ``$`` would accept a
# trailing newline, and ``\d`` or ``str.isdigit`` other scripts' digits. The patterns keep their
# anchors because the DAG's Params use them as JSON-schema patterns, which are searched.
TRAINING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: A code version as setuptools-scm writes it (e.g. ``0.1.dev26+g4a89137cf``); it becomes part of
#: an S3 key and of spark-submit arguments, so nothing else is accepted.
CODE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")
#: An iteration number as it appears in keys: decimal ASCII, no leading zeros.
ITERATION = re.compile(r"0|[1-9][0-9]{0,8}")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: The parameter letters each model type knows (hmmlearn's ``params`` / ``init_params``).
PARAM_LETTERS = {"categorical": "ste", "gaussian": "stmc", "poisson": "stl", "gmm": "stmcw"}
#: A spec (file or inline) larger than this is refused before it is parsed.
MAX_SPEC_BYTES = 1 << 20
#: Spec fields that record which code created a training rather than what it trains. Spec
#: equality, the training id's digest and spec differences leave them out, so a training
#: resumed by newer code is still the same training.
RECORDED_FIELDS = ("code_version",)
#: Constructor arguments a spec may set besides n_components, tol, n_iter and random_state.
MODEL_ARGS = frozenset(
    {
        "n_features",
        "covariance_type",
        "n_mix",
        "min_covar",
        "params",
        "init_params",
        "algorithm",
        "startprob_prior",
        "transmat_prior",
        "emissionprob_prior",
        "means_prior",
        "means_weight",
        "covars_prior",
        "covars_weight",
        "lambdas_prior",
        "lambdas_weight",
        "weights_prior",
    }
)
#: Set to before-params, before-commit or after-commit to SIGKILL the process
#: at that point of a commit: the fault tests use it to prove resumption.
FAULT_ENV = "HMM_EM_FAULT"


class TrainingError(RuntimeError):
    """A training step cannot run as asked (missing iteration, conflicting spec, corrupt object)."""


class InvalidSpecError(ValueError):
    """A training spec or argument breaks a rule; names the field."""


class CorruptObjectError(TrainingError):
    """A stored object (spec.json, COMMIT, parameters, PUBLISHED) is not what the code wrote; names its URL."""


class DataChangedError(ValueError):
    """The data differs from what the training pinned at iteration 0; training on new data is a new training."""


def check_training_id(training_id: Any) -> str:
    if not isinstance(training_id, str) or not TRAINING_ID.fullmatch(training_id) or ".." in training_id:
        raise InvalidSpecError(
            f"training_id {brief(training_id)} is invalid: use 1-128 letters, digits, '_', '-', '.', "
            "starting with a letter or digit, no '/' and no '..'"
        )
    return training_id


@dataclass(frozen=True)
class TrainingSpec:
    """What is trained on what; immutable once written as ``spec.json``."""

    model: str
    n_components: int
    data: str
    sequence_col: str = "sequence"
    id_col: str | None = None
    tol: float = 1e-2
    max_iter: int = 100
    seed: int = 0
    model_args: dict[str, Any] = field(default_factory=dict)
    #: The hmm-em version that created the training: ``init_training`` records its own, whatever a
    #: spec given to it says. None in spec.json files written before versions were recorded.
    #: A training's EMR steps run the bundle of this version (see hmm.orchestration).
    code_version: str | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainingSpec:
        """Validate every field (named in the error) and build the spec."""
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise InvalidSpecError(f"spec has unknown field(s) {sorted(unknown)}")
        for required in ("model", "n_components", "data"):
            if required not in raw:
                raise InvalidSpecError(f"spec field {required!r} is required")
        model = raw["model"]
        if model not in MODEL_TYPES:
            raise InvalidSpecError(f"spec field 'model' is {brief(model)}; choose one of {sorted(MODEL_TYPES)}")
        n_components = _positive_int("n_components", raw["n_components"])
        try:
            check_uri(raw["data"], "spec field 'data'")
        except InvalidURIError as error:
            raise InvalidSpecError(str(error)) from None
        for name in ("sequence_col", "id_col"):
            value = raw.get(name)
            if value is not None and (not isinstance(value, str) or not COLUMN.fullmatch(value)):
                raise InvalidSpecError(
                    f"spec field {name!r} is {brief(value)}: a column name is letters, digits and '_'"
                )
        tol = raw.get("tol", 1e-2)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise InvalidSpecError(f"spec field 'tol' is {brief(tol)}; it must be a finite number >= 0")
        max_iter = _positive_int("max_iter", raw.get("max_iter", 100))
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidSpecError(f"spec field 'seed' is {brief(seed)}; it must be an integer in [0, 2**32)")
        model_args = check_model_args(model, n_components, raw.get("model_args"))
        code_version = raw.get("code_version")
        if code_version is not None and (not isinstance(code_version, str) or not CODE_VERSION.fullmatch(code_version)):
            raise InvalidSpecError(
                f"spec field 'code_version' is {brief(code_version)}; a version is 1-128 letters, digits and '.+_-'"
            )
        spec = cls(
            model=model,
            n_components=n_components,
            data=raw["data"],
            sequence_col=raw.get("sequence_col", "sequence"),
            id_col=raw.get("id_col"),
            tol=float(tol),
            max_iter=max_iter,
            seed=seed,
            model_args=model_args,
            code_version=code_version,
        )
        from .base import ModelTooLargeError

        try:
            spec.build_model()._check_settings()
        except ModelTooLargeError as error:
            raise InvalidSpecError(f"spec does not fit in memory: {error}") from None
        except (TypeError, ValueError) as error:
            raise InvalidSpecError(f"spec field 'model_args' does not build a {MODEL_TYPES[model]}: {error}") from error
        return spec

    def definition(self) -> dict[str, Any]:
        """What is trained on what: every field but the :data:`RECORDED_FIELDS`."""
        return {name: value for name, value in asdict(self).items() if name not in RECORDED_FIELDS}

    def digest(self) -> str:
        """SHA-256 of the :meth:`definition`'s canonical JSON: equal specs, equal digests.

        Every COMMIT records it, so iterations stay bound to the spec they were computed under.
        """
        return hashlib.sha256(self.to_json(recorded=False)).hexdigest()

    def to_json(self, recorded: bool = True) -> bytes:
        """Canonical JSON: spec.json; with ``recorded=False`` only the :meth:`definition`."""
        fields = asdict(self) if recorded else self.definition()
        return json.dumps(fields, sort_keys=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> TrainingSpec:
        """A spec from JSON text: at most :data:`MAX_SPEC_BYTES`, one object, no NaN or Infinity."""
        if len(data) > MAX_SPEC_BYTES:
            raise InvalidSpecError(f"spec is {len(data)} bytes long; at most {MAX_SPEC_BYTES} are allowed")
        try:
            parsed = json.loads(data, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
        except RecursionError:
            raise InvalidSpecError("spec is nested too deeply to be a training spec") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidSpecError(f"spec is not valid JSON: {error}") from None
        if not isinstance(parsed, dict):
            raise InvalidSpecError(f"spec must be a JSON object, got {type(parsed).__name__}")
        return cls.from_dict(parsed)

    def build_model(self) -> BaseHMM:
        """An unfitted model with this spec's settings (EM is driven from outside)."""
        import hmm

        model_class = getattr(hmm, MODEL_TYPES[self.model])
        return model_class(
            n_components=self.n_components,
            n_iter=self.max_iter,
            tol=self.tol,
            random_state=self.seed,
            **self.model_args,
        )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSpecError(f"spec field {name!r} is {brief(value)}; it must be a positive integer")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicates = sorted(key for key, count in counts.items() if count > 1)
        raise InvalidSpecError(f"spec is ambiguous: field(s) {duplicates[:5]} appear more than once")
    return result


def _refuse_constant(name: str) -> Any:
    raise InvalidSpecError(f"spec is not valid JSON: {name} is not a number JSON allows")


#: model_args that are positive integers, finite positive numbers, or strings.
_INTEGER_ARGS = frozenset({"n_features", "n_mix"})
_POSITIVE_ARGS = frozenset({"min_covar"})
_STRING_ARGS = frozenset({"covariance_type", "params", "init_params", "algorithm"})
#: Priors of probabilities (Dirichlet concentrations) and weights: numbers >= 0 or arrays of them.
_NON_NEGATIVE_ARRAY_ARGS = frozenset(
    {"startprob_prior", "transmat_prior", "emissionprob_prior", "weights_prior", "means_weight", "lambdas_weight"}
)


def check_model_args(model: str, n_components: int, raw: Any) -> dict[str, Any]:
    """The spec's ``model_args`` if each argument has the type and range its model uses.

    Shapes that depend on the data (``n_features`` inferred, Gaussian dimensions) are checked by
    ``init_training``, which runs one E-step and M-step on the data's sample before writing anything.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidSpecError(f"spec field 'model_args' is {type(raw).__name__}; it must be a JSON object")
    unknown = set(raw) - MODEL_ARGS
    if unknown:
        raise InvalidSpecError(f"spec field 'model_args' has unknown argument(s) {sorted(unknown)}")
    for name, value in raw.items():
        field_name = f"model_args.{name}"
        if name in _INTEGER_ARGS:
            if value is None and name == "n_features":
                continue
            _positive_int(field_name, value)
        elif name in _STRING_ARGS:
            if not isinstance(value, str) or not value.isascii():
                raise InvalidSpecError(f"spec field {field_name!r} is {brief(value)}; it must be a string")
            if name in ("params", "init_params"):
                letters = PARAM_LETTERS[model]
                if any(letter not in letters for letter in value):
                    raise InvalidSpecError(
                        f"spec field {field_name!r} is {brief(value)}; a {model} model knows the letters {letters!r}"
                    )
        elif name in _POSITIVE_ARGS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidSpecError(f"spec field {field_name!r} is {brief(value)}; it must be a finite number > 0")
        elif value is not None or name not in ("covars_prior", "covars_weight"):
            _check_numbers(field_name, value, non_negative=name in _NON_NEGATIVE_ARRAY_ARGS)
    shapes = {"startprob_prior": (n_components,), "transmat_prior": (n_components, n_components)}
    if model == "categorical" and isinstance(raw.get("n_features"), int):
        shapes["emissionprob_prior"] = (n_components, raw["n_features"])
    for name, shape in shapes.items():
        if name in raw and not _broadcasts(np.shape(raw[name]), shape):
            raise InvalidSpecError(
                f"spec field 'model_args.{name}' has shape {np.shape(raw[name])}; "
                f"it must be a number or an array that broadcasts to shape {shape}"
            )
    return dict(raw)


def _broadcasts(given: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(given, shape) == shape
    except ValueError:
        return False


def _check_numbers(field_name: str, value: Any, non_negative: bool) -> None:
    """``value`` is a finite number or a rectangular (nested) list of them."""
    bad = f"spec field {field_name!r} is {brief(str(value))}; it must be a finite number or an array of them"
    if isinstance(value, bool) or value is None:
        raise InvalidSpecError(bad)
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        raise InvalidSpecError(bad) from None
    if array.dtype.kind not in "iuf" or array.size == 0 or not np.all(np.isfinite(array)):
        raise InvalidSpecError(bad)
    if non_negative and np.any(array < 0):
        raise InvalidSpecError(f"spec field {field_name!r} has negative values; it must be >= 0")


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Training:
    """One training's objects in a store: spec, committed iterations, published model.

    Everything read back is checked before it is used: a stored object that is not what the
    code wrote (garbage, truncated, another training's, another spec's) raises
    :class:`CorruptObjectError` naming its URL.
    """

    def __init__(self, store: Store, training_id: str):
        self.store = store
        self.id = check_training_id(training_id)
        self.prefix = f"trainings/{self.id}"

    # ---------------------------------------------------------------- spec

    @property
    def spec_key(self) -> str:
        return f"{self.prefix}/spec.json"

    def spec(self) -> TrainingSpec:
        try:
            return TrainingSpec.from_json(self.store.read(self.spec_key))
        except InvalidSpecError as error:
            raise CorruptObjectError(f"stored spec {self.store.url(self.spec_key)} is invalid: {error}") from None

    def has_spec(self) -> bool:
        return self.store.exists(self.spec_key)

    def create(self, spec: TrainingSpec) -> bool:
        """Write spec.json if absent. Same spec again: False (no-op). Another spec: TrainingError.

        Iterations without a spec.json (it was deleted) are never adopted by a new spec: their
        COMMITs record the digest of the spec they were computed under.
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
            stored = existing.definition()
            differences = sorted(k for k, v in spec.definition().items() if stored.get(k) != v)
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

    def latest(self) -> int | None:
        numbers = self.committed()
        return numbers[-1] if numbers else None

    def record(self, iteration: int) -> dict[str, Any]:
        """COMMIT ``iteration``, its structure checked (CorruptObjectError naming it otherwise)."""
        key = self._commit_key(iteration)
        record = _parse_json_object(self.store.read(key))
        if record is None:
            raise CorruptObjectError(f"stored COMMIT {self.store.url(key)} is corrupt: not a JSON object")
        problem = _record_problem(record, iteration, self._params_prefix(iteration))
        if problem is not None:
            raise CorruptObjectError(f"stored COMMIT {self.store.url(key)} is corrupt: {problem}")
        return record

    def records(self) -> list[dict[str, Any]]:
        return [self.record(k) for k in self.committed()]

    def history(self, upto: int | None = None) -> list[float]:
        """Log-likelihoods reported by iterations 1..upto (hmmlearn's monitor history)."""
        return [
            r["log_likelihood"]
            for r in self.records()
            if r["iteration"] >= 1 and (upto is None or r["iteration"] <= upto)
        ]

    def check_bound(self, record: Mapping[str, Any], spec: TrainingSpec) -> None:
        """The COMMIT was computed under ``spec`` (records written before digests were recorded pass)."""
        recorded = record.get("spec_sha256")
        if recorded is not None and recorded != spec.digest():
            key = self._commit_key(record["iteration"])
            raise CorruptObjectError(
                f"stored COMMIT {self.store.url(key)} was computed under another spec (digest {recorded[:12]}) "
                f"than {self.store.url(self.spec_key)} (digest {spec.digest()[:12]}); nothing was changed"
            )

    def load_params(self, iteration: int, spec: TrainingSpec | None = None) -> BaseHMM:
        """The model committed as iteration ``iteration``: checksum, spec binding and parameters verified."""
        if not self.store.exists(self._commit_key(iteration)):
            raise TrainingError(f"iteration {iteration} of training {self.id!r} is not committed")
        record = self.record(iteration)
        self.check_bound(record, spec or self.spec())
        url = self.store.url(record["params_key"])
        data = self.store.read(record["params_key"])
        digest = hashlib.sha256(data).hexdigest()
        if digest != record["params_sha256"]:
            raise CorruptObjectError(
                f"parameters of iteration {iteration} of training {self.id!r} are corrupt: "
                f"{url} has SHA-256 {digest}, COMMIT records {record['params_sha256']}"
            )
        try:
            model = persistence.loads(data, source=url)
            model._check()
        except ValueError as error:
            raise CorruptObjectError(f"stored parameters {url} are invalid: {error}") from None
        return model

    def commit(self, iteration: int, model: BaseHMM, record: dict[str, Any], spec: TrainingSpec) -> bool:
        """Store parameters, then create COMMIT if absent. True if this call committed.

        Parameters that fail the model's own checks (non-finite, not distributions) are never
        stored: :class:`TrainingError`, nothing written.
        """
        try:
            model._check()
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
        return f"{self.prefix}/model/{iteration}/{name}"

    def published_key(self, iteration: int) -> str:
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
        """The PUBLISHED marker of ``iteration`` (default: the highest), or None if there is none."""
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
    return None


def converged_after(history: list[float], spec: TrainingSpec) -> bool:
    """hmmlearn's rule over the log-likelihoods reported so far."""
    return has_converged(history, spec.tol, spec.max_iter)

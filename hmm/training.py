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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import persistence
from .convergence import has_converged
from .store import InvalidURIError, Store, check_uri

if TYPE_CHECKING:  # the models (numba, scipy, scikit-learn) load when build_model or load_params needs them
    from .base import BaseHMM

MODEL_TYPES = {
    "categorical": "CategoricalHMM",
    "gaussian": "GaussianHMM",
    "poisson": "PoissonHMM",
    "gmm": "GMMHMM",
}
TRAINING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: A code version as setuptools-scm writes it (e.g. ``0.1.dev26+g4a89137cf``); it becomes part of
#: an S3 key and of spark-submit arguments, so nothing else is accepted.
CODE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")
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


def check_training_id(training_id: Any) -> str:
    if not isinstance(training_id, str) or not TRAINING_ID.match(training_id) or ".." in training_id:
        raise InvalidSpecError(
            f"training_id {training_id!r} is invalid: use 1-128 letters, digits, '_', '-', '.', "
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
            raise InvalidSpecError(f"spec field 'model' is {model!r}; choose one of {sorted(MODEL_TYPES)}")
        n_components = _positive_int("n_components", raw["n_components"])
        try:
            check_uri(raw["data"], "spec field 'data'")
        except InvalidURIError as error:
            raise InvalidSpecError(str(error)) from None
        for name in ("sequence_col", "id_col"):
            value = raw.get(name)
            if value is not None and (not isinstance(value, str) or not COLUMN.match(value)):
                raise InvalidSpecError(f"spec field {name!r} is {value!r}: a column name is letters, digits and '_'")
        tol = raw.get("tol", 1e-2)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise InvalidSpecError(f"spec field 'tol' is {tol!r}; it must be a finite number >= 0")
        max_iter = _positive_int("max_iter", raw.get("max_iter", 100))
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidSpecError(f"spec field 'seed' is {seed!r}; it must be an integer in [0, 2**32)")
        model_args = dict(raw.get("model_args") or {})
        bad = set(model_args) - MODEL_ARGS
        if bad:
            raise InvalidSpecError(f"spec field 'model_args' has unknown argument(s) {sorted(bad)}")
        code_version = raw.get("code_version")
        if code_version is not None and (not isinstance(code_version, str) or not CODE_VERSION.match(code_version)):
            raise InvalidSpecError(
                f"spec field 'code_version' is {code_version!r}; a version is 1-128 letters, digits and '.+_-'"
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
        try:
            spec.build_model()._check_settings()
        except (TypeError, ValueError) as error:
            raise InvalidSpecError(f"spec field 'model_args' does not build a {MODEL_TYPES[model]}: {error}") from error
        return spec

    def definition(self) -> dict[str, Any]:
        """What is trained on what: every field but the :data:`RECORDED_FIELDS`."""
        return {name: value for name, value in asdict(self).items() if name not in RECORDED_FIELDS}

    def to_json(self, recorded: bool = True) -> bytes:
        """Canonical JSON: spec.json; with ``recorded=False`` only the :meth:`definition`."""
        fields = asdict(self) if recorded else self.definition()
        return json.dumps(fields, sort_keys=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TrainingSpec:
        return cls.from_dict(json.loads(data))

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
        raise InvalidSpecError(f"spec field {name!r} is {value!r}; it must be a positive integer")
    return value


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Training:
    """One training's objects in a store: spec, committed iterations, published model."""

    def __init__(self, store: Store, training_id: str):
        self.store = store
        self.id = check_training_id(training_id)
        self.prefix = f"trainings/{self.id}"

    # ---------------------------------------------------------------- spec

    def spec(self) -> TrainingSpec:
        return TrainingSpec.from_json(self.store.read(f"{self.prefix}/spec.json"))

    def has_spec(self) -> bool:
        return self.store.exists(f"{self.prefix}/spec.json")

    def create(self, spec: TrainingSpec) -> bool:
        """Write spec.json if absent. Same spec again: False (no-op). Another spec: TrainingError."""
        if self.store.create_if_absent(f"{self.prefix}/spec.json", spec.to_json()):
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
        for key in self.store.list(f"{self.prefix}/iterations/"):
            parts = key.split("/")
            if parts[-1] == "COMMIT" and parts[-2].isdigit():
                numbers.append(int(parts[-2]))
        return sorted(numbers)

    def latest(self) -> int | None:
        numbers = self.committed()
        return numbers[-1] if numbers else None

    def record(self, iteration: int) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.store.read(self._commit_key(iteration)))
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

    def load_params(self, iteration: int) -> BaseHMM:
        """The model committed as iteration ``iteration``, checksum verified."""
        if not self.store.exists(self._commit_key(iteration)):
            raise TrainingError(f"iteration {iteration} of training {self.id!r} is not committed")
        record = self.record(iteration)
        data = self.store.read(record["params_key"])
        digest = hashlib.sha256(data).hexdigest()
        if digest != record["params_sha256"]:
            raise TrainingError(
                f"parameters of iteration {iteration} of training {self.id!r} are corrupt: "
                f"{self.store.url(record['params_key'])} has SHA-256 {digest}, COMMIT records {record['params_sha256']}"
            )
        return persistence.loads(data, source=self.store.url(record["params_key"]))

    def commit(self, iteration: int, model: BaseHMM, record: dict[str, Any]) -> bool:
        """Store parameters, then create COMMIT if absent. True if this call committed."""
        data = persistence.dumps(model)
        digest = hashlib.sha256(data).hexdigest()
        params_key = f"{self.prefix}/iterations/{iteration}/params-{digest[:16]}.npz"
        _fault("before-params")
        # Content-addressed: if the key exists it already holds these bytes.
        self.store.create_if_absent(params_key, data)
        _fault("before-commit")
        full = {**record, "iteration": iteration, "params_key": params_key, "params_sha256": digest}
        won = self.store.create_if_absent(self._commit_key(iteration), json.dumps(full, sort_keys=True).encode())
        _fault("after-commit")
        return won

    def _commit_key(self, iteration: int) -> str:
        return f"{self.prefix}/iterations/{iteration}/COMMIT"

    # ------------------------------------------------------------ publishing

    @property
    def published_key(self) -> str:
        return f"{self.prefix}/model/PUBLISHED"

    def published(self) -> dict[str, Any] | None:
        """The marker ``finalize`` writes last under ``model/``, or None before that."""
        if not self.store.exists(self.published_key):
            return None
        marker: dict[str, Any] = json.loads(self.store.read(self.published_key))
        return marker

    def converged(self) -> bool:
        latest = self.latest()
        return latest is not None and latest >= 1 and bool(self.record(latest)["converged"])


def converged_after(history: list[float], spec: TrainingSpec) -> bool:
    """hmmlearn's rule over the log-likelihoods reported so far."""
    return has_converged(history, spec.tol, spec.max_iter)

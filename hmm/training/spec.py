"""What a training trains on what: the spec, its fields' rules, the names a training uses.

A spec is immutable once written as ``spec.json``; every field is validated here (named in the
error) before it reaches a path, an S3 key, a model or Spark, and :meth:`TrainingSpec.digest`
binds every COMMIT to the spec it was computed under (:mod:`hmm.training.commits`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.core.persistence import model_class
from hmm.distributed.uris import InvalidURIError, brief, check_uri

if TYPE_CHECKING:  # the models (numba, scipy, scikit-learn) load when build_model needs them
    from hmm.core.base import BaseHMM

MODEL_TYPES = {
    "categorical": "CategoricalHMM",
    "gaussian": "GaussianHMM",
    "poisson": "PoissonHMM",
    "gmm": "GMMHMM",
}
# Names are checked with fullmatch on ASCII classes: ``re.match`` with ``$`` would accept a
# trailing newline, and ``\d`` or ``str.isdigit`` other scripts' digits. The patterns keep their
# anchors because the DAG's Params use them as JSON-schema patterns, which are searched.
#: The end of the text, in Python's regular expressions and in JavaScript's (the Airflow trigger
#: form's) alike: ``$`` also matches before a final newline in Python, so "nl\n" would pass a
#: JSON-schema ``pattern`` (which is searched, not fullmatched).
END = r"(?![\s\S])"
TRAINING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}" + END)
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}" + END)
#: A code version as setuptools-scm writes it (e.g. ``0.1.dev26+g4a89137cf``); it becomes part of
#: an S3 key and of spark-submit arguments, so nothing else is accepted.
CODE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}" + END)
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
        "symbols",
        "unknown_symbol",
    }
)


class InvalidSpecError(ValueError):
    """A training spec or argument breaks a rule; names the field."""


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
    #: A training's EMR steps run the bundle of this version (see hmm.orchestration.decisions).
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
        from hmm.core.base import ModelTooLargeError

        try:
            spec.build_model().check_settings()
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
        return model_class(MODEL_TYPES[self.model])(
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
#: A categorical model's vocabulary (the symbol index is the order) and the symbol unknown strings count
#: as. Without ``symbols``, a training on a string column takes the data's distinct strings, sorted,
#: fixed at init and saved with the parameters of every iteration.
_VOCABULARY_ARGS = frozenset({"symbols", "unknown_symbol"})
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
        if name in _VOCABULARY_ARGS:
            if model != "categorical":
                raise InvalidSpecError(f"spec field {field_name!r} is for categorical models only")
            if name == "symbols" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise InvalidSpecError(f"spec field {field_name!r} is {brief(value)}; it must be a list of strings")
            if name == "unknown_symbol" and not isinstance(value, str):
                raise InvalidSpecError(f"spec field {field_name!r} is {brief(value)}; it must be a string")
        elif name in _INTEGER_ARGS:
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
    elif model == "categorical" and isinstance(raw.get("symbols"), list):
        shapes["emissionprob_prior"] = (n_components, len(raw["symbols"]))
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

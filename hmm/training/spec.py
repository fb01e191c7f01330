"""What a training trains on what: the spec, its fields' rules, the names a training uses.

A spec is immutable once written as ``spec.json``; every field is validated here (named in the
error) before it reaches a path, an S3 key, a model or Spark, and :meth:`TrainingSpec.digest`
binds every COMMIT to the spec it was computed under (:mod:`hmm.training.commits`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.core.persistence import model_class
from hmm.distributed.uris import InvalidURIError, brief, check_uri
from hmm.training.schema import (
    CODE_VERSION_PATTERN,
    COLUMN_PATTERN,
    MODEL_ARGS_PROPERTIES,
    MODEL_TYPES,
    PARAM_LETTERS,
    SPEC_SCHEMA,
    TRAINING_ID_PATTERN,
    first_error,
    spec_problem,
)

if TYPE_CHECKING:  # the models (numba, scipy, scikit-learn) load when build_model needs them
    from hmm.core.base import BaseHMM

# The fields' types, ranges and patterns live in the schema; the names below are kept here, where
# the rest of the code has always found them.
TRAINING_ID = re.compile(TRAINING_ID_PATTERN)
COLUMN = re.compile(COLUMN_PATTERN)
CODE_VERSION = re.compile(CODE_VERSION_PATTERN)
#: A spec (file or inline) larger than this is refused before it is parsed.
MAX_SPEC_BYTES = 1 << 20
#: Spec fields that record which code created a training rather than what it trains. Spec
#: equality, the training id's digest and spec differences leave them out, so a training
#: resumed by newer code is still the same training.
RECORDED_FIELDS = ("code_version",)
#: Fields added with candidate models (issue 13), and their defaults. At its default such a field is
#: left out of :meth:`TrainingSpec.definition` and spec.json, so every spec written before them
#: keeps its digest (and a training its id).
CANDIDATE_DEFAULTS: dict[str, Any] = {
    "n_init": 1,
    "prune_after": 5,
    "keep": 1,
    "holdout_fraction": 0.0,
    "init_from": None,
    "holdout_patience": None,
}
#: ``init_from`` naming the last model published for the same spec without its data (see
#: :func:`hmm.training.steps.resolve_init_from`).
LATEST = "latest"


class InvalidSpecError(ValueError):
    """A training spec or argument breaks a rule; names the field."""


def check_training_id(training_id: Any) -> str:
    """``training_id`` if it can name a training's folder, S3 prefix and EMR step.

    Parameters
    ----------
    training_id : object
        The candidate.

    Returns
    -------
    str
        ``training_id``, unchanged.

    Raises
    ------
    InvalidSpecError
        It is not 1-128 ASCII letters, digits, '_', '-', '.' starting with a letter or digit, or
        it holds ``..``.
    """
    if not isinstance(training_id, str) or not TRAINING_ID.fullmatch(training_id) or ".." in training_id:
        raise InvalidSpecError(
            f"training_id {brief(training_id)} is invalid: use 1-128 letters, digits, '_', '-', '.', "
            "starting with a letter or digit, no '/' and no '..'"
        )
    return training_id


@dataclass(frozen=True)
class TrainingSpec:
    """What is trained on what; immutable once written as ``spec.json``.

    Build one with :meth:`from_dict` or :meth:`from_json`, which validate every field (the
    constructor does not).

    Attributes
    ----------
    model : {"categorical", "gaussian", "poisson", "gmm"}
        The emission model (:data:`~hmm.training.schema.MODEL_TYPES`).
    n_components : int or list of int
        Number of hidden states; a list of distinct numbers trains one candidate per number (a sweep).
    data : str
        The Parquet sequences: ``file:///path`` or ``s3://bucket/prefix``.
    sequence_col : str, default="sequence"
        The list column of frames.
    id_col : str or None, default=None
        A column naming rows in error messages.
    tol : float, default=1e-2
        Stop when an iteration gains less log-likelihood.
    max_iter : int, default=100
        At most this many EM updates (the model's ``n_iter``).
    seed : int, default=0
        The model's ``random_state``, in [0, 2**32).
    model_args : dict
        Further constructor arguments (:data:`~hmm.training.schema.MODEL_ARGS`).
    code_version : str or None
        The hmm-em version that created the training; not part of what is trained.
    n_init : int, default=1
        Random restarts per number of states: candidate ``i`` has seed ``seed + i``.
    prune_after : int, default=5
        After this many iterations only the best ``keep`` candidates go on.
    keep : int, default=1
        How many candidates survive pruning.
    holdout_fraction : float, default=0
        About this share of sequences (by a hash of the id column, else of the row position) gets
        no E-step statistics; their log-likelihood ranks the candidates.
    init_from : str or None
        A training id of the same store, or ``"latest"``: its published model is candidate 0's
        starting point and the reference the result's states are relabelled to.
    holdout_patience : int or None
        A candidate stops once its held-out log-likelihood has not improved on its best for this
        many consecutive iterations; it then stands for its parameters of that best score. None:
        never (needs ``holdout_fraction`` > 0).
    """

    model: str
    n_components: int | list[int]
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
    n_init: int = 1
    prune_after: int = 5
    keep: int = 1
    holdout_fraction: float = 0.0
    init_from: str | None = None
    holdout_patience: int | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainingSpec:
        """Validate every field (named in the error) and build the spec.

        First :data:`~hmm.training.schema.SPEC_SCHEMA` (jsonschema; its first error becomes the
        refusal), then what a schema cannot say: the data URI's rules, the model arguments'
        values and shapes, and that the model can be built and fits in memory.

        Parameters
        ----------
        raw : mapping
            The spec's fields, as JSON would give them.

        Returns
        -------
        TrainingSpec

        Raises
        ------
        InvalidSpecError
            One line naming the field and its rule, e.g. ``spec field 'tol' is -1; it must be a
            finite number >= 0``.
        """
        error = first_error(SPEC_SCHEMA, raw)
        if error is not None:
            raise InvalidSpecError(spec_problem(error, raw))
        # What the schema cannot say: the URI's rules, the model arguments' values and shapes.
        model, n_components = raw["model"], raw["n_components"]
        try:
            check_uri(raw["data"], "spec field 'data'")
        except InvalidURIError as error:
            raise InvalidSpecError(str(error)) from None
        components = n_components if isinstance(n_components, list) else [n_components]
        for count in components:
            model_args = check_model_args(model, count, raw.get("model_args"))
        spec = cls(
            model=model,
            n_components=n_components,
            data=raw["data"],
            sequence_col=raw.get("sequence_col", "sequence"),
            id_col=raw.get("id_col"),
            tol=float(raw.get("tol", 1e-2)),
            max_iter=raw.get("max_iter", 100),
            seed=raw.get("seed", 0),
            model_args=model_args,
            code_version=raw.get("code_version"),
            n_init=raw.get("n_init", 1),
            prune_after=raw.get("prune_after", 5),
            keep=raw.get("keep", 1),
            holdout_fraction=float(raw.get("holdout_fraction", 0.0)),
            init_from=raw.get("init_from"),
            holdout_patience=raw.get("holdout_patience"),
        )
        if spec.holdout_patience is not None and spec.holdout_fraction == 0:
            raise InvalidSpecError(
                f"spec field 'holdout_patience' is {spec.holdout_patience}; it stops candidates on the held-out "
                "score, so it needs holdout_fraction > 0"
            )
        from hmm.core.base import ModelTooLargeError

        try:
            for count in components:
                spec.build_model(count).check_settings()
        except ModelTooLargeError as error:
            raise InvalidSpecError(f"spec does not fit in memory: {error}") from None
        except (TypeError, ValueError) as error:
            raise InvalidSpecError(f"spec field 'model_args' does not build a {MODEL_TYPES[model]}: {error}") from error
        return spec

    def definition(self) -> dict[str, Any]:
        """What is trained on what: every field but the :data:`RECORDED_FIELDS`, and but the
        :data:`CANDIDATE_DEFAULTS` fields at their defaults (so older specs keep their digests)."""
        return {
            name: value
            for name, value in self.fields().items()
            if name not in CANDIDATE_DEFAULTS or value != CANDIDATE_DEFAULTS[name]
        }

    def fields(self) -> dict[str, Any]:
        """Every field but the :data:`RECORDED_FIELDS`, defaults included (to compare two specs)."""
        return {name: value for name, value in asdict(self).items() if name not in RECORDED_FIELDS}

    @property
    def components(self) -> list[int]:
        """The numbers of states trained: ``n_components`` as a list."""
        return list(self.n_components) if isinstance(self.n_components, list) else [self.n_components]

    def candidates(self) -> list[tuple[int, int]]:
        """``(n_components, seed)`` of every candidate model, in candidate order.

        For each number of states of :attr:`components` in turn, ``n_init`` candidates with seeds
        ``seed, seed + 1, ...`` (:func:`hmm.core.candidates.candidate_seeds`): candidate
        ``(K, s)`` is, bit for bit, what a training with ``n_components=K, seed=s`` computes.
        """
        from hmm.core.candidates import candidate_seeds

        return [(count, seed) for count in self.components for seed in candidate_seeds(self.seed, self.n_init)]

    @property
    def has_candidates(self) -> bool:
        """Whether a candidate field is set: then every COMMIT lists the candidates."""
        return isinstance(self.n_components, list) or any(
            getattr(self, name) != default for name, default in CANDIDATE_DEFAULTS.items()
        )

    def digest(self) -> str:
        """SHA-256 of the :meth:`definition`'s canonical JSON: equal specs, equal digests.

        Every COMMIT records it, so iterations stay bound to the spec they were computed under.
        """
        return hashlib.sha256(self.to_json(recorded=False)).hexdigest()

    def to_json(self, recorded: bool = True) -> bytes:
        """Canonical JSON: spec.json; with ``recorded=False`` only the :meth:`definition`.

        Parameters
        ----------
        recorded : bool, default=True
            Include the :data:`RECORDED_FIELDS`.

        Returns
        -------
        bytes
            UTF-8 JSON with sorted keys: equal specs give equal bytes.
        """
        fields = self.definition()
        if recorded:
            fields.update({name: getattr(self, name) for name in RECORDED_FIELDS})
        return json.dumps(fields, sort_keys=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> TrainingSpec:
        """A spec from JSON text: at most :data:`MAX_SPEC_BYTES`, one object, no NaN or Infinity.

        Parameters
        ----------
        data : bytes or str
            The JSON text.

        Returns
        -------
        TrainingSpec

        Raises
        ------
        InvalidSpecError
            The text is too long, not JSON, nested too deeply, not one object, holds a key twice
            or a constant JSON does not allow, or a field is invalid (:meth:`from_dict`).
        """
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

    def build_model(self, n_components: int | None = None, seed: int | None = None) -> BaseHMM:
        """An unfitted model with this spec's settings (EM is driven from outside).

        Parameters
        ----------
        n_components, seed : int, optional
            A candidate's (:meth:`candidates`); default: the first number of states, and ``seed``.

        Returns
        -------
        BaseHMM
            A model of :data:`~hmm.training.schema.MODEL_TYPES` ``[model]`` with
            ``n_components``, ``n_iter=max_iter``, ``tol``, ``random_state=seed`` and ``model_args``.
        """
        return model_class(MODEL_TYPES[self.model])(
            n_components=self.components[0] if n_components is None else n_components,
            n_iter=self.max_iter,
            tol=self.tol,
            random_state=self.seed if seed is None else seed,
            **self.model_args,
        )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicates = sorted(key for key, count in counts.items() if count > 1)
        raise InvalidSpecError(f"spec is ambiguous: field(s) {duplicates[:5]} appear more than once")
    return result


def _refuse_constant(name: str) -> Any:
    raise InvalidSpecError(f"spec is not valid JSON: {name} is not a number JSON allows")


_STRING_ARGS = frozenset(name for name, rule in MODEL_ARGS_PROPERTIES.items() if rule.get("type") == "string")
#: The arguments the schema leaves to :func:`_check_numbers`: a number or a (nested) array of them.
_NUMBER_ARGS = frozenset(name for name, rule in MODEL_ARGS_PROPERTIES.items() if not rule)
#: A categorical model's vocabulary (the symbol index is the order) and the symbol unknown strings count
#: as. Without ``symbols``, a training on a string column takes the data's distinct strings, sorted,
#: fixed at init and saved with the parameters of every iteration. Their rules (distinct, non-empty,
#: the size limits) are the model's own (:func:`hmm.core.vocabulary.check_vocabulary`).
_VOCABULARY_ARGS = frozenset({"symbols", "unknown_symbol"})
#: Priors of probabilities (Dirichlet concentrations) and weights: numbers >= 0 or arrays of them.
_NON_NEGATIVE_ARRAY_ARGS = frozenset(
    {"startprob_prior", "transmat_prior", "emissionprob_prior", "weights_prior", "means_weight", "lambdas_weight"}
)


def check_model_args(model: str, n_components: int, raw: Any) -> dict[str, Any]:
    """The spec's ``model_args``, checked for what :data:`~hmm.training.schema.SPEC_SCHEMA` cannot say.

    The schema has checked each argument's name and type; here: strings are ASCII, ``params`` and
    ``init_params`` name letters the model knows, priors are finite (non-negative where they are
    concentrations) and broadcast to the shapes the spec fixes. Shapes that depend on the data
    (``n_features`` inferred, Gaussian dimensions) are checked by ``init_training``, which runs one
    E-step and M-step on the data's sample before writing anything.

    Parameters
    ----------
    model : str
        The spec's model type, a key of :data:`~hmm.training.schema.MODEL_TYPES`.
    n_components : int
        The spec's number of hidden states.
    raw : dict or None
        The spec's ``model_args`` as the schema accepted it.

    Returns
    -------
    dict
        A copy of ``raw`` (empty for None).

    Raises
    ------
    InvalidSpecError
        An argument breaks its rule; the message names it as ``model_args.<name>``.
    """
    if raw is None:
        return {}
    for name, value in raw.items():
        field_name = f"model_args.{name}"
        if name in _VOCABULARY_ARGS:
            if model != "categorical":
                raise InvalidSpecError(f"spec field {field_name!r} is for categorical models only")
        elif name in _STRING_ARGS:
            if not value.isascii():
                raise InvalidSpecError(f"spec field {field_name!r} is {brief(value)}; it must be a string")
            if name in ("params", "init_params"):
                letters = PARAM_LETTERS[model]
                if any(letter not in letters for letter in value):
                    raise InvalidSpecError(
                        f"spec field {field_name!r} is {brief(value)}; a {model} model knows the letters {letters!r}"
                    )
        elif name in _NUMBER_ARGS and (value is not None or name not in ("covars_prior", "covars_weight")):
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

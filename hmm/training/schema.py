"""The JSON schema of a training spec: the one place its fields' types, ranges and patterns live.

:class:`hmm.training.spec.TrainingSpec` (hence ``hmm-em validate`` and every other command that
reads a spec), the Airflow DAG's Params and :func:`hmm.orchestration.decisions.check_params` all
validate against :data:`SPEC_SCHEMA` (the DAG adds its run fields to it) with the ``jsonschema``
library, as Airflow validates Params. A refusal is one line naming the field and its rule
(:func:`spec_problem`); what a schema cannot say (URI rules, a prior's shape, the parameter letters
a model knows, whether the model fits in memory) is checked by code in :mod:`hmm.training.spec`.

Patterns are anchored with ``^`` and end with :data:`END`: JSON schema searches a pattern rather
than matching it, and the Airflow trigger form checks the same patterns in JavaScript.
``jsonschema`` is imported on first validation, not with this module (``import hmm.training.spec``
stays cheap for the DAG file and the jobs).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hmm.distributed.uris import MAX_URI_LENGTH, InvalidURIError, brief, check_uri

if TYPE_CHECKING:
    import jsonschema

#: The end of the text, in Python's regular expressions and in JavaScript's (the Airflow trigger
#: form's) alike: ``$`` also matches before a final newline in Python, so "nl\n" would pass a
#: JSON-schema ``pattern`` (which is searched, not fullmatched).
END = r"(?![\s\S])"
#: Names are ASCII classes: ``\d`` or ``str.isdigit`` would take other scripts' digits.
TRAINING_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}" + END
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}" + END
#: A code version as setuptools-scm writes it (e.g. ``0.1.dev26+g4a89137cf``); it becomes part of
#: an S3 key and of spark-submit arguments, so nothing else is accepted.
CODE_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}" + END
#: A data or store root as a schema can say it; :func:`hmm.distributed.uris.check_uri` has the last word.
URI_PATTERN = r"^(file:///|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/|" + END + r"))\S*" + END
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?" + END

#: Spec ``model`` -> the model class it trains.
MODEL_TYPES = {
    "categorical": "CategoricalHMM",
    "gaussian": "GaussianHMM",
    "poisson": "PoissonHMM",
    "gmm": "GMMHMM",
}
#: The parameter letters each model type knows (hmmlearn's ``params`` / ``init_params``).
PARAM_LETTERS = {"categorical": "ste", "gaussian": "stmc", "poisson": "stl", "gmm": "stmcw"}

_POSITIVE_INTEGER = {"type": "integer", "minimum": 1}
#: The largest ``holdout_patience``: more iterations without a better held-out score than any training runs.
MAX_HOLDOUT_PATIENCE = 100_000
_STRING: dict[str, Any] = {"type": "string"}
#: Priors and weights: a number or an array of them. Their values and shapes are checked by
#: :func:`hmm.training.spec.check_model_args` (a schema cannot say "rectangular" or "broadcasts to").
_NUMBERS: dict[str, Any] = {}
#: Constructor arguments a spec's ``model_args`` may set (besides n_components, tol, n_iter and
#: random_state, which are spec fields).
MODEL_ARGS_PROPERTIES: dict[str, Any] = {
    "n_features": {"type": ["null", "integer"], "minimum": 1},
    "covariance_type": _STRING,
    "n_mix": _POSITIVE_INTEGER,
    "min_covar": {"type": "number", "exclusiveMinimum": 0},
    "params": _STRING,
    "init_params": _STRING,
    "algorithm": _STRING,
    # Named symbols (categorical): the vocabulary's own rules (distinct, non-empty, size limits) are
    # the model's, hmm.core.vocabulary.check_vocabulary, applied when the spec builds its model.
    "symbols": {"type": "array", "items": _STRING},
    "unknown_symbol": _STRING,
    **dict.fromkeys(
        (
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
        ),
        _NUMBERS,
    ),
}
MODEL_ARGS = frozenset(MODEL_ARGS_PROPERTIES)

#: The spec. Key order is the order refusals come in: unknown fields, missing ones, then each field.
SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["model", "n_components", "data"],
    "properties": {
        "model": {"type": "string", "enum": sorted(MODEL_TYPES)},
        # One number of states, or a sweep: a list of distinct numbers (one candidate model each).
        "n_components": {
            "type": ["integer", "array"],
            "minimum": 1,
            "items": _POSITIVE_INTEGER,
            "minItems": 1,
            "uniqueItems": True,
        },
        "data": {"type": "string", "maxLength": MAX_URI_LENGTH, "pattern": URI_PATTERN},
        "sequence_col": {"type": "string", "pattern": COLUMN_PATTERN},
        "id_col": {"type": ["null", "string"], "pattern": COLUMN_PATTERN},
        "tol": {"type": "number", "minimum": 0},
        "max_iter": _POSITIVE_INTEGER,
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "model_args": {"type": ["null", "object"], "additionalProperties": False, "properties": MODEL_ARGS_PROPERTIES},
        "code_version": {"type": ["null", "string"], "pattern": CODE_VERSION_PATTERN},
        # Candidates (hmm.core.candidates): restarts, pruning, a held-out score, a warm start.
        "n_init": _POSITIVE_INTEGER,
        "prune_after": _POSITIVE_INTEGER,
        "keep": _POSITIVE_INTEGER,
        "holdout_fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "init_from": {"type": ["null", "string"], "pattern": TRAINING_ID_PATTERN},
        # Early stop on the held-out score (needs holdout_fraction > 0, checked in hmm.training.spec).
        "holdout_patience": {"type": ["null", "integer"], "minimum": 1, "maximum": MAX_HOLDOUT_PATIENCE},
    },
}

#: What each field must be, as the refusal says it after "spec field '<name>' is <value>".
SPEC_RULES = {
    "model": f"; choose one of {sorted(MODEL_TYPES)}",
    "n_components": "; it must be a positive integer or a non-empty list of distinct positive integers",
    "data": "; a data URI is file:///path or s3://bucket/prefix",
    "sequence_col": ": a column name is letters, digits and '_'",
    "id_col": ": a column name is letters, digits and '_'",
    "tol": "; it must be a finite number >= 0",
    "max_iter": "; it must be a positive integer",
    "seed": "; it must be an integer in [0, 2**32)",
    "code_version": "; a version is 1-128 letters, digits and '.+_-'",
    "n_init": "; it must be a positive integer",
    "prune_after": "; it must be a positive integer",
    "keep": "; it must be a positive integer",
    "holdout_fraction": "; it must be a number in [0, 1)",
    "init_from": ": it names a training (1-128 letters, digits, '_', '-', '.') or is 'latest'",
    "holdout_patience": f"; it must be an integer in [1, {MAX_HOLDOUT_PATIENCE}] (iterations without a better "
    "held-out score before a candidate stops)",
    "model_args.n_features": "; it must be a positive integer",
    "model_args.n_mix": "; it must be a positive integer",
    "model_args.min_covar": "; it must be a finite number > 0",
    "model_args.symbols": "; it must be a list of strings",
    **{
        f"model_args.{name}": "; it must be a string" for name, kind in MODEL_ARGS_PROPERTIES.items() if kind == _STRING
    },
}


def _is_integer(checker: Any, value: Any) -> bool:
    # Stricter than JSON schema's integer, which takes 10.0: a count written as a float is a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(checker: Any, value: Any) -> bool:
    # JSON has no NaN or Infinity; a spec built in Python must not bring them in either.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


@functools.cache
def validator_class() -> type[jsonschema.protocols.Validator]:
    """Draft 2020-12 with integers that are ints (not 10.0) and numbers that are finite."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_finite_number})
    return jsonschema.validators.extend(base, type_checker=checker)


def first_error(schema: Mapping[str, Any], instance: Any) -> jsonschema.ValidationError | None:
    """The first error jsonschema reports for ``instance`` (in the schema's key order), or None.

    Parameters
    ----------
    schema : mapping
        A JSON schema (Draft 2020-12).
    instance : object
        The value to validate.

    Returns
    -------
    jsonschema.ValidationError or None
        The first error of :func:`validator_class`'s ``iter_errors``; None if ``instance`` is valid.
    """
    validator = validator_class()(schema)
    return next(iter(validator.iter_errors(instance)), None)


def value_at(instance: Any, path: Any) -> Any:
    """The part of ``instance`` at a jsonschema error's ``absolute_path``."""
    for key in path:
        instance = instance[key]
    return instance


def spec_problem(error: jsonschema.ValidationError, raw: Mapping[str, Any]) -> str:
    """The one-line refusal of a spec's first schema error.

    Parameters
    ----------
    error : jsonschema.ValidationError
        :func:`first_error` of :data:`SPEC_SCHEMA` (or of a schema holding the spec's fields at
        the top level, as the DAG's params do).
    raw : mapping
        The validated object.

    Returns
    -------
    str
        ``spec field '<name>' is <value><rule>`` (:data:`SPEC_RULES`), or the field's missing or
        unknown names; a bad data URI is named by :func:`~hmm.distributed.uris.check_uri`'s rule.
    """
    path = list(error.absolute_path)
    if not path:
        if error.validator == "required":
            missing = next(name for name in SPEC_SCHEMA["required"] if name not in raw)
            return f"spec field {missing!r} is required"
        if error.validator == "additionalProperties":
            return f"spec has unknown field(s) {sorted(set(raw) - set(SPEC_SCHEMA['properties']))}"
        return f"spec must be a JSON object, got {type(raw).__name__}"
    name, value = path[0], raw[path[0]]
    if name == "data":
        try:
            check_uri(value, "spec field 'data'")
        except InvalidURIError as refused:
            return str(refused)
    if name == "model_args" and len(path) == 1:
        if error.validator == "additionalProperties":
            return f"spec field 'model_args' has unknown argument(s) {sorted(set(value) - MODEL_ARGS)}"
        return f"spec field 'model_args' is {type(value).__name__}; it must be a JSON object"
    if name == "model_args":
        name, value = f"model_args.{path[1]}", value[path[1]]
    return f"spec field {name!r} is {brief(value)}{SPEC_RULES.get(name, ': it breaks the schema: ' + error.message)}"

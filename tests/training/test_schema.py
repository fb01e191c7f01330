"""One JSON schema for the spec and the DAG's params, validated with jsonschema and refused in one line."""

from __future__ import annotations

import jsonschema
import pytest

from hmm.orchestration.decisions import PARAMS_SCHEMA, SPEC_FIELDS, check_params, check_value
from hmm.training.schema import END, SPEC_SCHEMA, first_error
from hmm.training.spec import InvalidSpecError, TrainingSpec

GOOD = {"model": "categorical", "n_components": 2, "data": "file:///data", "store": "file:///store"}


def patterns(schema):
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "pattern":
                yield value
            else:
                yield from patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from patterns(value)


def test_every_pattern_is_anchored_at_both_ends_for_python_and_javascript():
    found = list(patterns(PARAMS_SCHEMA))
    assert len(found) >= 10
    for pattern in found:
        assert pattern.startswith("^") and pattern.endswith(END), pattern


def test_the_params_schema_holds_the_spec_schema_for_every_spec_field():
    assert set(SPEC_FIELDS) == set(SPEC_SCHEMA["properties"]) - {"code_version"}
    for name in SPEC_FIELDS:
        assert PARAMS_SCHEMA["properties"][name] is SPEC_SCHEMA["properties"][name]
    jsonschema.Draft202012Validator.check_schema(SPEC_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(PARAMS_SCHEMA)


# What Airflow's Param validation (plain Draft 2020-12) refuses, check_params refuses too.
REFUSED_BY_BOTH = [
    {"model": "hmm"},
    {"n_components": 0},
    {"n_components": "2"},
    {"tol": -0.5},
    {"seed": 2**32},
    {"sequence_col": "seq\n"},
    {"id_col": "a b"},
    {"data": "file:///d\n"},
    {"data": "file:///" + "d" * 600},
    {"store": "http://x/y"},
    {"model_args": {"n_iter": 3}},
    {"model_args": {"n_mix": 0}},
    {"model_args": {"min_covar": 0}},
    {"model_args": {"params": 5}},
    {"mode": "k8s"},
    {"engine": "dask"},
    {"training_id": "a/b"},
    {"emr": {"core_instance_count": 0}},
    {"emr": {"subnet_id": "subnet-xyz"}},
    {"colour": "red"},
]


@pytest.mark.parametrize("changes", REFUSED_BY_BOTH, ids=repr)
def test_what_the_trigger_form_refuses_check_params_refuses_in_one_line(changes):
    params = {**GOOD, **changes}
    assert not jsonschema.Draft202012Validator(PARAMS_SCHEMA).is_valid(params)
    with pytest.raises(InvalidSpecError) as refused:
        check_params(params)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 400
    named = next(iter(changes))
    assert named in message or "unknown param" in message


def test_numbers_are_finite_and_integers_are_ints_though_json_schema_allows_more():
    """Draft 2020-12 takes 10.0 as an integer and NaN as a number; a spec does not."""
    plain = jsonschema.Draft202012Validator(SPEC_SCHEMA)
    for changes, message in [
        ({"max_iter": 10.0}, "spec field 'max_iter' is 10.0; it must be a positive integer"),
        ({"tol": float("nan")}, "spec field 'tol' is nan; it must be a finite number >= 0"),
        ({"tol": 10**400}, "spec field 'tol' is 1000"),
    ]:
        raw = {**GOOD, **changes}
        del raw["store"]
        assert plain.is_valid(raw)
        assert first_error(SPEC_SCHEMA, raw) is not None
        with pytest.raises(InvalidSpecError, match=message.replace("(", r"\(")):
            TrainingSpec.from_dict(raw)


def test_check_value_validates_with_the_schema():
    schema = {"type": "string", "pattern": "^s3://[a-z]+" + END}
    assert check_value(schema, "s3://bucket", "emr.log_uri") == "s3://bucket"
    for bad, message in [("s3://bucket\n", "it must match"), (None, "is required"), (5, "it must match")]:
        with pytest.raises(InvalidSpecError, match=f"param 'emr.log_uri' .*{message}"):
            check_value(schema, bad, "emr.log_uri")


def test_a_valid_spec_passes_the_schema_and_its_semantic_checks():
    spec = TrainingSpec.from_dict({**{k: v for k, v in GOOD.items() if k != "store"}, "id_col": None})
    assert first_error(SPEC_SCHEMA, spec.definition()) is None
    assert TrainingSpec.from_json(spec.to_json()) == spec

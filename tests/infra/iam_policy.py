"""The stack's IAM as a test sees it: the template resolved for given parameters, and policy evaluation.

Only what ``infra/cloudformation/hmm-em.yaml`` uses is supported; anything else (an unknown intrinsic
function, ``NotAction``, a condition operator not listed below) raises, so the test can never pass by
silently ignoring part of a policy.

An :class:`Need` is one authorization AWS makes for one recorded request (a principal, an IAM action,
a resource ARN and the request's condition keys). :func:`check_role` compares a role's Allow
statements with the needs of that role both ways: a need no statement allows is *missing*; a
statement (action x resource x condition value) no need uses is *extra*; an object action a
statement allows in a folder where the role never does that action is *too broad*.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STACK = "hmm-em-test"
#: Object-level S3 actions whose reach is checked folder by folder (see :func:`check_role`).
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion")


# ------------------------------------------------------------------ the template


def plain(value: Any) -> Any:
    """cfn-lint's decoded nodes (dict/str subclasses with line marks) as plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def load_template(path: str | Path) -> dict[str, Any]:
    """The template as data, with ``!Sub``/``!GetAtt``/``!Ref`` as ``{"Fn::Sub": ...}`` etc. (cfn-lint's loader)."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if matches:
        raise ValueError(f"{path} does not parse: {matches}")
    return plain(template)


class Stack:
    """A template deployed for given parameters, with deterministic physical names.

    ``Ref`` of a bucket is its ``BucketName``; of a role or instance profile ``<stack>-<logical id>``.
    """

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any]):
        self.template = template
        self.resources: dict[str, Any] = template["Resources"]
        declared = template.get("Parameters", {})
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        self.parameters: dict[str, str] = {}
        for name, spec in declared.items():
            if name in parameters:
                value = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise ValueError(f"parameter {name} has no default: give it")
            pattern = spec.get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, str(value)):
                raise ValueError(f"parameter {name}={value!r} does not match {pattern}")
            self.parameters[name] = str(value)
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }

    # physical ids and attributes
    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        resource = self.resources.get(name)
        if resource is None:
            raise KeyError(f"Ref to unknown {name}")
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            return str(self.resolve(properties["BucketName"]))
        if kind in ("AWS::IAM::Role", "AWS::IAM::InstanceProfile"):
            given = properties.get("RoleName") or properties.get("InstanceProfileName")
            return str(self.resolve(given)) if given else f"{STACK}-{name}"
        raise NotImplementedError(f"Ref of a {kind}")

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.resources[name]["Type"]
        if attribute == "Arn" and kind == "AWS::S3::Bucket":
            return f"arn:{PARTITION}:s3:::{self.ref(name)}"
        if attribute == "Arn" and kind == "AWS::IAM::Role":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.ref(name)}"
        if attribute == "Arn" and kind == "AWS::IAM::InstanceProfile":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:instance-profile/{self.ref(name)}"
        raise NotImplementedError(f"GetAtt {name}.{attribute} of a {kind}")

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, argument), *_ = value.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(name, attribute)
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::Join":
                separator, parts = argument
                return separator.join(str(self.resolve(p)) for p in parts)
            if function.startswith("Fn::") or function == "Condition":
                raise NotImplementedError(f"{function} is not supported by this test's resolver")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and name.split(".")[0] in self.resources:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    # what the test asks of the stack
    def resources_of(self, kind: str) -> list[str]:
        return [name for name, r in self.resources.items() if r["Type"] == kind]

    def role_statements(self, role: str) -> list[dict[str, Any]]:
        """Every statement of the role's inline policies, resolved; managed policies are refused."""
        properties = self.resources[role]["Properties"]
        statements = []
        for policy in properties.get("Policies", []):
            document = self.resolve(policy["PolicyDocument"])
            for statement in listed(document["Statement"]):
                statements.append({**statement, "Policy": policy["PolicyName"]})
        return statements

    def bucket_statements(self, bucket: str) -> list[dict[str, Any]]:
        """The statements of the bucket policy attached to bucket resource ``bucket``."""
        statements = []
        for name in self.resources_of("AWS::S3::BucketPolicy"):
            properties = self.resources[name]["Properties"]
            if properties["Bucket"] == {"Ref": bucket}:
                statements += listed(self.resolve(properties["PolicyDocument"])["Statement"])
        return statements

    def role_names(self) -> dict[str, str]:
        """Physical role name -> logical id."""
        return {self.ref(name): name for name in self.resources_of("AWS::IAM::Role")}

    def profile_roles(self, profile_name: str) -> list[str]:
        """Logical ids of the roles in the instance profile with that physical name (none if not in the stack)."""
        for name in self.resources_of("AWS::IAM::InstanceProfile"):
            if self.ref(name) == profile_name:
                return [r["Ref"] for r in self.resources[name]["Properties"]["Roles"]]
        return []

    def role_arn(self, role_name: str) -> str:
        return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{role_name}"

    def output(self, name: str) -> str:
        return str(self.resolve(self.template["Outputs"][name]["Value"]))


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class Need:
    """One authorization AWS makes for one request: ``principal`` may ``action`` on ``resource``?"""

    principal: str
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    source: str = field(default="", compare=False)

    @property
    def keys(self) -> dict[str, str]:
        return dict(self.context)


def action_matches(pattern: str, action: str) -> bool:
    """IAM action match: case-insensitive, ``*`` and ``?`` wildcards."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM resource match: case-sensitive, ``*`` and ``?`` match across ``/`` and ``:``."""
    return re.fullmatch(_wildcard_regex(pattern), arn) is not None


def _wildcard_regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _string_like(pattern: str, value: str) -> bool:
    return re.fullmatch(_wildcard_regex(pattern), value) is not None


#: Condition operator -> test of one policy value against the request's value (None: key absent).
_OPERATORS = {
    "StringEquals": lambda want, have: have is not None and have == want,
    "StringLike": lambda want, have: have is not None and _string_like(want, have),
    "ArnLike": lambda want, have: have is not None and _string_like(want, have),
    "ArnEquals": lambda want, have: have is not None and have == want,
    "Bool": lambda want, have: have is not None and have.lower() == str(want).lower(),
    "Null": lambda want, have: (have is None) == (str(want).lower() == "true"),
}


def condition_holds(condition: Mapping[str, Any] | None, context: Mapping[str, str]) -> bool:
    """Every operator and key of ``condition`` holds (any of a key's values), as IAM evaluates them."""
    for operator, keys in (condition or {}).items():
        base, if_exists = (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
        if base not in _OPERATORS:
            raise NotImplementedError(f"condition operator {operator} is not supported by this test")
        for key, wanted in keys.items():
            have = _lookup(context, key)
            if if_exists and have is None:
                continue
            if not any(_OPERATORS[base](value, have) for value in listed(wanted)):
                return False
    return True


def _lookup(context: Mapping[str, str], key: str) -> str | None:
    # Condition key names are case-insensitive.
    for name, value in context.items():
        if name.lower() == key.lower():
            return value
    return None


def _check_supported(statement: Mapping[str, Any]) -> None:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise NotImplementedError(f"statement {statement.get('Sid')} uses {unsupported}")


def statement_allows(statement: Mapping[str, Any], need: Need) -> bool:
    """The statement matches the need's action, resource and conditions (whatever its Effect)."""
    _check_supported(statement)
    return (
        any(action_matches(a, need.action) for a in listed(statement["Action"]))
        and any(arn_matches(r, need.resource) for r in listed(statement["Resource"]))
        and condition_holds(statement.get("Condition"), need.keys)
    )


def allowing(statements: Iterable[Mapping[str, Any]], need: Need) -> list[Mapping[str, Any]]:
    return [s for s in statements if s["Effect"] == "Allow" and statement_allows(s, need)]


def denying(statements: Iterable[Mapping[str, Any]], need: Need) -> list[Mapping[str, Any]]:
    """The Deny statements (e.g. of a bucket policy, any principal) that refuse the need."""
    return [s for s in statements if s["Effect"] == "Deny" and statement_allows(s, need)]


def _describe(statement: Mapping[str, Any]) -> str:
    policy = f"{statement['Policy']}/" if statement.get("Policy") else ""
    return f"statement {policy}{statement.get('Sid', '(no Sid)')}"


def _condition_variants(condition: Mapping[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """One condition per listed value of each key (the other keys unchanged), to find unused values."""
    variants = []
    for operator, keys in (condition or {}).items():
        for key, wanted in keys.items():
            values = listed(wanted)
            if len(values) < 2:
                continue
            for value in values:
                narrowed = {op: dict(ks) for op, ks in condition.items()}  # type: ignore[union-attr]
                narrowed[operator][key] = value
                variants.append((f"{operator} {key} {value!r}", narrowed))
    return variants


def check_role(role: str, statements: Sequence[Mapping[str, Any]], needs: Iterable[Need]) -> list[str]:
    """Problems between a role's statements and every recorded need (of all principals); [] if exact.

    * missing: a need of ``role`` that no Allow statement of the role allows;
    * extra: an (action, resource) of a statement, or one value of a multi-valued condition, that
      no need of ``role`` uses;
    * too broad: a statement lets ``role`` do an object action on an object some principal touched,
      in a folder where ``role`` never does that action.
    """
    everything = list(needs)
    mine = [n for n in everything if n.principal == role]
    problems = []
    for need in mine:
        if not allowing(statements, need):
            problems.append(f"{role}: missing {need.action} on {need.resource} (needed by {need.source})")
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        _check_supported(statement)
        condition = statement.get("Condition")
        for action in listed(statement["Action"]):
            for resource in listed(statement["Resource"]):
                single = {**statement, "Action": action, "Resource": resource}
                used = [n for n in mine if statement_allows(single, n)]
                if not used:
                    shown = f" if {condition}" if condition else ""
                    where = f"{action} on {resource}{shown} ({_describe(statement)})"
                    problems.append(f"{role}: extra {where}: no recorded call needs it")
                    continue
                for label, narrowed in _condition_variants(condition):
                    if not any(statement_allows({**single, "Condition": narrowed}, n) for n in used):
                        problems.append(
                            f"{role}: extra condition value {label} for {action} on {resource} "
                            f"({_describe(statement)}): no recorded call needs it"
                        )
        problems += _too_broad(role, statement, mine, everything)
    return problems


def _folder(arn: str) -> str:
    return posixpath.dirname(arn) + "/"


def _too_broad(role: str, statement: Mapping[str, Any], mine: list[Need], everything: list[Need]) -> list[str]:
    problems = []
    objects = [n for n in everything if n.action in OBJECT_ACTIONS]
    folders = sorted({_folder(n.resource) for n in objects})
    for action in OBJECT_ACTIONS:
        if not any(action_matches(a, action) for a in listed(statement["Action"])):
            continue
        done = {_folder(n.resource) for n in mine if n.action == action}
        for folder in folders:
            if folder in done:
                continue
            probes = [Need(role, action, n.resource, n.context) for n in objects if _folder(n.resource) == folder]
            if any(statement_allows(statement, probe) for probe in probes):
                problems.append(
                    f"{role}: too broad: {_describe(statement)} allows {action} on {folder}*, "
                    f"which the code never does as {role}"
                )
    return problems

"""Every decision of the training DAG as a plain function (no Airflow import here).

``dags/hmm_training.py`` wires these into tasks; ``hmm/airflow_tasks.py`` runs
them against a store, a local process or an EMR cluster. Everything a user can
type into the DAG's trigger form passes through :func:`check_params` before it
reaches a path, an S3 key or a spark-submit argument list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hmm import __version__
from hmm.distributed.sources import ENGINES
from hmm.distributed.uris import MAX_URI_LENGTH, InvalidURIError, brief, check_uri
from hmm.training.schema import (
    END,
    S3_URI_PATTERN,
    SPEC_SCHEMA,
    TRAINING_ID_PATTERN,
    URI_PATTERN,
    first_error,
    spec_problem,
    value_at,
)
from hmm.training.spec import CODE_VERSION, COLUMN, RECORDED_FIELDS, InvalidSpecError, TrainingSpec, check_training_id

MODES = ("local", "emr")
#: Step kind -> the spark-submit entry point in jobs/.
JOBS = {"init": "init_training", "iterate": "em_iteration", "finalize": "finalize", "decode": "decode"}
#: What the trigger form may hold besides the TrainingSpec fields.
RUN_FIELDS = ("store", "mode", "engine", "emr", "training_id")
#: The TrainingSpec fields a user chooses (the code version is recorded by the code, not chosen).
SPEC_FIELDS = tuple(name for name in TrainingSpec.__dataclass_fields__ if name not in RECORDED_FIELDS)
#: Spark master of local mode: every core of the Airflow worker.
LOCAL_MASTER = "local[*]"
#: Spark settings of a local-mode step: a step is one short-lived job, so no web UI (a server
#: and its port per step) and no progress bar in the task log.
LOCAL_SPARK_CONF = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
#: JVM options of a local-mode step's driver (in local mode the executor too). A step's JVM lives
#: seconds to minutes: the quick C1 compiler alone costs less than C2 compiling Spark's start-up
#: code on the cores the step needs (benchmarks/README.md, "fixed cost of a step").
LOCAL_JAVA_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)
#: The code bundles' directory under a store root (``make upload ROOT=<store>``): the default
#: of ``emr.bundle_root``.
BUNDLE_PREFIX = "bundle"
#: Layout of one bundle, ``<emr.bundle_root>/<code version>/`` (built by infra/bundle.py): the
#: version's wheel, the jobs/ entry points and the bootstrap action that installs the wheel on
#: every node. Steps import the installed wheel, not a ``--py-files`` archive: numba caches
#: compiled kernels by source path, and an archive's path is new in every YARN application,
#: so each step would compile them again (tens of seconds).
BUNDLE_JOBS = "jobs"
BOOTSTRAP_SCRIPT = "bootstrap.sh"
#: The Python that bootstrap.sh installs on the nodes and Spark runs (EMR 7's python3 is 3.9).
CLUSTER_PYTHON = "/usr/bin/python3.11"
#: numba's cache on the nodes: bootstrap.sh compiles every kernel into it (python -m hmm.core.warmup),
#: and every step's driver and executors read it, so no step compiles.
CLUSTER_NUMBA_CACHE = "/var/cache/hmm-em/numba"
#: pyproject.toml's fallback_version: the version of code installed without git metadata.
UNKNOWN_CODE_VERSION = "0.0"
#: EMR step states: reusable when a task is re-run, and failures.
STEP_REUSABLE = frozenset({"PENDING", "RUNNING", "COMPLETED"})
STEP_FAILED = frozenset({"FAILED", "CANCELLED", "INTERRUPTED"})

#: JSON schema of the ``emr`` param: the cluster and how steps reach the code.
EMR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "release_label": {"type": "string", "pattern": r"^emr-[0-9]+\.[0-9]+\.[0-9]+" + END},
        "master_instance_type": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*\.[a-z0-9]+" + END},
        "core_instance_type": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*\.[a-z0-9]+" + END},
        "core_instance_count": {"type": "integer", "minimum": 1, "maximum": 256},
        # Where `make upload` put the bundles: <bundle_root>/<code version>/. Empty: <store>/bundle.
        "bundle_root": {"type": ["null", "string"], "pattern": S3_URI_PATTERN},
        "log_uri": {"type": ["null", "string"], "pattern": S3_URI_PATTERN},
        "deploy_mode": {"type": "string", "enum": ["cluster", "client"]},
        "job_flow_role": {"type": "string", "pattern": r"^[A-Za-z0-9+=,.@_-]{1,128}" + END},
        "service_role": {"type": "string", "pattern": r"^[A-Za-z0-9+=,.@_-]{1,128}" + END},
        "subnet_id": {"type": ["null", "string"], "pattern": r"^subnet-[0-9a-f]{8,17}" + END},
        "idle_timeout_seconds": {"type": "integer", "minimum": 60, "maximum": 604800},
    },
}
EMR_DEFAULTS: dict[str, Any] = {
    # Spark 3.5.6, Python 3.9 and 3.11, Java 17 (infra/README.md); `make test` runs the Spark
    # tests on pyspark 3.5.6 too (constraints-spark35.txt).
    "release_label": "emr-7.13.0",
    "master_instance_type": "m5.xlarge",
    "core_instance_type": "m5.xlarge",
    "core_instance_count": 2,
    "bundle_root": None,
    "log_uri": None,
    "deploy_mode": "cluster",
    "job_flow_role": "EMR_EC2_DefaultRole",
    "service_role": "EMR_DefaultRole",
    "subnet_id": None,
    # Safety net: a cluster whose run died without its teardown stops itself when idle.
    "idle_timeout_seconds": 3600,
}


#: The trigger form's fields besides the spec's. The DAG's Params are :data:`PARAMS_SCHEMA`'s properties.
RUN_PROPERTIES: dict[str, Any] = {
    "store": {"type": "string", "maxLength": MAX_URI_LENGTH, "pattern": URI_PATTERN},
    "mode": {"type": "string", "enum": list(MODES)},
    "engine": {"type": "string", "enum": list(ENGINES)},
    "emr": EMR_SCHEMA,
    "training_id": {"type": ["null", "string"], "pattern": TRAINING_ID_PATTERN},
}
#: What a run's params hold when the conf leaves them out (the DAG's Params always have them).
RUN_DEFAULTS: dict[str, Any] = {"store": "", "mode": "local", "engine": "spark", "emr": {}, "training_id": None}
#: JSON schema of a run's params: the spec's fields (:data:`hmm.training.schema.SPEC_SCHEMA`) and the run's.
PARAMS_SCHEMA: dict[str, Any] = {
    "$schema": SPEC_SCHEMA["$schema"],
    "type": "object",
    "additionalProperties": False,
    "properties": {**{name: SPEC_SCHEMA["properties"][name] for name in SPEC_FIELDS}, **RUN_PROPERTIES},
}


@dataclass(frozen=True)
class RunSettings:
    """A DAG run's params, validated."""

    spec: TrainingSpec
    store: str
    mode: str
    engine: str
    emr: dict[str, Any]
    training_id: str | None  # as given in the conf; None: derive it from the run


def rule_broken(schema: Mapping[str, Any], value: Any, field: str) -> str:
    """The one-line refusal of a param ``value`` that breaks its ``schema`` (a type, enum, pattern or bounds)."""
    allowed = schema.get("type", [])
    allowed = [allowed] if isinstance(allowed, str) else list(allowed)
    if value is None:
        return f"param {field!r} is required"
    if "enum" in schema:
        return f"param {field!r} is {brief(value)}; choose one of {schema['enum']}"
    if "string" in allowed:
        return f"param {field!r} is {brief(value)}; it must match {schema.get('pattern', '')}"
    if "integer" in allowed:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"param {field!r} is {brief(value)}; it must be an integer"
        return f"param {field!r} is {value}; it must be in [{schema.get('minimum')}, {schema.get('maximum')}]"
    return f"param {field!r} is {brief(value)}; it must be {schema.get('type')}"


def check_value(schema: Mapping[str, Any], value: Any, field: str) -> Any:
    """``value`` if it satisfies ``schema`` (JSON schema, validated by jsonschema); else InvalidSpecError."""
    if first_error(schema, value) is not None:
        raise InvalidSpecError(rule_broken(schema, value, field))
    return value


def param_problem(error: Any, params: Mapping[str, Any]) -> str:
    """The one-line refusal of the first :data:`PARAMS_SCHEMA` error (a ``jsonschema.ValidationError``).

    Spec fields are refused as the spec refuses them; URIs and the training id by the code that
    has the last word on them, so the message names the rule rather than the pattern.
    """
    path = list(error.absolute_path)
    if not path:
        known = sorted(SPEC_FIELDS + RUN_FIELDS)
        return f"unknown param(s) {sorted(set(params) - set(known))}; known: {known}"
    name, value = path[0], params[path[0]]
    if name in SPEC_FIELDS:
        return spec_problem(error, params)
    try:
        if name == "store":
            check_uri(value, "param 'store'")
        elif name == "training_id":
            check_training_id(value)
    except (InvalidURIError, InvalidSpecError) as refused:
        return str(refused)
    if name == "emr" and len(path) == 1:
        if error.validator == "additionalProperties":
            known = sorted(EMR_SCHEMA["properties"])
            return f"param 'emr' has unknown field(s) {sorted(set(value) - set(known))}; known: {known}"
        return f"param 'emr' is {brief(value)}; it must be an object"
    if name == "emr":
        return rule_broken(EMR_SCHEMA["properties"][path[1]], value_at(value, path[1:2]), f"emr.{path[1]}")
    return rule_broken(RUN_PROPERTIES[name], value, name)


def check_emr(raw: Any) -> dict[str, Any]:
    """The EMR settings with defaults filled in; every field checked against :data:`EMR_SCHEMA`."""
    raw = {} if raw is None else raw
    error = first_error({"properties": {"emr": EMR_SCHEMA}}, {"emr": raw})  # as within the params
    if error is not None:
        raise InvalidSpecError(param_problem(error, {"emr": raw}))
    return {**EMR_DEFAULTS, **raw}


def check_params(params: Mapping[str, Any]) -> RunSettings:
    """Validate a run's params (defaults merged with the conf); errors name the param and the rule.

    One :data:`PARAMS_SCHEMA` validation (what the trigger form checks too), then what a schema
    cannot say: the spec's own checks (:meth:`TrainingSpec.from_dict`), the store URI's rules,
    where emr mode finds the code bundles.
    """
    values = {**RUN_DEFAULTS, **params}
    if values["emr"] is None:
        values["emr"] = {}
    error = first_error(PARAMS_SCHEMA, values)
    if error is not None:
        raise InvalidSpecError(param_problem(error, values))
    spec = TrainingSpec.from_dict({k: params[k] for k in SPEC_FIELDS if k in params})
    try:
        store = check_uri(values["store"], "param 'store'")
    except InvalidURIError as error:
        raise InvalidSpecError(str(error)) from None
    emr = {**EMR_DEFAULTS, **values["emr"]}
    if emr["bundle_root"] is None and store.startswith("s3://"):
        emr["bundle_root"] = default_bundle_root(store)
    if values["mode"] == "emr" and emr["bundle_root"] is None:
        raise InvalidSpecError(
            f"param 'store' is {store!r} and param 'emr.bundle_root' is empty: emr mode needs the code "
            "bundles on S3, under an s3:// store or at emr.bundle_root"
        )
    given = values["training_id"]
    training_id = None if given is None else check_training_id(given)
    return RunSettings(
        spec=spec, store=store, mode=values["mode"], engine=values["engine"], emr=emr, training_id=training_id
    )


# ------------------------------------------------------------------ training id


def spec_digest(spec: TrainingSpec) -> str:
    """SHA-256 of the spec's canonical JSON without the code version (:meth:`TrainingSpec.digest`)."""
    return spec.digest()


def derive_training_id(spec: TrainingSpec, logical_date: datetime) -> str:
    """``<model>-<UTC date>-<spec digest>``: a re-run or backfill of the same date resumes, never duplicates."""
    if logical_date.tzinfo is None:
        raise ValueError(f"logical date {logical_date!r} must carry a time zone")
    stamp = logical_date.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return check_training_id(f"{spec.model}-{stamp}-{spec_digest(spec)[:12]}")


def resolve_training_id(settings: RunSettings, logical_date: datetime | None, run_after: datetime) -> str:
    """The conf's training_id (resume that one), else one derived from the run's logical date.

    A run without a logical date (Airflow 3 allows them for manual triggers) uses ``run_after``.
    """
    if settings.training_id is not None:
        return settings.training_id
    return derive_training_id(settings.spec, logical_date if logical_date is not None else run_after)


def spec_differences(stored: TrainingSpec, requested: TrainingSpec) -> list[str]:
    """Names of the fields in which two specs differ; the code version that created them does not count."""
    a, b = stored.fields(), requested.fields()
    return sorted(k for k in a if a[k] != b[k])


# ------------------------------------------------------------------ code version and bundle


def code_version_to_run(stored: TrainingSpec | None) -> str:
    """The code version whose bundle a training's EMR steps run: the one its spec.json records.

    So a training resumed after a deploy keeps running the code that created it. A new training
    runs this deployment's version (its init step records it); so does one whose spec.json
    predates recorded versions.
    """
    if stored is not None and stored.code_version not in (None, UNKNOWN_CODE_VERSION):
        return check_code_version(stored.code_version)
    if __version__ == UNKNOWN_CODE_VERSION:
        raise ValueError(
            f"this hmm-em was installed without git metadata (version {__version__}), so it cannot name the "
            "EMR bundle to run: install it from a git checkout or from a bundle's wheel (make bundle)"
        )
    return check_code_version(__version__)


def check_code_version(code_version: Any) -> str:
    if not isinstance(code_version, str) or not CODE_VERSION.fullmatch(code_version):
        raise ValueError(
            f"code version {brief(code_version)} is invalid: a version is 1-128 letters, digits and '.+_-'"
        )
    return code_version


def default_bundle_root(store: str) -> str:
    """``<store>/bundle``: where ``make upload ROOT=<store>`` puts the bundles."""
    return f"{store.rstrip('/')}/{BUNDLE_PREFIX}"


def bundle_uri(bundle_root: Any, code_version: str) -> str:
    """``<bundle_root>/<code_version>``: the bundle of one code version."""
    root = check_value({"type": "string", "pattern": S3_URI_PATTERN}, bundle_root, "emr.bundle_root")
    return f"{root.rstrip('/')}/{check_code_version(code_version)}"


# ------------------------------------------------------------------ the loop


def first_iteration(latest: int | None) -> int:
    """The iteration of a run's first loop slot: the one after the latest committed when the run starts.

    Slot ``i`` of the run handles iteration ``first_iteration + i - 1``, so a task always means
    the same iteration within its run.
    """
    return (latest or 0) + 1


def slot_action(iteration: int, latest: int | None, latest_converged: bool) -> str:
    """What the loop slot of ``iteration`` does, given the store's latest committed iteration.

    ``committed``: pass straight through (a cleared task, or another run got there first);
    ``converged``: nothing left to run; ``run``: run or submit the iteration's step.
    """
    if latest is None:
        raise ValueError("the training has no committed iteration 0: run init first")
    if iteration <= latest:
        return "committed"
    if latest >= 1 and latest_converged:
        return "converged"
    if iteration != latest + 1:
        raise ValueError(f"iteration {iteration} cannot run: the latest committed iteration is {latest}")
    return "run"


def after_commit(record: Mapping[str, Any], slot: int, slots: int) -> str:
    """Where the loop goes once an iteration is committed: ``finalize``, ``next`` slot or ``continue``.

    ``converged`` in a COMMIT covers both stopping rules (gain below tol, max_iter updates).
    ``continue`` means this run's slots are used up: a continuation run takes over.
    """
    if not 1 <= slot <= slots:
        raise ValueError(f"slot {slot} is outside 1..{slots}")
    if record["converged"]:
        return "finalize"
    return "next" if slot < slots else "continue"


def stop_reason(record: Mapping[str, Any], spec: TrainingSpec) -> str:
    """Why a converged training stopped, for the task log."""
    stopped = [e["index"] for e in record.get("candidates") or [] if e.get("status") == "stopped"]
    if stopped:
        return f"no candidate runs; candidate(s) {stopped} stopped early on the held-out score (holdout_patience)"
    if record["iteration"] >= spec.max_iter:
        return f"max_iter={spec.max_iter} reached"
    return f"log-likelihood gain {record['improvement']:.6g} below tol={spec.tol}"


def continuation_conf(params: Mapping[str, Any], training_id: str) -> dict[str, Any]:
    """The conf of a continuation run: the same params, pinned to this training."""
    return {**{k: v for k, v in params.items() if k in SPEC_FIELDS + RUN_FIELDS}, "training_id": training_id}


def continuation_run_id(training_id: str, iteration: int) -> str:
    """One continuation per (training, iteration): a re-run of the trigger cannot start a second one."""
    return f"hmm_em_continue__{check_training_id(training_id)}__{int(iteration)}"


# ------------------------------------------------------------------ steps


def step_name(training_id: str, kind: str, iteration: int | None = None) -> str:
    """The EMR step name; it identifies a step when a task re-runs."""
    if kind not in JOBS:
        raise ValueError(f"step kind must be one of {sorted(JOBS)}, got {kind!r}")
    suffix = f" {iteration}" if kind == "iterate" else ""
    label = "iteration" if kind == "iterate" else kind
    return f"hmm-em {check_training_id(training_id)} {label}{suffix}"


def job_arguments(
    kind: str,
    store: str,
    training_id: str,
    iteration: int | None = None,
    spec: TrainingSpec | None = None,
    decode: Mapping[str, Any] | None = None,
) -> list[str]:
    """The arguments of a jobs/ entry point: the one place step command lines come from.

    ``decode``: the decode step's settings (:func:`decode_arguments`).
    """
    if kind not in JOBS:
        raise ValueError(f"step kind must be one of {sorted(JOBS)}, got {kind!r}")
    arguments = ["--store", check_uri(store, "store URI"), "--training-id", check_training_id(training_id)]
    if kind == "decode":
        if decode is None:
            raise ValueError("the decode step needs its settings")
        return arguments + decode_arguments(decode)
    if kind == "init":
        if spec is None:
            raise ValueError("the init step needs the spec")
        # One line, without the code version: the job records its own in spec.json.
        arguments += ["--spec", json.dumps(spec.definition(), sort_keys=True)]
    elif kind == "iterate":
        if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
            raise ValueError(f"iteration must be an integer >= 1, got {iteration!r}")
        arguments += ["--iteration", str(iteration)]
    return arguments


def local_command(
    kind: str,
    store: str,
    training_id: str,
    *,
    engine: str,
    jobs_dir: str,
    python: str,
    spark_submit: str | None,
    iteration: int | None = None,
    spec: TrainingSpec | None = None,
    java_options: Sequence[str] = (),
    decode: Mapping[str, Any] | None = None,
    remote: str | None = None,
) -> list[str]:
    """argv of a step in local mode.

    ``spark`` engine: with ``remote`` (the run's Spark Connect server, ``sc://127.0.0.1:<port>``)
    the job in a plain python process with ``--remote``; else ``spark-submit --master local[*]
    jobs/<job>.py ...`` with :data:`LOCAL_SPARK_CONF` and the driver JVM options
    :data:`LOCAL_JAVA_OPTIONS` plus ``java_options`` (e.g. a class data sharing archive).
    ``local`` engine, and finalize (which starts no Spark): the job in a plain python process.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    job = f"{jobs_dir.rstrip('/')}/{JOBS[kind]}.py"
    arguments = job_arguments(kind, store, training_id, iteration, spec, decode)
    if kind == "finalize":
        return [python, job, *arguments]
    if engine == "local":
        return [python, job, *arguments, "--engine", "local"]
    if remote:
        return [python, job, *arguments, "--remote", remote]
    if not spark_submit:
        raise ValueError("spark-submit not found: install pyspark where the task runs, or set param engine=local")
    options = [*LOCAL_JAVA_OPTIONS, *java_options]
    if any(not option.startswith("-") or any(c.isspace() for c in option) for option in options):
        raise ValueError(f"JVM options must be single words starting with '-', got {options}")
    conf = [part for key, value in LOCAL_SPARK_CONF.items() for part in ("--conf", f"{key}={value}")]
    return [
        spark_submit,
        "--master",
        LOCAL_MASTER,
        *conf,
        "--driver-java-options",
        " ".join(options),
        job,
        *arguments,
    ]


def emr_step(
    kind: str,
    emr: Mapping[str, Any],
    store: str,
    training_id: str,
    code_version: str,
    iteration: int | None = None,
    spec: TrainingSpec | None = None,
    decode: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The EMR step (``add_job_flow_steps`` shape) running ``jobs/<job>.py`` from the bundle of ``code_version``."""
    bundle = bundle_uri(emr["bundle_root"], code_version)
    deploy_mode = check_value(EMR_SCHEMA["properties"]["deploy_mode"], emr["deploy_mode"], "emr.deploy_mode")
    name = decode_step_name(training_id, decode["output"]) if kind == "decode" and decode else None
    return {
        "Name": name or step_name(training_id, kind, iteration),
        # The DAG decides what a failure means; the cluster stays up for the teardown.
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                deploy_mode,
                f"{bundle}/{BUNDLE_JOBS}/{JOBS[kind]}.py",
                *job_arguments(kind, store, training_id, iteration, spec, decode),
            ],
        },
    }


def job_flow_config(emr: Mapping[str, Any], training_id: str, code_version: str) -> dict[str, Any]:
    """``run_job_flow`` arguments for the training's cluster (EmrCreateJobFlowOperator overrides).

    Every node runs the bundle's bootstrap action, which installs Python 3.11 and the wheel of
    ``code_version``; Spark's driver and executors run that Python.
    """
    settings = check_emr(emr)
    bundle = bundle_uri(settings["bundle_root"], code_version)
    instances: dict[str, Any] = {
        "InstanceGroups": [
            {
                "Name": "primary",
                "Market": "ON_DEMAND",
                "InstanceRole": "MASTER",
                "InstanceType": settings["master_instance_type"],
                "InstanceCount": 1,
            },
            {
                "Name": "core",
                "Market": "ON_DEMAND",
                "InstanceRole": "CORE",
                "InstanceType": settings["core_instance_type"],
                "InstanceCount": settings["core_instance_count"],
            },
        ],
        # Steps are added one at a time by the DAG: the cluster must outlive each of them.
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if settings["subnet_id"]:
        instances["Ec2SubnetId"] = settings["subnet_id"]
    config: dict[str, Any] = {
        "Name": f"hmm-em {check_training_id(training_id)}",
        "ReleaseLabel": settings["release_label"],
        "Applications": [{"Name": "Spark"}],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Configurations": [
                    {
                        "Classification": "export",
                        "Properties": {
                            "PYSPARK_PYTHON": CLUSTER_PYTHON,
                            "PYSPARK_DRIVER_PYTHON": CLUSTER_PYTHON,
                            "NUMBA_CACHE_DIR": CLUSTER_NUMBA_CACHE,
                        },
                    }
                ],
                "Properties": {},
            },
            {
                # YARN containers do not read spark-env: the executors and (cluster deploy mode)
                # the driver get the kernel cache's location from Spark itself.
                "Classification": "spark-defaults",
                "Properties": {
                    "spark.executorEnv.NUMBA_CACHE_DIR": CLUSTER_NUMBA_CACHE,
                    "spark.yarn.appMasterEnv.NUMBA_CACHE_DIR": CLUSTER_NUMBA_CACHE,
                },
            },
        ],
        "BootstrapActions": [
            {
                "Name": f"hmm-em {code_version}",
                "ScriptBootstrapAction": {"Path": f"{bundle}/{BOOTSTRAP_SCRIPT}", "Args": [bundle]},
            }
        ],
        "Instances": instances,
        "JobFlowRole": settings["job_flow_role"],
        "ServiceRole": settings["service_role"],
        "VisibleToAllUsers": True,
        "StepConcurrencyLevel": 1,
        "AutoTerminationPolicy": {"IdleTimeout": settings["idle_timeout_seconds"]},
        "Tags": [
            {"Key": "hmm-em:training-id", "Value": training_id},
            {"Key": "hmm-em:code-version", "Value": code_version},
            # The EMR service role's AmazonEMRServicePolicy_v2 acts only on resources with this tag.
            {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"},
        ],
    }
    if settings["log_uri"]:
        config["LogUri"] = settings["log_uri"]
    return config


def reusable_step(steps: Sequence[Mapping[str, Any]], name: str) -> str | None:
    """Id of a step named ``name`` that is pending, running or completed (``list_steps`` shape), if any."""
    for step in steps:
        if step.get("Name") == name and step.get("Status", {}).get("State") in STEP_REUSABLE:
            return str(step["Id"])
    return None


def step_failure(step: Mapping[str, Any]) -> str | None:
    """None while a step (``describe_step`` shape) is pending, running or completed; else why it failed."""
    status = step.get("Status", {})
    state = status.get("State")
    if state not in STEP_FAILED:
        return None
    details = status.get("FailureDetails") or {}
    change = status.get("StateChangeReason") or {}
    reason = "; ".join(str(p) for p in (details.get("Reason"), details.get("Message"), change.get("Message")) if p)
    log = f" (log: {details['LogFile']})" if details.get("LogFile") else ""
    return f"EMR step {step.get('Id')} ({step.get('Name')}) is {state}: {reason or 'no reason given'}{log}"


# ------------------------------------------------------------------ decoding (dags/hmm_decode.py)

#: The Asset hmm_training's finalize updates with each published model (extra: the training id
#: and the PUBLISHED marker); hmm_decode is scheduled on it.
MODEL_ASSET_NAME = "hmm-em-model"
#: The Asset hmm_decode updates with each finished output (extra: output URI, rows, model).
DECODED_ASSET_NAME = "hmm-em-decoded"
#: The decode step's outputs, as ``hmm-em decode --outputs`` names them (hmm.training.decode.DECODE_OUTPUTS).
DECODE_OUTPUT_NAMES = ("viterbi", "log_likelihood", "posterior", "filtered")
#: What the hmm_decode trigger form may hold.
DECODE_FIELDS = ("store", "training_id", "data", "output", "outputs", "sequence_col", "id_col", "mode", "engine", "emr")
#: Where default outputs go under the training's store.
DECODES_PREFIX = "decodes"


@dataclass(frozen=True)
class DecodeSettings:
    """A hmm_decode run's params, validated; None: from the triggering model event or the training's spec."""

    store: str | None
    training_id: str | None
    data: str | None
    output: str | None
    outputs: list[str]
    sequence_col: str | None
    id_col: str | None
    mode: str
    engine: str
    emr: dict[str, Any]


def _optional_uri(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return check_uri(value, f"param {name!r}")
    except InvalidURIError as error:
        raise InvalidSpecError(str(error)) from None


def check_decode_params(params: Mapping[str, Any]) -> DecodeSettings:
    """Validate a hmm_decode run's params (defaults merged with the conf); errors name the param and the rule."""
    unknown = sorted(set(params) - set(DECODE_FIELDS))
    if unknown:
        raise InvalidSpecError(f"unknown param(s) {unknown}; known: {sorted(DECODE_FIELDS)}")
    outputs = params.get("outputs", ["viterbi"])
    if (
        not isinstance(outputs, list)
        or not outputs
        or any(name not in DECODE_OUTPUT_NAMES for name in outputs)
        or len(set(outputs)) < len(outputs)
    ):
        raise InvalidSpecError(
            f"param 'outputs' is {brief(outputs)}; it must be a list of distinct names of {DECODE_OUTPUT_NAMES}"
        )
    columns = {}
    for name in ("sequence_col", "id_col"):
        columns[name] = check_value({"type": ["null", "string"], "pattern": COLUMN.pattern}, params.get(name), name)
    training_id = params.get("training_id")
    store = _optional_uri(params, "store")
    if training_id is not None:
        training_id = check_training_id(training_id)
        if store is None:
            raise InvalidSpecError("param 'training_id' needs param 'store', the store the training is in")
    mode = check_value({"type": "string", "enum": list(MODES)}, params.get("mode", "local"), "mode")
    engine = check_value({"type": "string", "enum": list(ENGINES)}, params.get("engine", "spark"), "engine")
    emr = check_emr(params.get("emr"))
    return DecodeSettings(
        store=store,
        training_id=training_id,
        data=_optional_uri(params, "data"),
        output=_optional_uri(params, "output"),
        outputs=[name for name in DECODE_OUTPUT_NAMES if name in outputs],
        sequence_col=columns["sequence_col"],
        id_col=columns["id_col"],
        mode=mode,
        engine=engine,
        emr=emr,
    )


def model_from_asset_events(extras: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """``(store, training_id)`` of the newest model among the triggering ``hmm-em-model`` events, if any.

    hmm_training's finalize puts the training id and the PUBLISHED marker in the event's extra;
    the marker's ``model`` URL, ``<store>/trainings/<id>/model/<k>/model.npz``, names the store.
    """
    for extra in reversed(list(extras)):
        training_id = extra.get("training_id") if isinstance(extra, Mapping) else None
        model = extra.get("model") if isinstance(extra, Mapping) else None
        if not isinstance(training_id, str) or not isinstance(model, str):
            continue
        marker = f"/trainings/{check_training_id(training_id)}/model/"
        if marker not in model:
            raise InvalidSpecError(f"the model event's model URL {brief(model)} is not under trainings/{training_id}/")
        store = model[: model.index(marker)]
        try:
            return check_uri(store, "the model event's store"), training_id
        except InvalidURIError as error:
            raise InvalidSpecError(str(error)) from None
    return None


def default_decode_output(
    store: str, training_id: str, iteration: int, data: str, outputs: Sequence[str], sequence_col: str, id_col: str
) -> str:
    """``<store>/decodes/<training id>/<iteration>-<digest of data, outputs, columns>``: one output per decode,
    so a re-run of the same decode finds its output (finished, or to resume) and another decode gets its own."""
    what = json.dumps([data, list(outputs), sequence_col, id_col])
    digest = hashlib.sha256(what.encode()).hexdigest()[:12]
    return f"{store.rstrip('/')}/{DECODES_PREFIX}/{check_training_id(training_id)}/{int(iteration)}-{digest}"


def decode_arguments(decode: Mapping[str, Any]) -> list[str]:
    """The decode job's arguments after ``--store``/``--training-id`` (``decode``: a plan's settings)."""
    arguments = [
        "--data",
        check_uri(decode["data"], "data URI"),
        "--output",
        check_uri(decode["output"], "output URI"),
        "--outputs",
        ",".join(name for name in decode["outputs"] if name in DECODE_OUTPUT_NAMES),
    ]
    for flag, name in (("--sequence-col", "sequence_col"), ("--id-col", "id_col")):
        if decode.get(name):
            arguments += [flag, decode[name]]
    return arguments


def decode_step_name(training_id: str, output: str) -> str:
    """The EMR step name of a decode: one per (training, output), so a re-run task finds its step."""
    digest = hashlib.sha256(check_uri(output, "output URI").encode()).hexdigest()[:12]
    return f"hmm-em {check_training_id(training_id)} decode {digest}"

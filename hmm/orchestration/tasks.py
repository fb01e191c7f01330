"""What the tasks of ``dags/hmm_training.py`` do, against a store, a local process or an EMR cluster.

The decisions are in :mod:`hmm.orchestration.decisions` (plain functions); this module
adds Airflow: task logs, exceptions that fail a task without retrying, the
``aws_default`` connection and the branching sensor of the EM loop.

A *plan* is the JSON-able dict the ``validate`` task returns and every other
task receives: training id, store, spec, mode, engine, EMR settings.

Every task process imports this module when it parses the DAG file, so its
module-level imports stay light (``import hmm`` loads no model); whatever needs
the models, pyarrow or Spark is imported inside the function that uses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, BranchMixIn
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from hmm.orchestration import decisions as orchestration
from hmm.orchestration import emr
from hmm.training.commits import Training
from hmm.training.spec import InvalidSpecError, TrainingSpec
from hmm.training.steps import format_progress
from hmm.training.store import open_store

log = logging.getLogger(__name__)

AWS_CONN_ID = emr.AWS_CONN_ID
#: Seconds between two looks at a running EMR step (the triggerer's for an iteration; the init and
#: finalize tasks wait in the task). One DescribeStep call per look; a finished step is noticed
#: within this time, which bounds what waiting adds to a step.
STEP_POLL_SECONDS = 5.0
#: Exit codes of the jobs that mean "running it again will not help" (see hmm.training.cli).
PERMANENT_EXIT_CODES = {2: "bad input", 3: "training error"}


# ------------------------------------------------------------------ validate


def plan_run(params: Mapping[str, Any], logical_date: datetime | None, run_after: datetime) -> dict[str, Any]:
    """Check the params, fix the training id and look at the store: the plan every later task follows.

    Local mode also scans the data (``hmm.training.steps.validate_data``, local engine) when the training is new;
    EMR mode stops at cheap checks, so no cluster time is spent on a run that cannot start. EMR mode
    also fixes the code version the cluster runs: the one the training's spec.json records.
    """
    settings = orchestration.check_params(params)
    training_id = orchestration.resolve_training_id(settings, logical_date, run_after)
    training = Training(open_store(settings.store), training_id)
    spec = settings.spec
    stored = None
    latest = None
    published = False
    if training.has_spec():
        stored = training.spec()
        differences = orchestration.spec_differences(stored, spec)
        if differences:
            log.warning(
                "training %s exists with a spec that differs from the params in %s; resuming it with its stored spec",
                training_id,
                differences,
            )
            spec = stored
        latest = training.latest()
        published = training.published() is not None
        log.info("resuming training %s: latest committed iteration %s, published %s", training_id, latest, published)
    else:
        log.info("new training %s in %s", training_id, settings.store)
    if latest is None:  # init will run: the model init_from names must be there (reads only)
        from hmm.training.steps import check_init_from

        check_init_from(settings.store, spec, training_id)
    if settings.mode == "local" and latest is None:
        from hmm.training.steps import validate_data

        counts = validate_data(spec, engine="local")
        log.info("data %s: %s", spec.data, counts)
    code_version = None
    if settings.mode == "emr":
        code_version = orchestration.code_version_to_run(stored)
        if stored is not None and stored.code_version is None:
            log.warning(
                "spec.json of training %s records no code version: running this one, %s", training_id, code_version
            )
        log.info(
            "EMR steps run hmm-em %s from %s",
            code_version,
            orchestration.bundle_uri(settings.emr["bundle_root"], code_version),
        )
    return {
        "training_id": training_id,
        "store": settings.store,
        "spec": asdict(spec),
        "mode": settings.mode,
        "engine": settings.engine,
        "emr": settings.emr,
        "code_version": code_version,
        "job_flow": orchestration.job_flow_config(settings.emr, training_id, code_version) if code_version else None,
        "latest": latest,
        "first_iteration": orchestration.first_iteration(latest),
        "published": published,
        "continuation_conf": orchestration.continuation_conf(params, training_id),
    }


def _training(plan: Mapping[str, Any]) -> Training:
    return Training(open_store(plan["store"]), plan["training_id"])


def _spec(plan: Mapping[str, Any]) -> TrainingSpec:
    return TrainingSpec.from_dict(plan["spec"])


# ------------------------------------------------------------------ local mode


def local_environment(jobs_dir: str) -> dict[str, str]:
    """The task's environment plus what a job needs: the repository on PYTHONPATH, Spark on our python."""
    env = dict(os.environ)
    root = str(Path(jobs_dir).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return env


def spark_submit_path() -> str | None:
    """spark-submit next to this python (a virtual environment with pyspark), else on PATH."""
    beside = Path(sys.executable).with_name("spark-submit")
    return str(beside) if beside.exists() else shutil.which("spark-submit")


def spark_class_archive(spark_submit: str) -> Path:
    """The class data sharing archive of the JVM that ``spark_submit`` starts, in the user's cache.

    With it a step's JVM maps the classes of Spark, Hadoop and Parquet from one file instead of
    loading and verifying them from the jars: about a third of a small step's CPU time
    (benchmarks/README.md). An archive fits one JDK and one set of jars, hence the key in its
    name (a JVM that finds a mismatch ignores the archive).
    """
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else Path(shutil.which("java") or "java")
    identity = []
    for path in (java.resolve(), Path(spark_submit).resolve()):
        identity.append(f"{path}:{path.stat().st_mtime_ns if path.exists() else 0}")
    key = hashlib.sha256("|".join(identity).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hmm-em" / f"spark-classes-{key}.jsa"


def class_archive_options(archive: Path) -> tuple[list[str], Path | None]:
    """JVM options that use ``archive``, or that write it when the step's JVM exits if there is none.

    Returns the options and the file being written (None when using the archive): the caller
    moves it into place once the step has ended, so that no JVM maps a half-written archive.
    """
    quiet = ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]  # a JVM that cannot use an archive says so at length
    if any(c.isspace() for c in str(archive)):
        return [], None
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", *quiet], None
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return [], None
    partial = archive.with_name(f"{archive.stem}.{os.getpid()}-{time.monotonic_ns()}.partial")
    return [f"-XX:ArchiveClassesAtExit={partial}", *quiet], partial


def run_command(argv: list[str], env: Mapping[str, str]) -> None:
    """Run a job, its output into the task log; fail with the job's error line if it exits non-zero."""
    log.info("running %s", shlex.join(argv))
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env)) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.info("%s", line.rstrip())
            tail.append(line.rstrip())
        code = process.wait()
    if code == 0:
        return
    errors = [line for line in tail if line.startswith("hmm-em ") and ": error: " in line]
    detail = errors[-1] if errors else "\n".join(tail)
    how = f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with code {code}"
    message = f"job {_job_name(argv)} {how}: {detail or 'no output'}"
    if code in PERMANENT_EXIT_CODES:
        raise AirflowFailException(f"{message} ({PERMANENT_EXIT_CODES[code]})")
    raise RuntimeError(message)


def _job_name(argv: list[str]) -> str:
    return next((Path(a).stem for a in argv if a.endswith(".py")), argv[0])


def start_spark(plan: Mapping[str, Any], jobs_dir: str, idle_seconds: float | None = None) -> dict[str, Any]:
    """The run's local Spark (local mode, spark engine): a Spark Connect server its steps share.

    Returns what :func:`run_local_step` and :func:`stop_spark` need (``url``, ``port``, ``pid``,
    ``log``). The URL names one Spark Connect session for the whole run, so that the server's Python
    workers (keyed by session) and their imports serve every step. Skips in EMR mode (the cluster is
    the run's Spark), with the local engine (no Spark), and for a decode whose output is finished.
    """
    from hmm.orchestration import connect

    if plan["mode"] != "local" or plan["engine"] != "spark":
        raise AirflowSkipException(f"no local Spark in {plan['mode']} mode with the {plan['engine']} engine")
    if plan.get("finished"):
        raise AirflowSkipException("the output is finished already: no local Spark")
    spark_submit = spark_submit_path()
    if not spark_submit:
        raise AirflowFailException("spark-submit not found: install pyspark where the task runs, or set engine=local")
    archive = spark_class_archive(spark_submit)
    java_options, written = class_archive_options(archive)
    argv = connect.server_command(
        spark_submit,
        orchestration.LOCAL_MASTER,
        orchestration.LOCAL_SPARK_CONF,
        [*orchestration.LOCAL_JAVA_OPTIONS, *java_options],
    )
    state_dir = Path(tempfile.mkdtemp(prefix=f"hmm-em-spark-{plan['training_id'][:40]}-"))
    log.info("starting a Spark Connect server for this run: %s (log %s)", shlex.join(argv), state_dir / "server.log")
    server = connect.start(
        argv,
        local_environment(jobs_dir),
        state_dir,
        idle_seconds=connect.IDLE_SECONDS if idle_seconds is None else idle_seconds,
        archive=(written, archive) if written is not None else None,
    )
    server["url"] = f"{server['url']}/;session_id={uuid.uuid4()}"
    log.info("local Spark of this run: %s (supervisor pid %s)", server["url"], server["pid"])
    return server


def stop_spark(server: Mapping[str, Any] | None) -> None:
    """Stop the run's Spark Connect server (the teardown); nothing to do if none was started or it stopped itself."""
    from hmm.orchestration import connect

    if not server:
        raise AirflowSkipException("no local Spark was started in this run")
    if connect.stop(int(server["pid"])):
        log.info("stopped the Spark Connect server %s (pid %s)", server["url"], server["pid"])
    else:
        log.info("the Spark Connect server %s (pid %s) had stopped already", server["url"], server["pid"])


def run_local_step(
    plan: Mapping[str, Any],
    kind: str,
    jobs_dir: str,
    iteration: int | None = None,
    spark_server: Mapping[str, Any] | None = None,
) -> None:
    """Run a step's job on this worker (``plan``: a training's plan, or a decode's with its ``decode`` settings).

    With ``spark_server`` (:func:`start_spark`'s) a Spark step is a python process on that server;
    if the server is gone (it stops itself after :data:`hmm.orchestration.connect.IDLE_SECONDS`
    without a client), the step runs under spark-submit as without one.
    """
    from hmm.orchestration import connect

    remote = None
    if spark_server and plan["engine"] == "spark" and kind != "finalize":
        if connect.alive(spark_server):
            remote = spark_server["url"]
        else:
            log.warning("the run's Spark Connect server %s is gone: this step starts Spark itself", spark_server["url"])
    spark_submit = spark_submit_path()
    java_options: list[str] = []
    archive = written = None
    if plan["engine"] == "spark" and kind != "finalize" and spark_submit and remote is None:
        archive = spark_class_archive(spark_submit)
        java_options, written = class_archive_options(archive)
    argv = orchestration.local_command(
        kind,
        plan["store"],
        plan["training_id"],
        engine=plan["engine"],
        jobs_dir=jobs_dir,
        python=sys.executable,
        spark_submit=spark_submit,
        iteration=iteration,
        spec=_spec(plan) if kind == "init" else None,
        java_options=java_options,
        decode=plan.get("decode") if kind == "decode" else None,
        remote=remote,
    )
    try:
        run_command(argv, local_environment(jobs_dir))
    finally:
        if written is not None and archive is not None and written.exists():
            # Atomic: a step starting now maps either no archive or a whole one.
            os.replace(written, archive)
            log.info("wrote the JVM class archive %s for the next local steps", archive)


# ------------------------------------------------------------------ EMR mode


def run_emr_step(
    plan: Mapping[str, Any], kind: str, cluster_id: str, aws_conn_id: str = AWS_CONN_ID, iteration: int | None = None
) -> str:
    """Submit (or find) the step and, except for iterations (a sensor waits for those), wait for it."""
    step = orchestration.emr_step(
        kind,
        plan["emr"],
        plan["store"],
        plan["training_id"],
        plan["code_version"],
        iteration=iteration,
        spec=_spec(plan) if kind == "init" else None,
        decode=plan.get("decode") if kind == "decode" else None,
    )
    client = emr.client(aws_conn_id)
    step_id = emr.submit_step(client, cluster_id, step)
    if kind == "iterate":
        return step_id
    while (state := emr.step_state(client, cluster_id, step_id)) != "COMPLETED":
        log.info("EMR step %s (%s): %s", step_id, step["Name"], state)
        time.sleep(STEP_POLL_SECONDS)
    log.info("EMR step %s (%s) completed", step_id, step["Name"])
    return step_id


# ------------------------------------------------------------------ the steps


def init(
    plan: Mapping[str, Any], cluster_id: str | None, jobs_dir: str, spark_server: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Iteration 0 (spec.json and the initial parameters), unless it is committed already."""
    training = _training(plan)
    if 0 not in training.committed():
        if plan["mode"] == "local":
            run_local_step(plan, "init", jobs_dir, spark_server=spark_server)
        else:
            run_emr_step(plan, "init", _cluster(cluster_id))
        if 0 not in training.committed():
            raise AirflowFailException(f"the init step finished but training {training.id} has no COMMIT 0")
    else:
        log.info("iteration 0 of training %s is committed already", training.id)
    record = training.record(0)
    log.info("COMMIT 0: %s", json.dumps(record, sort_keys=True))
    return record


def submit_iteration(
    plan: Mapping[str, Any],
    slot: int,
    cluster_id: str | None,
    jobs_dir: str,
    spark_server: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Loop slot ``slot``: run (local) or submit (EMR) its iteration, unless committed or converged already."""
    training = _training(plan)
    iteration = plan["first_iteration"] + slot - 1
    latest = training.latest()
    converged = latest is not None and bool(training.record(latest)["converged"])
    action = orchestration.slot_action(iteration, latest, converged)
    nothing = {"iteration": iteration, "step_id": None, "cluster_id": None}
    if action == "committed":
        log.info("iteration %s of training %s is committed already: passing through", iteration, training.id)
        return nothing
    if action == "converged":
        log.info("training %s converged at iteration %s: nothing to run", training.id, latest)
        return {**nothing, "iteration": latest}
    if plan["mode"] == "local":
        run_local_step(plan, "iterate", jobs_dir, iteration, spark_server)
        return nothing
    cluster = _cluster(cluster_id)
    step_id = run_emr_step(plan, "iterate", cluster, iteration=iteration)
    return {"iteration": iteration, "step_id": step_id, "cluster_id": cluster}


def finalize(plan: Mapping[str, Any], cluster_id: str | None, jobs_dir: str) -> dict[str, Any]:
    """Publish the model and report (the finalize job); the published marker with the training id.

    Skipped when the latest iteration was published before this run (a backfill of a finished
    date): no new model, so no new asset event.
    """
    training = _training(plan)
    marker = training.published()
    if marker is None or marker["iteration"] != training.latest():
        # Publishes; or fails with the job's reason if an older iteration was published.
        if plan["mode"] == "local":
            run_local_step(plan, "finalize", jobs_dir)
        else:
            run_emr_step(plan, "finalize", _cluster(cluster_id))
        marker = training.published()
        if marker is None:
            raise AirflowFailException(f"the finalize step finished but training {training.id} is not published")
    elif plan["published"]:
        raise AirflowSkipException(f"iteration {marker['iteration']} of {training.id} was published by an earlier run")
    log.info(
        "published iteration %s of %s: model %s, report %s",
        marker["iteration"],
        training.id,
        marker["model"],
        marker["report"],
    )
    return {"training_id": training.id, **marker}


def _cluster(cluster_id: str | None) -> str:
    if not cluster_id:
        raise AirflowFailException("EMR mode but no cluster id from create_cluster")
    return cluster_id


class IterationWait(BaseOperator, BranchMixIn):
    """Waits for one loop slot's iteration, then branches: next slot, finalize or continuation.

    In ``local`` mode the iteration task ran the step itself, so the COMMIT is there at once. In
    ``emr`` mode, while the step is pending or running and the iteration not committed, the task
    defers to :class:`~hmm.orchestration.triggers.EmrStepDoneTrigger`: the triggerer looks at the
    step every ``poll_seconds`` and at the COMMIT every second, and no worker slot is held; the task
    resumes once the iteration is committed or the step has finished, and fails at once with
    EMR's reason if the step FAILED or was CANCELLED first. It then requires the
    iteration's COMMIT, logs it (log-likelihood, delta, timings) and pushes it as XCom ``commit``.
    """

    template_fields = ("plan",)
    inherits_from_skipmixin = True
    ui_color = "#e8f7e4"

    def __init__(
        self,
        *,
        plan: Any,
        slot: int,
        slots: int,
        submit_task_id: str,
        next_task_id: str,
        continue_task_id: str,
        finalize_task_id: str,
        poll_seconds: float = STEP_POLL_SECONDS,
        step_timeout: timedelta | None = None,
        aws_conn_id: str = AWS_CONN_ID,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.plan = plan
        self.slot = slot
        self.slots = slots
        self.submit_task_id = submit_task_id
        self.next_task_id = next_task_id
        self.continue_task_id = continue_task_id
        self.finalize_task_id = finalize_task_id
        self.poll_seconds = poll_seconds
        self.step_timeout = step_timeout
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Any) -> Any:
        from hmm.orchestration.triggers import TERMINAL_STATES, EmrStepDoneTrigger

        submitted = context["ti"].xcom_pull(task_ids=self.submit_task_id)
        iteration = submitted["iteration"]
        if submitted.get("step_id") and not _training(self.plan).has_commit(iteration):
            state = emr.step_state(emr.client(self.aws_conn_id), submitted["cluster_id"], submitted["step_id"])
            if state not in TERMINAL_STATES:
                self.log.info("iteration %s: EMR step %s is %s", iteration, submitted["step_id"], state)
                self.defer(
                    trigger=EmrStepDoneTrigger(
                        submitted["cluster_id"],
                        submitted["step_id"],
                        self.poll_seconds,
                        self.aws_conn_id,
                        commit=[self.plan["store"], self.plan["training_id"], iteration],
                    ),
                    method_name="step_finished",
                    timeout=self.step_timeout,
                )
        return self._branch(context, iteration)

    def step_finished(self, context: Any, event: Mapping[str, Any] | None = None) -> Any:
        """Resumed by the trigger: the iteration is committed, or the step has finished."""
        event = event or {}
        if event.get("state") not in ("COMPLETED", "COMMITTED"):
            raise AirflowFailException(event.get("reason") or f"EMR step ended {event.get('state')}")
        return self._branch(context, context["ti"].xcom_pull(task_ids=self.submit_task_id)["iteration"])

    def _branch(self, context: Any, iteration: int) -> Any:
        training = _training(self.plan)
        if iteration not in training.committed():
            raise AirflowFailException(
                f"the step of iteration {iteration} finished but training {training.id} has no COMMIT {iteration}"
            )
        record = training.record(iteration)
        self.log.info("%s", format_progress({**record, "status": "committed"}))
        self.log.info("COMMIT %s: %s", record["iteration"], json.dumps(record, sort_keys=True))
        context["ti"].xcom_push(key="commit", value=record)
        decision = orchestration.after_commit(record, self.slot, self.slots)
        if decision == "finalize":
            self.log.info("training converged: %s", orchestration.stop_reason(record, _spec(self.plan)))
            # Skip the rest of the loop at once, not one level per scheduler pass, so finalize starts now.
            self.skip(context["ti"], self._rest_of_loop())
            return self.finalize_task_id
        if decision == "continue":
            self.log.info("all %s slots of this run are used: a continuation run takes over", self.slots)
        return self.do_branch(context, self.next_task_id if decision == "next" else self.continue_task_id)

    def _rest_of_loop(self) -> list[Any]:
        """The later slots and the continuation: downstream of the next slot, not of finalize."""
        dag = self.dag
        first = dag.get_task(self.next_task_id)
        keep = {self.finalize_task_id, *dag.get_task(self.finalize_task_id).get_flat_relative_ids(upstream=False)}
        return [t for t in [first, *first.get_flat_relatives(upstream=False)] if t.task_id not in keep]


# ------------------------------------------------------------------ decoding (dags/hmm_decode.py)


def plan_decode(params: Mapping[str, Any], model_events: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Check a hmm_decode run's params, find the model and run every check of the decode step (nothing
    written): the plan the other tasks follow.

    The model: ``training_id`` and ``store`` of the conf, else the newest ``hmm-em-model`` event that
    triggered the run (``model_events``: their extras). Data, columns default to the training's spec;
    the output to :func:`hmm.orchestration.decisions.default_decode_output`. ``finished``: the output
    is complete already, so nothing runs (no cluster either).
    """
    from hmm.training.decode import UnknownModelError, prepare_decode

    settings = orchestration.check_decode_params(params)
    store, training_id = settings.store, settings.training_id
    if training_id is None:
        found = orchestration.model_from_asset_events(model_events)
        if found is None:
            raise InvalidSpecError(
                "no model to decode: give training_id and store in the conf, or let an hmm-em-model event "
                "(a training's finalize) trigger the run"
            )
        store, training_id = found
    assert store is not None
    training = Training(open_store(store), training_id)
    if not training.has_spec():
        raise UnknownModelError(f"training {training_id!r} does not exist in {store}")
    marker = training.published()
    if marker is None:
        raise UnknownModelError(f"training {training_id!r} has no published model in {store}")
    spec = training.spec()
    data = settings.data or spec.data
    sequence_col = settings.sequence_col or spec.sequence_col
    id_col = settings.id_col or spec.id_col or "id"
    output = settings.output or orchestration.default_decode_output(
        store, training_id, marker["iteration"], data, settings.outputs, sequence_col, id_col
    )
    prepared = prepare_decode(
        output,
        data,
        store_uri=store,
        training_id=training_id,
        outputs=settings.outputs,
        sequence_col=sequence_col,
        id_col=id_col,
        engine="local",
    )
    finished = prepared.finished is not None
    log.info(
        "decode of %s (training %s, iteration %s) into %s: %s",
        data,
        training_id,
        marker["iteration"],
        output,
        "finished already" if finished else "resuming" if prepared.claimed else "new",
    )
    emr = dict(settings.emr)
    if emr["bundle_root"] is None and store.startswith("s3://"):
        emr["bundle_root"] = orchestration.default_bundle_root(store)
    code_version = None
    if settings.mode == "emr" and not finished:
        if emr["bundle_root"] is None:
            raise InvalidSpecError(
                f"the store is {store!r} and param 'emr.bundle_root' is empty: emr mode needs the code bundles on S3"
            )
        code_version = orchestration.code_version_to_run(spec)
    return {
        "training_id": training_id,
        "store": store,
        "iteration": marker["iteration"],
        "mode": settings.mode,
        "engine": settings.engine,
        "emr": emr,
        "code_version": code_version,
        "job_flow": orchestration.job_flow_config(emr, training_id, code_version) if code_version else None,
        "decode": {
            "data": data,
            "output": output,
            "outputs": settings.outputs,
            "sequence_col": sequence_col,
            "id_col": id_col,
        },
        "finished": finished,
    }


def run_decode(
    plan: Mapping[str, Any], cluster_id: str | None, jobs_dir: str, spark_server: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run (local: on ``spark_server``, :func:`start_spark`'s, if any) or submit and wait for (EMR) the decode
    step, unless the output is finished; its summary."""
    from hmm.training.decode import SUCCESS_KEY

    output = plan["decode"]["output"]
    if plan["finished"]:
        log.info("output %s is finished already: nothing to decode", output)
    elif plan["mode"] == "local":
        run_local_step(plan, "decode", jobs_dir, spark_server=spark_server)
    else:
        run_emr_step(plan, "decode", _cluster(cluster_id))
    store = open_store(output)
    if not store.exists(SUCCESS_KEY):
        raise AirflowFailException(f"the decode step finished but {store.url(SUCCESS_KEY)} does not exist")
    manifest = json.loads(store.read(SUCCESS_KEY))
    log.info("decoded %s sequences into %s (%s parts)", manifest["n_rows"], output, len(manifest["parts"]))
    return {
        "output": output,
        "n_rows": manifest["n_rows"],
        "outputs": manifest["outputs"],
        "training_id": plan["training_id"],
        "iteration": manifest["model"].get("iteration"),
        "model_sha256": manifest["model_sha256"],
    }

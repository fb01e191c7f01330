"""
# hmm_training: Baum-Welch training of a hidden Markov model, one EM iteration per step

One DAG run is one training. Every iteration is committed to the store
(`trainings/<training_id>/iterations/<k>/COMMIT`, see the project's DESIGN), so a
run can fail anywhere and the next run continues from the last committed iteration.

## Flow

```
validate -> emr_mode -> [create_cluster] -> init
         -> [start_spark] ------------------/
  -> iteration_1 -> wait_1 -> iteration_2 -> wait_2 -> ... -> iteration_S -> wait_S -> continue_training
                      \\-----------------------\\------ ... ------------------\\-> finalize (outlet: Asset hmm-em-model)
  -> [terminate_cluster] (teardown: runs whenever the cluster was created)
  -> [stop_spark] (teardown: runs whenever the local Spark was started)
watcher (fails the run if any task failed, since the teardown would otherwise decide the run's state)
```

* **validate** turns the params into a `TrainingSpec`, checks the URIs and the training id and
  looks at the store. In `local` mode it also scans the data (local engine) for a new training;
  in `emr` mode it stops at these cheap checks, so no cluster time is spent on a bad request.
  Bad params are refused even earlier: the trigger form validates them against their JSON schema.
* **create_cluster** / **terminate_cluster** (`emr` mode only; skipped in `local` mode): an EMR
  cluster for this run, terminated as the run's teardown whatever happened in between.
* **start_spark** / **stop_spark** (`local` mode with the `spark` engine only; skipped otherwise): the
  run's local Spark, a Spark Connect server on 127.0.0.1 (`hmm.orchestration.connect`) that every step
  of the run uses, stopped as the run's teardown whatever happened. It runs in a session of its own
  (it outlives the task that starts it) and stops itself after 15 minutes without a client, so a run
  whose teardown never ran leaves none behind; a step that finds it gone starts Spark itself.
* **init** commits iteration 0 (`jobs/init_training.py`); a no-op for a training that has it.
* **iteration_i** handles iteration k = b + i, where b is the latest iteration committed when
  the run started (0 for a new training): it runs (`local`) or submits (`emr`)
  `jobs/em_iteration.py --iteration k`, or passes straight through if `COMMIT k` exists
  already. **wait_i** waits for that step and for `COMMIT k`, fails at once with EMR's reason
  if the step FAILED or was CANCELLED, logs the COMMIT (log-likelihood, delta, timings) and
  branches to slot i+1, or to **finalize** once the COMMIT says `converged` (gain below `tol`,
  or `max_iter` updates; the later slots are skipped at once).
* **finalize** publishes the model and its report (`jobs/finalize.py`) and updates the
  `hmm-em-model` asset (extra: training id, iteration, model and report URIs), so downstream DAGs
  can be scheduled on a new model. It is skipped when that model was published by an earlier run.

## Bounding the loop

A DAG is acyclic, so each run has a fixed chain of S = `ITERATION_SLOTS` iteration slots. A run
that uses all S slots without converging skips finalize and triggers a **continuation run**
of this DAG (`continue_training`, run id `hmm_em_continue__<training_id>__<k>`, so a re-run of
that task cannot start a second one) with the same conf plus `training_id`; that run resumes
the training where this one stopped. `max_iter` is therefore not limited by S, and one
DAG run stays one readable chain in which each task always means the same iteration. Why not
one task looping inside: a crash would lose the task's place, its log would hold hours of
iterations, and Airflow could not show per-iteration progress. In `emr` mode each run has its
own cluster: S bounds how long a cluster lives, at the cost of one cluster start per S
iterations (raise S for long trainings of quick iterations).

## Steps, engines, idempotency

`local` mode (default) runs each step as a plain python process on the worker: `jobs/<step>.py ...
--remote sc://127.0.0.1:<port>/;session_id=<run's>` on the run's Spark Connect server (no JVM
per step; the server's Python workers keep their imports and compiled kernels from step to step),
or with `engine=local` (pyarrow, no Spark; for small data and tests). finalize starts no Spark.
`emr` mode adds EMR steps (`spark-submit --deploy-mode <emr.deploy_mode>
<bundle>/jobs/<step>.py ...`, always the Spark engine, importing the wheel that the bundle's
bootstrap action installed on every node, kernels precompiled); before adding one, a
task reuses a step of the same name (`hmm-em <training_id> iteration <k>`) that is pending,
running or completed on the cluster, and a slot whose iteration is committed submits nothing.
init and finalize wait for their step inside the task; an iteration's step is waited for by
its `wait_i`, which defers to Airflow's triggerer while the step runs (no worker slot held: one
DescribeStep every 5 s, and one S3 HEAD of the iteration's COMMIT every second) and resumes as
soon as the iteration is committed or the step has finished.

Tasks do not retry on their own: a failure is bad data, a bug or a cluster problem, and
resuming costs nothing (below).

## Code version

`<bundle>` is `<emr.bundle_root>/<code version>`, a bundle that `make upload ROOT=s3://...`
put there (`emr.bundle_root` empty: `<store>/bundle`, so `make upload ROOT=<store>` is all it
takes). The code version is the one the training's `spec.json` records (`code_version`, written
by the init step: the hmm-em version that created the training), so a training resumed after a
deploy of newer code keeps running the code it started with; a new training runs the version of
the hmm-em this DAG imports, as does one whose spec.json predates recorded versions. The cluster's
bootstrap action, `<bundle>/bootstrap.sh <bundle>`, installs Python 3.11 and that version's wheel
on every node, and Spark runs Python 3.11 (`spark-env` `PYSPARK_PYTHON`). The code version is not
part of the training id: a re-run with newer code resumes the same training.

## Schedule

Weekly, no catch-up. A scheduled run trains with the params' defaults: the data and store URIs
default to `$HMM_EM_DATA_URI` and `$HMM_EM_STORE_URI` of the DAG processor (else
`file:///var/lib/hmm-em/{data,store}`), so a deployment points the weekly training at data its
upstream pipeline refreshes without editing this file. Each week's logical date makes a new
training id.

## Training id, resume, backfill

The training id is `<model>-<logical date, UTC>-<first 12 hex of the SHA-256 of the spec>`,
so a re-run or **backfill** of the same logical date with the same params resumes that
training, and a backfill of a finished date finds every iteration committed and the model
published: it does no new work. To **resume** a failed run: clear its failed task (with
downstream), re-run the same logical date, or trigger the DAG with `training_id` in the conf
(any earlier training; if the params differ from its stored spec, the stored spec wins and
the differences are logged). No committed iteration is ever recomputed or overwritten.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, Param, TriggerRule, chain, task

# Every task process parses this file before running its task: only light modules here (no models,
# numba, scipy, scikit-learn, pyarrow or Spark; tests/dags/test_dag_imports.py checks). The task
# callables in hmm.orchestration.tasks import what they need when they run.
from hmm.orchestration import tasks as airflow_tasks
from hmm.orchestration.decisions import EMR_DEFAULTS, MODEL_ASSET_NAME, PARAMS_SCHEMA
from hmm.orchestration.resources import CLUSTER_TASK_ID, SPARK_TASK_ID, around_steps

DAG_ID = "hmm_training"
#: Iteration slots per run; a run that uses them all without converging triggers a continuation.
ITERATION_SLOTS = 6
#: How long one iteration's EMR step may run before its wait gives up.
ITERATION_TIMEOUT = timedelta(hours=6)
JOBS_DIR = str(Path(__file__).resolve().parents[1] / "jobs")
MODEL_ASSET = Asset(MODEL_ASSET_NAME)

#: Each param's JSON schema is its field's in the one schema of a run's params (PARAMS_SCHEMA; the
#: spec's fields come from hmm.training.schema). The validate task checks the whole of it again,
#: with what a schema cannot say (hmm.orchestration.decisions.check_params).
FIELDS = PARAMS_SCHEMA["properties"]
PARAMS = {
    "model": Param("categorical", **FIELDS["model"], description="HMM emission model"),
    "n_components": Param(
        3, **FIELDS["n_components"], description="number of hidden states, or a list of them (a sweep)"
    ),
    "data": Param(
        os.environ.get("HMM_EM_DATA_URI", "file:///var/lib/hmm-em/data"),
        **FIELDS["data"],
        description="Parquet sequences: file:///path or s3://bucket/prefix",
    ),
    "store": Param(
        os.environ.get("HMM_EM_STORE_URI", "file:///var/lib/hmm-em/store"),
        **FIELDS["store"],
        description="root of the trainings: file:///path or s3://bucket/prefix",
    ),
    "sequence_col": Param("sequence", **FIELDS["sequence_col"], description="list column of frames"),
    "id_col": Param(None, **FIELDS["id_col"], description="sequence id column"),
    "tol": Param(1e-2, **FIELDS["tol"], description="stop when the log-likelihood gains less"),
    "max_iter": Param(100, **FIELDS["max_iter"], description="at most this many EM updates"),
    "seed": Param(0, **FIELDS["seed"], description="random_state of the model"),
    "model_args": Param(
        {}, **FIELDS["model_args"], description="further constructor arguments (priors, covariance_type...)"
    ),
    "n_init": Param(1, **FIELDS["n_init"], description="random restarts per number of states, in one data pass"),
    "prune_after": Param(5, **FIELDS["prune_after"], description="iterations before only the best keep go on"),
    "keep": Param(1, **FIELDS["keep"], description="candidates that survive pruning"),
    "holdout_fraction": Param(
        0.0, **FIELDS["holdout_fraction"], description="share of sequences held out to rank candidates (0: none)"
    ),
    "holdout_patience": Param(
        None,
        **FIELDS["holdout_patience"],
        description="stop a candidate after this many iterations without a better held-out score (empty: never)",
    ),
    "init_from": Param(
        None,
        **FIELDS["init_from"],
        description="start from this training's published model, or 'latest' (same spec, earlier data)",
    ),
    "mode": Param("local", **FIELDS["mode"], description="local: this worker; emr: a cluster per run"),
    "engine": Param("spark", **FIELDS["engine"], description="local mode: spark-submit or pyarrow"),
    "emr": Param(
        dict(EMR_DEFAULTS),
        **FIELDS["emr"],
        description="EMR cluster settings (emr mode); bundle_root empty: the bundles are under <store>/bundle",
    ),
    "training_id": Param(
        None,
        **FIELDS["training_id"],
        description="resume this training; empty: derived from the logical date and the spec",
    ),
}

with DAG(
    dag_id=DAG_ID,
    schedule="@weekly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    params=PARAMS,
    doc_md=__doc__,
    default_args={"retries": 0},
    tags=["hmm-em"],
) as dag:

    @task(multiple_outputs=True)
    def validate(params=None, logical_date=None, dag_run=None):
        return airflow_tasks.plan_run(dict(params), logical_date, dag_run.run_after)

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def emr_mode(mode: str) -> bool:
        return mode == "emr"

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def init(plan: dict, ti=None):
        cluster, server = ti.xcom_pull(task_ids=CLUSTER_TASK_ID), ti.xcom_pull(task_ids=SPARK_TASK_ID)
        return airflow_tasks.init(plan, cluster, JOBS_DIR, server)

    @task
    def iteration(plan: dict, slot: int, ti=None):
        cluster, server = ti.xcom_pull(task_ids=CLUSTER_TASK_ID), ti.xcom_pull(task_ids=SPARK_TASK_ID)
        return airflow_tasks.submit_iteration(plan, slot, cluster, JOBS_DIR, server)

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, outlets=[MODEL_ASSET])
    def finalize(plan: dict, ti=None, outlet_events=None):
        published = airflow_tasks.finalize(plan, ti.xcom_pull(task_ids=CLUSTER_TASK_ID), JOBS_DIR)
        outlet_events[MODEL_ASSET].extra = published
        return published

    plan = validate()
    started = init(plan)
    published = finalize(plan)
    continuation = TriggerDagRunOperator(
        task_id="continue_training",
        trigger_dag_id=DAG_ID,
        trigger_run_id=(
            "hmm_em_continue__{{ ti.xcom_pull(task_ids='validate', key='training_id') }}"
            f"__{{{{ ti.xcom_pull(task_ids='wait_{ITERATION_SLOTS}', key='commit')['iteration'] }}}}"
        ),
        conf=plan["continuation_conf"],
        skip_when_already_exists=True,
        openlineage_inject_parent_info=False,
    )
    previous = started
    for slot in range(1, ITERATION_SLOTS + 1):
        submitted = iteration.override(task_id=f"iteration_{slot}")(plan, slot)
        waited = airflow_tasks.IterationWait(
            task_id=f"wait_{slot}",
            plan=plan,
            slot=slot,
            slots=ITERATION_SLOTS,
            submit_task_id=f"iteration_{slot}",
            next_task_id=f"iteration_{slot + 1}" if slot < ITERATION_SLOTS else "continue_training",
            continue_task_id="continue_training",
            finalize_task_id="finalize",
            step_timeout=ITERATION_TIMEOUT,
        )
        chain(previous, submitted, waited, published)
        previous = waited
    previous >> continuation

    # create_cluster / terminate_cluster, start_spark / stop_spark and the watcher, as in hmm_decode.
    around_steps(dag, plan, emr_mode(plan["mode"]), started, [published, continuation], JOBS_DIR)

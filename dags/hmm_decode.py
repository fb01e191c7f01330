"""
# hmm_decode: decode Parquet sequences with a published model, into Parquet outputs keyed by id

Scheduled on the `hmm-em-model` asset: every model that `hmm_training`'s finalize publishes
starts a run that decodes with it. Triggerable by hand with a conf naming the model
(`store` and `training_id`) and, optionally, the data.

## Flow

```
validate -> needs_cluster -> [create_cluster] -> decode (outlet: Asset hmm-em-decoded)
         -> [start_spark] -----------------------/
  -> [terminate_cluster] (teardown: runs whenever the cluster was created)
  -> [stop_spark] (teardown: runs whenever the local Spark was started)
watcher (fails the run if any task failed, since the teardown would otherwise decide the run's state)
```

* **validate** finds the model: the conf's `training_id` in `store`, else the newest
  `hmm-em-model` event that triggered the run (its extra names the training and the published
  model's URL, hence the store). Then every check of the decode step, nothing written: the
  published model (its SHA-256 against the PUBLISHED marker), every data file's sequence and id
  columns, the first batch against the model (kind of observations, features, symbols), and the
  output URI, which must be empty, or hold this very decode (finished, or unfinished: resumed).
* **create_cluster** / **terminate_cluster** (`emr` mode only, and only when there is something
  to decode): a cluster for this run, terminated as the teardown whatever happened in between.
* **start_spark** / **stop_spark** (`local` mode with the `spark` engine, and only when there is
  something to decode): the run's local Spark, a Spark Connect server on 127.0.0.1
  (`hmm.orchestration.connect`), as in `hmm_training`: started once, stopped as the teardown
  whatever happened, and stopping itself after 15 minutes without a client.
* **decode** runs `jobs/decode.py` (`local`: a python process with `--remote` on the run's Spark
  Connect server, or `spark-submit --master local[*]` if that server is gone; a python process
  without Spark with `engine=local`; `emr`: an EMR step named `hmm-em <training_id> decode <digest of
  the output>`, reused when the task re-runs, waited for inside the task). Then it reads the
  output's `_SUCCESS` manifest and updates the `hmm-em-decoded` asset (extra: output URI, rows,
  outputs, training id, iteration, model SHA-256).

## Params

`data` (empty: the training's own data), `output` (empty:
`<store>/decodes/<training_id>/<iteration>-<digest of data, outputs, columns>`), `outputs`
(`viterbi`, `log_likelihood`, `posterior`, `filtered`), `sequence_col` and `id_col` (empty: the
training's), `mode` (`local`|`emr`), `engine` (default `$HMM_EM_DECODE_ENGINE` of the DAG processor,
else `spark`: what a run triggered by a model event uses), `emr` (as `hmm_training`'s).

## Idempotency

The decode step commits one Parquet part per split of the data (created once, never replaced)
and a `_SUCCESS` manifest last (hmm.training.decode). A re-run of a failed run (or of its
decode task) resumes: committed parts are skipped. A run whose output is finished does nothing
(no cluster). A second model event for the same model and data finds the same default output.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import DAG, Asset, Param, TriggerRule, task

from hmm.distributed.sources import ENGINES

# Every task process parses this file: only light modules here (tests/dags/test_dag_imports.py checks).
from hmm.orchestration import tasks as airflow_tasks
from hmm.orchestration.decisions import (
    DECODE_OUTPUT_NAMES,
    DECODED_ASSET_NAME,
    EMR_DEFAULTS,
    EMR_SCHEMA,
    MODEL_ASSET_NAME,
    MODES,
    URI_PATTERN,
)
from hmm.orchestration.resources import CLUSTER_TASK_ID, SPARK_TASK_ID, around_steps
from hmm.training.spec import COLUMN, TRAINING_ID

DAG_ID = "hmm_decode"
JOBS_DIR = str(Path(__file__).resolve().parents[1] / "jobs")
MODEL_ASSET = Asset(MODEL_ASSET_NAME)
DECODED_ASSET = Asset(DECODED_ASSET_NAME)

PARAMS = {
    "store": Param(
        os.environ.get("HMM_EM_STORE_URI", "file:///var/lib/hmm-em/store"),
        type=["null", "string"],
        pattern=URI_PATTERN,
        description="root of the trainings (with training_id); a model event names its own",
    ),
    "training_id": Param(
        None,
        type=["null", "string"],
        pattern=TRAINING_ID.pattern,
        description="decode with this training's published model; empty: the model of the triggering event",
    ),
    "data": Param(
        None, type=["null", "string"], pattern=URI_PATTERN, description="Parquet sequences; empty: the training's"
    ),
    "output": Param(
        None,
        type=["null", "string"],
        pattern=URI_PATTERN,
        description="output URI; empty: <store>/decodes/<training_id>/<iteration>-<digest>",
    ),
    "outputs": Param(
        ["viterbi", "log_likelihood"],
        type="array",
        items={"type": "string", "enum": list(DECODE_OUTPUT_NAMES)},
        minItems=1,
        uniqueItems=True,
        description="viterbi (path), log_likelihood (per sequence), posterior and filtered (T x K)",
    ),
    "sequence_col": Param(None, type=["null", "string"], pattern=COLUMN.pattern, description="empty: the training's"),
    "id_col": Param(None, type=["null", "string"], pattern=COLUMN.pattern, description="empty: the training's, or id"),
    "mode": Param("local", type="string", enum=list(MODES), description="local: this worker; emr: a cluster per run"),
    "engine": Param(
        os.environ.get("HMM_EM_DECODE_ENGINE", "spark"),
        type="string",
        enum=list(ENGINES),
        description="local mode: Spark (the run's Spark Connect server) or pyarrow",
    ),
    "emr": Param(
        dict(EMR_DEFAULTS),
        **EMR_SCHEMA,
        description="EMR cluster settings (emr mode); bundle_root empty: the bundles are under <store>/bundle",
    ),
}

with DAG(
    dag_id=DAG_ID,
    schedule=[MODEL_ASSET],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    params=PARAMS,
    doc_md=__doc__,
    default_args={"retries": 0},
    tags=["hmm-em"],
) as dag:

    @task(multiple_outputs=True)
    def validate(params=None, triggering_asset_events=None):
        events = triggering_asset_events.get(MODEL_ASSET, []) if triggering_asset_events else []
        return airflow_tasks.plan_decode(dict(params), [dict(event.extra or {}) for event in events])

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def needs_cluster(mode: str, finished: bool) -> bool:
        return mode == "emr" and not finished

    @task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[DECODED_ASSET])
    def decode(plan: dict, ti=None, outlet_events=None):
        cluster, server = ti.xcom_pull(task_ids=CLUSTER_TASK_ID), ti.xcom_pull(task_ids=SPARK_TASK_ID)
        summary = airflow_tasks.run_decode(plan, cluster, JOBS_DIR, server)
        outlet_events[DECODED_ASSET].extra = summary
        return summary

    plan = validate()
    decoded = decode(plan)
    # create_cluster / terminate_cluster, start_spark / stop_spark and the watcher, as in hmm_training.
    around_steps(dag, plan, needs_cluster(plan["mode"], plan["finished"]), decoded, [decoded], JOBS_DIR)

"""What both DAGs build around their steps: the run's EMR cluster, its local Spark, and the watcher.

``dags/hmm_training.py`` and ``dags/hmm_decode.py`` differ in their steps; around them they need
the same tasks, wired the same way, built here once by :func:`around_steps`:

* **create_cluster** (the plan's ``job_flow``) between the DAG's gate (a short circuit that lets it
  run: EMR mode, and something to do) and the first step; **terminate_cluster** after the last
  steps, behind **cluster_created**, a short circuit that runs the teardown whenever the cluster
  was created, whatever happened in between, and skips it otherwise;
* **start_spark** before the first step and **stop_spark** after the last ones: the run's Spark
  Connect server in local mode with the spark engine (:func:`hmm.orchestration.tasks.start_spark`);
* **watcher**: fails the run if any task failed, since the teardowns (trigger rule ALL_DONE) would
  otherwise decide the run's state.

The steps read what these tasks return with ``ti.xcom_pull(task_ids=CLUSTER_TASK_ID)`` and
``ti.xcom_pull(task_ids=SPARK_TASK_ID)``.
"""

from __future__ import annotations

from typing import Any, cast

from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator, EmrTerminateJobFlowOperator
from airflow.sdk import TriggerRule, chain, task
from airflow.sdk.exceptions import AirflowException

from hmm.orchestration import tasks as airflow_tasks

#: The task that creates the run's cluster (its XCom: the cluster id) and the one that starts its local Spark.
CLUSTER_TASK_ID = "create_cluster"
SPARK_TASK_ID = "start_spark"


def around_steps(dag: Any, plan: Any, gate: Any, first: Any, last: list[Any], jobs_dir: str) -> None:
    """Add the run's cluster, local Spark and watcher to ``dag`` (call it last in the DAG's ``with`` block).

    Parameters
    ----------
    dag : DAG
        The DAG being defined; every task it has by now, but the short circuits, is watched.
    plan : XComArg
        The validate task's output (``job_flow``, ``mode``, ``engine``...).
    gate : XComArg
        The short circuit before create_cluster (skips it, and what hangs below it only, when False).
    first : task or XComArg
        The first step: after create_cluster and start_spark (its trigger rule must let it run when they are skipped).
    last : list of tasks or XComArgs
        The steps after which the cluster is terminated and the local Spark stopped.
    jobs_dir : str
        The jobs' directory (the local Spark's environment puts the repository on PYTHONPATH).
    """

    @task(task_id=SPARK_TASK_ID)
    def start_spark(plan: dict) -> Any:
        return airflow_tasks.start_spark(plan, jobs_dir)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def stop_spark(ti: Any = None) -> None:
        airflow_tasks.stop_spark(ti.xcom_pull(task_ids=SPARK_TASK_ID))

    @task.short_circuit(trigger_rule=TriggerRule.ALL_DONE, ignore_downstream_trigger_rules=False)
    def cluster_created(ti: Any = None) -> bool:
        return bool(ti.xcom_pull(task_ids=CLUSTER_TASK_ID))

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        raise AirflowException("a task of this run failed (the cluster teardown still ran)")

    create_cluster = EmrCreateJobFlowOperator(
        task_id=CLUSTER_TASK_ID,
        job_flow_overrides=plan["job_flow"],
        aws_conn_id=airflow_tasks.AWS_CONN_ID,
        emr_conn_id=None,
        wait_for_completion=False,
    )
    chain(plan, gate, create_cluster, first)
    start_spark(plan) >> first
    terminate = EmrTerminateJobFlowOperator(
        task_id="terminate_cluster",
        job_flow_id=cast(str, create_cluster.output),  # an XComArg (and an edge): the cluster id at run time
        aws_conn_id=airflow_tasks.AWS_CONN_ID,
        trigger_rule=TriggerRule.ALL_DONE,
    )
    chain(last, cluster_created(), terminate)
    last >> stop_spark()

    # A short circuit skips all its direct downstream tasks: the watcher must not be one of them.
    gates = {gate.operator.task_id, "cluster_created"}
    [t for t in dag.tasks if t.task_id not in gates] >> watcher()

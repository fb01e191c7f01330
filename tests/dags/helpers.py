"""Shared by the DAG tests: runs' task states, the reference training, a fault injected into one step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hmm.training import cli, steps
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store

#: The spec fields every DAG test trains with (tiny data: a few seconds per step).
SPEC = {"model": "categorical", "n_components": 3, "id_col": "id", "seed": 1}


def task_states(run: Any) -> dict[str, str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = session.query(TaskInstance).filter(
            TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
        )
        return {ti.task_id: str(ti.state) for ti in instances}


def conf(data_uri: str, store: str, **changes: Any) -> dict[str, Any]:
    return {**SPEC, "data": data_uri, "store": store, "engine": "local", **changes}


def reference(root: str, data_uri: str, **changes: Any) -> dict[str, Any]:
    """The last COMMIT of ``hmm.training.steps.train`` on the same spec, in this process (engine local)."""
    spec = TrainingSpec.from_dict({**SPEC, "data": data_uri, **{k: v for k, v in changes.items() if k != "engine"}})
    steps.train(root, "reference", spec, engine="local", progress=lambda line: None)
    training = Training(open_store(root), "reference")
    return training.record(training.latest())


def records(store: str, training_id: str) -> dict[int, dict[str, Any]]:
    training = Training(open_store(store), training_id)
    return {r["iteration"]: r for r in training.records()}


@contextlib.contextmanager
def fault_in_iteration(monkeypatch: Any, iteration: int, point: str) -> Iterator[list[list[str]]]:
    """SIGKILL the step process of ``iteration`` at ``point`` (HMM_EM_FAULT); yields every argv run."""
    from hmm.orchestration import tasks as airflow_tasks

    real = airflow_tasks.run_command
    started: list[list[str]] = []

    def run(argv: list[str], env: Any) -> None:
        started.append(argv)
        if "--iteration" in argv and argv[argv.index("--iteration") + 1] == str(iteration):
            env = {**env, "HMM_EM_FAULT": point}
        real(argv, env)

    with monkeypatch.context() as patch:
        patch.setattr(airflow_tasks, "run_command", run)
        yield started


@contextlib.contextmanager
def recorded_commands(monkeypatch: Any) -> Iterator[list[list[str]]]:
    """Every step command the DAG runs in local mode."""
    with fault_in_iteration(monkeypatch, -1, "") as started:
        yield started


#: jobs/<file>.py -> the hmm-em subcommand it runs.
SUBCOMMANDS = {"init_training": "init", "em_iteration": "iterate", "finalize": "finalize", "decode": "decode"}


def run_job_here(command: Sequence[str]) -> int:
    """Run a job's command line (``... jobs/<job>.py ARGS``) through ``hmm.training.cli.main`` in this process."""
    script = next(i for i, part in enumerate(command) if part.endswith(".py"))
    return cli.main([SUBCOMMANDS[Path(command[script]).stem], *command[script + 1 :]])


@contextlib.contextmanager
def jobs_in_this_process(monkeypatch: Any) -> Iterator[list[list[str]]]:
    """Local mode with each job's exact command line run here rather than in a new process (~5 s a step)."""
    from hmm.orchestration import tasks as airflow_tasks

    started: list[list[str]] = []

    def run(argv: list[str], env: Any) -> None:
        started.append(argv)
        code = run_job_here(argv)
        if code:
            raise RuntimeError(f"{argv[1]} exited with code {code}")

    with monkeypatch.context() as patch:
        patch.setattr(airflow_tasks, "run_command", run)
        yield started


def aws_connection_to(endpoint: str, region: str, monkeypatch: Any) -> None:
    """Point Airflow's ``aws_default`` connection at ``endpoint`` (a moto server on 127.0.0.1)."""
    from infra.local.emr import aws_connection

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(endpoint, region))

"""Run the ``hmm_training`` DAG on this machine with a real Airflow 3 and no services.

The DAG runs as it does in a deployment, in ``local`` mode: its tasks run in this process under
``dag.test()``, the metadata database is SQLite in a local ``AIRFLOW_HOME``, and each step of
the training is the process a worker would start (``python jobs/<step>.py --remote sc://...`` on
the run's Spark Connect server with the Spark engine).

What ``dag.test()`` leaves to a scheduler, the runner does: a run that uses all its iteration
slots triggers a continuation run, which ``dag.test()`` only queues. The runner then runs the
DAG again with that run's conf (the training id pinned), the run a scheduler would start, until
no run hands over, a run fails, or the number of runs the training can need is used up.

``make demo`` (:mod:`infra.local.demo`), ``make local-stack`` (:mod:`infra.local.stack`) and
``benchmarks/dag.py`` use it. Airflow reads its configuration when first imported, so nothing
here imports Airflow before :meth:`LocalAirflow.start` has set the environment, and one
process can hold one Airflow home only.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from hmm.orchestration import decisions as orchestration
from hmm.training.commits import Training
from hmm.training.steps import format_progress
from hmm.training.store import open_store

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
DAG_ID = "hmm_training"
#: Runs a training may take beyond max_iter / slots (the first run's slots can start past
#: iteration 1 when it resumes); the bound only stops a runner that would loop on a bug.
EXTRA_RUNS = 2
#: Seconds between two looks at the store for new COMMITs while a run goes on.
WATCH_INTERVAL = 0.5


def sqlite_settings(home: Path) -> dict[str, str]:
    """The metadata database of Airflow on one machine: SQLite in ``home``, with a lock timeout.

    With ``?timeout=60`` a writer waits up to a minute for the lock where Python's sqlite3
    gives up after 5 s with ``database is locked``: the scheduler, DAG processor, API server,
    triggerer and every task process write the one file. :func:`enable_wal` is the other half.
    """
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db?timeout=60"}


def enable_wal(database: Path) -> str:
    """Put the SQLite database in WAL journaling, in which readers do not block the writer; returns the mode.

    The mode is stored in the file, so it holds for every later connection. Airflow 3.3.2 also
    sets it on each connection of its synchronous engine; doing it once after ``db migrate``
    makes it hold before any component connects, whichever engine connects first.
    """
    with contextlib.closing(sqlite3.connect(database, timeout=60)) as connection:
        return str(connection.execute("PRAGMA journal_mode=WAL").fetchone()[0])


class DagRunError(RuntimeError):
    """A run of the DAG ended in a state other than success."""


@dataclass
class TrainingRuns:
    """What running a training through the DAG did."""

    training_id: str
    store: str
    #: (run id, state, wall seconds) of each DAG run, continuations included, in order.
    runs: list[tuple[str, str, float]] = field(default_factory=list)
    #: The PUBLISHED marker (model and report URIs), or None if the training is not published.
    published: dict[str, Any] | None = None


class LocalAirflow:
    """An Airflow home on this machine (SQLite) that runs the ``hmm_training`` DAG.

    ``log_file``: Airflow's output while a run lasts (its own log and the task logs, with the
    steps' output in them) goes to this file instead of the terminal; progress lines still
    reach the terminal (:meth:`say`). None: everything on the terminal, as ``airflow dags test``
    prints it.
    """

    def __init__(self, home: Path | str, log_file: Path | str | None = None):
        self.home = Path(home).resolve()
        self.log_file = Path(log_file).resolve() if log_file else None
        #: The terminal while Airflow's output goes to log_file (None: whatever sys.stdout is then).
        self._terminal: TextIO | None = None
        self._dag: Any = None
        self._param_defaults: dict[str, Any] = {}

    # ------------------------------------------------------------ set-up

    def environment(self) -> dict[str, str]:
        """The Airflow settings of this home, and what the steps' Spark needs."""
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            **sqlite_settings(self.home),
            # Steps run Spark's Python workers on this interpreter (the one with hmm installed).
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
            "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        }

    def start(self) -> LocalAirflow:
        """Set the environment, migrate the database (idempotent, a few seconds) and load the DAG."""
        if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(self.home):
            raise RuntimeError(
                f"Airflow is imported in this process with AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')}; "
                f"run {self.home} in a process of its own"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        os.environ.update(self.environment())
        migrated = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, check=False
        )
        if migrated.returncode:
            raise RuntimeError(f"airflow db migrate failed in {self.home}:\n{migrated.stderr[-3000:]}")
        enable_wal(self.home / "airflow.db")
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(AttributeError, io.UnsupportedOperation):  # stdout without a descriptor
                # A stream of its own on the terminal, which the redirection of stdout leaves alone.
                self._terminal = open(os.dup(sys.stdout.fileno()), "w", buffering=1)  # noqa: SIM115
        with self._output():
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(DAGS_FOLDER))
        if bag.import_errors:
            raise RuntimeError(f"the DAGs in {DAGS_FOLDER} do not load: {bag.import_errors}")
        self._dag = bag.dags[DAG_ID]
        self._param_defaults = {key: copy.deepcopy(self._dag.params.get_param(key).value) for key in self._dag.params}
        return self

    @property
    def dag(self) -> Any:
        if self._dag is None:
            raise RuntimeError("call start() first")
        return self._dag

    def say(self, line: str) -> None:
        """A line for the person running this: on the terminal, even while Airflow's output goes to the log."""
        print(line, file=self._terminal or sys.stdout, flush=True)

    # ------------------------------------------------------------ runs

    def run(self, conf: Mapping[str, Any], logical_date: datetime | None, run_after: datetime | None = None) -> Any:
        """One run of the DAG under ``dag.test()``; returns the DagRun."""
        self._restore_param_defaults()
        with self._output():
            return self.dag.test(logical_date=logical_date, run_after=run_after, run_conf=dict(conf))

    def _restore_param_defaults(self) -> None:
        """``dag.test()`` merges a run's conf into the DAG's own Param objects (a worker would parse
        the DAG afresh): put the defaults back, so a run gets the defaults for what its conf omits."""
        for owner in [self.dag, *self.dag.tasks]:
            for key in owner.params:
                if key in self._param_defaults:
                    owner.params.get_param(key).value = copy.deepcopy(self._param_defaults[key])

    def train(self, conf: Mapping[str, Any], logical_date: datetime | None, show_progress: bool = True) -> TrainingRuns:
        """Run the DAG with ``conf``, then each continuation run it hands over to.

        ``show_progress``: a line (:meth:`say`) per DAG run and per COMMIT as it lands.
        Raises :class:`DagRunError` when a run fails; the training keeps every committed
        iteration, so the same call again resumes it.
        """
        settings = orchestration.check_params({**self._param_defaults, **conf})
        # Given to the run, so that the training id derived here is the one its validate task derives.
        run_after = datetime.now(UTC)
        training_id = orchestration.resolve_training_id(settings, logical_date, run_after)
        result = TrainingRuns(training_id=training_id, store=settings.store)
        training = Training(open_store(settings.store), training_id)
        slots = sum(1 for task_id in self.dag.task_ids if task_id.startswith("iteration_"))
        run_conf, date = dict(conf), logical_date
        with watch_commits(training, self.say) if show_progress else contextlib.nullcontext():
            for _ in range(settings.spec.max_iter // slots + EXTRA_RUNS):
                started = time.perf_counter()
                dag_run = self.run(run_conf, date, run_after)
                seconds = time.perf_counter() - started
                result.runs.append((dag_run.run_id, str(dag_run.state), seconds))
                if show_progress:
                    self.say(f"DAG run {dag_run.run_id}: {dag_run.state} ({seconds:.0f} s)")
                if str(dag_run.state) != "success":
                    where = f"; Airflow's log: {self.log_file}" if self.log_file else ""
                    raise DagRunError(f"DAG run {dag_run.run_id} of training {training_id} is {dag_run.state}{where}")
                continuation = self._continuation(dag_run.run_id, training_id, training.latest())
                if continuation is None:
                    break
                if show_progress:
                    self.say("all iteration slots used: running the continuation run it queued")
                # The conf names the training; the date only names the run. Not None: dag.test()
                # clears the task instances of its logical date, and None would mean every date.
                run_conf, date = continuation, datetime.now(UTC)
                run_after = date
        result.published = training.published()
        return result

    def task_instances(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """The task instances of the runs ``run_ids``: run and task id, state, start and end (epoch seconds)."""
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(TaskInstance).filter(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id.in_(run_ids))
            return [
                {
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "state": str(ti.state),
                    "start": ti.start_date.timestamp() if ti.start_date else None,
                    "end": ti.end_date.timestamp() if ti.end_date else None,
                }
                for ti in rows
            ]

    def _continuation(self, run_id: str, training_id: str, latest: int | None) -> dict[str, Any] | None:
        """The conf of the continuation run that run ``run_id`` queued, if it handed the training over."""
        from airflow.models import DagRun, TaskInstance
        from airflow.utils.session import create_session

        if latest is None:
            return None
        with create_session() as session:
            trigger = (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.dag_id == DAG_ID,
                    TaskInstance.run_id == run_id,
                    TaskInstance.task_id == "continue_training",
                )
                .one_or_none()
            )
            if trigger is None or str(trigger.state) != "success":
                return None
            continuation_id = orchestration.continuation_run_id(training_id, latest)
            queued = (
                session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.run_id == continuation_id).one_or_none()
            )
            return None if queued is None or queued.conf is None else dict(queued.conf)

    # ------------------------------------------------------------ output

    @contextlib.contextmanager
    def _output(self) -> Iterator[None]:
        """Point this process's stdout and stderr (file descriptors: Airflow's loggers and the
        steps' output alike) at the log file while the block runs."""
        if self.log_file is None:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(self.log_file, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)


@contextlib.contextmanager
def watch_commits(training: Training, say: Callable[[str], None]) -> Iterator[None]:
    """Say each COMMIT of ``training`` as it lands while the block runs (the store is the truth, not the task logs)."""
    seen = set(training.committed()) if training.has_spec() else set()
    if seen:
        say(f"training {training.id}: iterations 0-{max(seen)} are committed already, not recomputed")
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            _say_new_commits(training, seen, say)
            stop.wait(WATCH_INTERVAL)

    watcher = threading.Thread(target=watch, name="commit-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        _say_new_commits(training, seen, say)


def _say_new_commits(training: Training, seen: set[int], say: Callable[[str], None]) -> None:
    if not training.has_spec():
        return
    for k in training.committed():
        if k in seen:
            continue
        seen.add(k)
        record = {**training.record(k), "status": "committed"}
        if k == 0:
            say(
                f"iteration    0 [committed] initial parameters "
                f"({record['n_sequences']:,} sequences, {record['n_observations']:,} frames)"
            )
        else:
            say(format_progress(record))

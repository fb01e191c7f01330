"""The real Airflow 3 on this machine: scheduler, DAG processor, API server and triggerer, on SQLite.

What ``airflow standalone`` starts, with the settings a single-machine deployment needs and
everything on 127.0.0.1, driven only through the public REST API v2:

    with AirflowServices(home) as airflow:          # migrate, start the four components, wait
        client = airflow.client()                   # a JWT from POST /auth/token
        client.unpause(DAG_ID)
        run_id = client.trigger(DAG_ID, conf, logical_date).json()["dag_run_id"]
        run = client.wait_for_run(DAG_ID, run_id)    # the scheduler runs it; or train(client, ...)
    # every process started is stopped (its process group, then anything left in its session)

The SQLite settings (:func:`~infra.local.dag_runner.sqlite_settings`,
:func:`~infra.local.dag_runner.enable_wal`): the database URL carries ``?timeout=60`` (a
writer waits up to a minute for the lock instead of 5 s) and the database is in WAL journaling
(readers do not block the writer). Four components and their task processes write one SQLite
file; before these were set, a deployer's scheduler died mid-run with ``database is locked``. Even so,
``POST /api/v2/backfills`` may answer 503 when the database is busy:
:meth:`AirflowClient.create_backfill` retries.

Why not ``airflow standalone`` itself: it starts ``airflow`` from PATH, its scheduler and
triggerer serve their logs over HTTP on every interface (it cannot pass ``--skip-serve-logs``),
it mixes the four outputs on its stdout and stops each child with one SIGTERM. Here the API
server is on a free port of 127.0.0.1, the scheduler and triggerer serve no logs (the task
logs are files under ``<home>/logs``, which the API server reads), each component's output
goes to ``<home>/<component>.log``, and :meth:`AirflowServices.stop` kills whole process
trees, task processes and their steps included.

Used by ``make demo-scheduler`` (:mod:`infra.local.demo` ``--scheduler``) and by
``tests/dags/test_real_scheduler.py``. Linux only (process sessions are read from /proc).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hmm.orchestration import decisions as orchestration
from hmm.training.commits import Training
from hmm.training.store import open_store
from infra.local.dag_runner import (
    DAG_ID,
    DAGS_FOLDER,
    EXTRA_RUNS,
    DagRunError,
    TrainingRuns,
    enable_wal,
    sqlite_settings,
    watch_commits,
)
from infra.local.s3 import free_port

COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")
#: What the health endpoint reports for each component started besides the API server.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
#: A DAG run's states once it is over.
FINISHED = frozenset({"success", "failed"})
#: Seconds between two looks at a run, a backfill or the health endpoint.
POLL_SECONDS = 1.0
#: How long a stopped component gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 5.0


class AirflowServiceError(RuntimeError):
    """A component did not start, died, or the API did not answer as expected."""


@dataclass
class AirflowServices:
    """An Airflow home on this machine and its four components (LocalExecutor, SQLite, 127.0.0.1).

    ``dags_folder``: the DAGs the DAG processor parses (the project's ``dags/``).
    The components, their task processes and the steps inherit this process's environment
    (e.g. AWS endpoint and credentials) under the settings of :meth:`settings`.
    ``scheduled_runs``: False (default) turns off runs from the DAGs' schedules
    (``[scheduler] use_job_schedule``), so unpausing a weekly DAG does not start this week's run
    with the default params; triggered runs, continuations and backfills run all the same.
    """

    home: Path
    dags_folder: Path = DAGS_FOLDER
    scheduled_runs: bool = False
    #: Task processes at once (LocalExecutor workers): each imports Airflow and the DAG file.
    parallelism: int = 4
    port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def settings(self) -> dict[str, str]:
        """The environment of every component: Airflow's settings (as AIRFLOW__ variables) and Spark's."""
        jwt_secret = self.home / "jwt_secret"
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(self.dags_folder).resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **sqlite_settings(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            # Task processes parse the DAG file; on a loaded small machine that took 15-25 s.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
            # One parse at start-up; re-parsing the unchanged file every 30 s only costs CPU.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.scheduled_runs),
            # The API server on loopback; tasks reach its execution API there.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            # Token auth as `airflow standalone` configures it: SimpleAuthManager, one admin user.
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            # One secret for every component that signs or checks a JWT (API server, scheduler).
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret.read_text().strip() if jwt_secret.exists() else "",
            # Steps run Spark's Python workers on this interpreter (the one with hmm installed).
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
            "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        }

    # ------------------------------------------------------------ start and stop

    def __enter__(self) -> AirflowServices:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 300.0) -> AirflowServices:
        """Migrate the database, start the components and wait until they are healthy and the DAGs are parsed."""
        self.home.mkdir(parents=True, exist_ok=True)
        secret = self.home / "jwt_secret"
        if not secret.exists():
            secret.write_text(secrets.token_urlsafe(64))
            secret.chmod(0o600)
        if not self.password_file.exists():
            self.password_file.write_text(json.dumps({USER: secrets.token_urlsafe(16)}))
            self.password_file.chmod(0o600)
        env = self.settings()
        migrated = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=600,
        )
        if migrated.returncode:
            raise AirflowServiceError(f"airflow db migrate failed in {self.home}:\n{migrated.stderr[-3000:]}")
        enable_wal(self.home / "airflow.db")
        commands = {
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "api-server": ["api-server"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        for name in COMPONENTS:
            with open(self.log_path(name), "ab") as log:
                # A session of its own: stop() finds every process a component started, task
                # processes included (they move to process groups of their own).
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *commands[name]],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.home,
                    start_new_session=True,
                )
        self.wait_until_healthy(timeout)
        return self

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def check_alive(self) -> None:
        """AirflowServiceError naming the component that exited, with the end of its log."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = self.log_path(name).read_text(errors="replace")[-4000:]
                raise AirflowServiceError(f"airflow {name} exited with code {process.returncode}:\n{tail}")

    def wait_until_healthy(self, timeout: float) -> None:
        """Until the API server answers and reports the scheduler, DAG processor and triggerer healthy."""
        import httpx

        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                last = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=10).json()
                if all(last.get(key, {}).get("status") == "healthy" for key in HEALTH_KEYS.values()):
                    return
            except (httpx.HTTPError, ValueError) as error:
                last = error
            time.sleep(POLL_SECONDS)
        raise AirflowServiceError(f"Airflow at {self.url} not healthy after {timeout:.0f} s: {last}")

    def stop(self) -> None:
        """SIGTERM each component's process group, then SIGKILL whatever is left in their sessions."""
        sessions = {process.pid for process in self.processes.values()}
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Task processes and the steps they started live in process groups of their own, in
        # the component's session: kill them all, by pid.
        for _ in range(3):
            left = session_members(sessions)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()

    # ------------------------------------------------------------ the API

    def client(self) -> AirflowClient:
        """A REST API v2 client with a JWT from ``POST /auth/token`` (the admin user's generated password)."""
        password = json.loads(self.password_file.read_text())[USER]
        return AirflowClient(self.url, USER, password, check_alive=self.check_alive)


def session_members(sessions: set[int]) -> list[int]:
    """Pids of the live processes whose session id is in ``sessions`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            # Fields after the command name (which may hold spaces): state ppid pgrp session ...
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[3]) in sessions:
                members.append(int(entry.name))
    return members


class AirflowClient:
    """The public REST API v2 of one API server, with a bearer token.

    ``check_alive``: called while waiting, so that a component that died fails the wait at
    once with its log instead of at the timeout.
    """

    def __init__(self, url: str, username: str, password: str, check_alive: Any = None):
        import httpx

        self.url = url
        self._check_alive = check_alive or (lambda: None)
        token = httpx.post(f"{url}/auth/token", json={"username": username, "password": password}, timeout=30)
        if token.status_code >= 300:
            raise AirflowServiceError(f"POST /auth/token: {token.status_code} {token.text}")
        self.http = httpx.Client(
            base_url=f"{url}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=60,
        )

    def request(self, method: str, path: str, *, retry_503: int = 0, **kwargs: Any) -> Any:
        """The response of ``method path``; ``retry_503``: how often to retry a 503 (SQLite busy)."""
        for attempt in range(retry_503 + 1):
            response = self.http.request(method, path, **kwargs)
            if response.status_code != 503 or attempt == retry_503:
                return response
            time.sleep(2.0)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer; AirflowServiceError with the body otherwise."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise AirflowServiceError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """The DAG once the DAG processor has parsed it; fails at once on an import error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            errors = self.json("GET", "/importErrors")["import_errors"]
            if errors:
                raise AirflowServiceError(f"the DAG files do not import: {errors}")
            response = self.request("GET", f"/dags/{dag_id}")
            if response.status_code == 200:
                details = self.request("GET", f"/dags/{dag_id}/details")
                if details.status_code == 200:
                    return dict(response.json())
            time.sleep(POLL_SECONDS)
        raise AirflowServiceError(f"DAG {dag_id} not parsed after {timeout:.0f} s")

    def unpause(self, dag_id: str) -> None:
        self.json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any],
        logical_date: datetime | None = None,
        run_id: str | None = None,
        run_after: datetime | None = None,
    ) -> Any:
        """``POST /dags/{dag_id}/dagRuns``: the raw response (a hostile conf may be refused)."""
        body: dict[str, Any] = {"conf": dict(conf), "logical_date": logical_date.isoformat() if logical_date else None}
        if run_id:
            body["dag_run_id"] = run_id
        if run_after:
            body["run_after"] = run_after.isoformat()
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise AirflowServiceError(f"GET run {run_id}: {response.status_code} {response.text}")
        return dict(response.json())

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900.0) -> dict[str, Any]:
        """The run once it is over (success or failed)."""
        deadline = time.monotonic() + timeout
        run = None
        while time.monotonic() < deadline:
            self._check_alive()
            run = self.run(dag_id, run_id)
            if run is not None and run["state"] in FINISHED:
                return run
            time.sleep(POLL_SECONDS)
        raise AirflowServiceError(f"run {run_id} of {dag_id} not finished after {timeout:.0f} s: {run}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """A run's task instances as the API gives them (``task_id``, ``state``, ``start_date``, ``end_date``...)."""
        body = self.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return list(body["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task's log as text, one JSON line per structured log event (for checks and failure messages)."""
        body = self.json(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
        )
        return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in body["content"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        body = self.json("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "id"})
        return list(body["dag_runs"])

    def create_backfill(
        self, dag_id: str, from_date: datetime, to_date: datetime, conf: Mapping[str, Any], reprocess: str = "none"
    ) -> dict[str, Any]:
        """``POST /backfills``, retried while SQLite is busy (503)."""
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "dag_run_conf": dict(conf),
            "reprocess_behavior": reprocess,
            "max_active_runs": 2,
        }
        return dict(self.json("POST", "/backfills", json=body, retry_503=10))

    def wait_for_backfill(self, backfill_id: int, timeout: float = 900.0) -> dict[str, Any]:
        """The backfill once the scheduler has marked it completed (all its runs over)."""
        deadline = time.monotonic() + timeout
        backfill: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            backfill = self.json("GET", f"/backfills/{backfill_id}")
            if backfill.get("completed_at"):
                return backfill
            time.sleep(POLL_SECONDS)
        raise AirflowServiceError(f"backfill {backfill_id} not completed after {timeout:.0f} s: {backfill}")

    def asset_events(self, name: str) -> list[dict[str, Any]]:
        assets = self.json("GET", "/assets", params={"name_pattern": name})["assets"]
        ids = [a["id"] for a in assets if a["name"] == name]
        if not ids:
            return []
        return list(self.json("GET", "/assets/events", params={"asset_id": ids[0], "limit": 100})["asset_events"])


def train(
    client: AirflowClient,
    conf: Mapping[str, Any],
    logical_date: datetime | None,
    say: Callable[[str], None] | None = None,
    dag_id: str = DAG_ID,
    timeout: float = 3600.0,
) -> TrainingRuns:
    """Trigger a run of the training DAG with ``conf`` and follow it and the continuation runs it hands over to.

    The scheduler starts the continuations by itself; this only waits for them (their run ids
    are known: :func:`hmm.orchestration.decisions.continuation_run_id`). Returns what
    :meth:`infra.local.dag_runner.LocalAirflow.train` returns for ``dag.test()``; raises
    :class:`DagRunError` when a run fails (the same call again resumes the training).
    ``say``: a line per DAG run and per COMMIT as it lands.
    """
    details = client.json("GET", f"/dags/{dag_id}/details")
    defaults = {name: param["value"] for name, param in details["params"].items()}
    settings = orchestration.check_params({**defaults, **conf})
    # Given to the run, so that the training id derived here is the one its validate task derives.
    run_after = datetime.now(UTC)
    training_id = orchestration.resolve_training_id(settings, logical_date, run_after)
    result = TrainingRuns(training_id=training_id, store=settings.store)
    training = Training(open_store(settings.store), training_id)
    tasks = client.json("GET", f"/dags/{dag_id}/tasks")["tasks"]
    slots = sum(1 for task in tasks if task["task_id"].startswith("iteration_"))
    triggered = client.trigger(dag_id, conf, logical_date, run_after=run_after)
    if triggered.status_code >= 300:
        raise AirflowServiceError(f"triggering {dag_id}: {triggered.status_code} {triggered.text}")
    run_id = str(triggered.json()["dag_run_id"])
    with watch_commits(training, say) if say else contextlib.nullcontext():
        for _ in range(settings.spec.max_iter // slots + EXTRA_RUNS):
            started = time.perf_counter()
            run = client.wait_for_run(dag_id, run_id, timeout=timeout)
            seconds = time.perf_counter() - started
            result.runs.append((run_id, run["state"], seconds))
            if say:
                say(f"DAG run {run_id}: {run['state']} ({seconds:.0f} s)")
            if run["state"] != "success":
                raise DagRunError(f"DAG run {run_id} of training {training_id} is {run['state']}")
            latest = training.latest()
            if latest is None or client.task_states(dag_id, run_id).get("continue_training") != "success":
                break
            run_id = orchestration.continuation_run_id(training_id, latest)
            if say:
                say(f"all iteration slots used: the scheduler runs the continuation {run_id}")
    result.published = training.published()
    return result


def utc(text: str) -> datetime:
    """A datetime of the API (ISO 8601, ``Z`` or an offset) in UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)

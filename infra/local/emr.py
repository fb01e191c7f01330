"""EMR played on this machine, for moto's EMR API on 127.0.0.1 (:mod:`infra.local.s3`'s server, in this process).

moto accepts clusters and steps but never runs a step: they stay PENDING or RUNNING. :class:`LocalEmr`
plays the cluster's part. A thread looks at moto's clusters (its backend objects, in this process);
the first unfinished step of a cluster becomes RUNNING, its job runs here as a process
(``python jobs/<job>.py <the step's arguments> --engine local``) against the same moto S3, and the
step becomes COMPLETED, or FAILED with the job's last line as EMR's reason. Steps of a cluster run one
at a time in the order they were added, as on EMR with StepConcurrencyLevel 1.

Every step's instants (added, started, ended) and every ``DescribeStep`` call that reached moto are
recorded: ``benchmarks/emr_airflow.py`` measures Airflow's time around the steps from them, and
``tests/dags/test_real_emr_wait.py`` holds a step RUNNING (``hold``) while it looks at Airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO / "jobs"
#: moto's default account, and the region the tests and benchmarks use.
ACCOUNT = "123456789012"
REGION = "us-east-1"
#: Step states after which a step changes no more.
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"})


def aws_connection(endpoint: str, region: str = REGION) -> str:
    """Airflow's ``aws_default`` connection (``AIRFLOW_CONN_AWS_DEFAULT``, JSON) to ``endpoint``, test credentials."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": region},
        }
    )


def emr_backend(region: str = REGION, account: str = ACCOUNT) -> Any:
    """moto's EMR of ``region`` (the objects behind the server's API, in this process)."""
    from moto.emr.models import emr_backends

    return emr_backends[account][region]


def local_job(step_args: Sequence[str]) -> list[str]:
    """A step's job from its script on (``.../jobs/<job>.py ARGS``), with the local engine (finalize has no Spark)."""
    script = next(i for i, part in enumerate(step_args) if part.endswith(".py"))
    job = list(step_args[script:])
    return job if job[0].endswith("/finalize.py") else [*job, "--engine", "local"]


def timestamp(moment: datetime) -> float:
    """Seconds since the epoch of one of moto's datetimes (naive ones are UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class PlayedStep:
    """One step LocalEmr ran: its instants (seconds since the epoch) and outcome."""

    cluster_id: str
    step_id: str
    name: str
    added: float
    started: float = 0.0
    ended: float = 0.0
    state: str = "RUNNING"
    #: When a DescribeStep of this step reached moto.
    looks: list[float] = field(default_factory=list)


class LocalEmr:
    """Runs the steps added to moto's clusters, in a thread, while the ``with`` block lasts.

    Only clusters created inside the block are played: moto's backend lives as long as its
    server, and clusters of an earlier test or run (left unterminated) are not this one's.

    Parameters
    ----------
    region : str
        The region whose clusters it plays.
    jobs_dir : Path
        Where the jobs' scripts are (the step names ``<bundle>/jobs/<job>.py``; the same file here).
    env : mapping, optional
        The jobs' environment (default: this process's, with the repository on PYTHONPATH).
    hold : callable, optional
        ``hold(step)`` True: keep that step RUNNING (asked again every ``poll_seconds``).
    log : Path, optional
        The jobs' output (default: discarded).
    poll_seconds : float
        Seconds between two looks at moto's clusters.
    """

    def __init__(
        self,
        region: str = REGION,
        jobs_dir: Path = JOBS_DIR,
        env: Mapping[str, str] | None = None,
        hold: Callable[[PlayedStep], bool] | None = None,
        log: Path | None = None,
        poll_seconds: float = 0.05,
    ):
        self.region = region
        self.jobs_dir = Path(jobs_dir)
        self.env = dict(env) if env is not None else None
        self.hold = hold
        self.log = log
        self.poll_seconds = poll_seconds
        self.steps: dict[str, PlayedStep] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Clusters that existed before the ``with`` block (another test's or run's): never played.
        self._foreign: set[str] = set()

    def __enter__(self) -> LocalEmr:
        backend = emr_backend(self.region)
        self._foreign = set(backend.clusters)
        real_describe = backend.describe_step

        def describe_step(cluster_id: str, step_id: str) -> Any:
            with self._lock:
                if step_id in self.steps:
                    self.steps[step_id].looks.append(time.time())
            return real_describe(cluster_id, step_id)

        backend.describe_step = describe_step  # an attribute of this backend object only
        self._thread = threading.Thread(target=self._play, name="local-emr", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=600)
        backend = emr_backend(self.region)
        backend.__dict__.pop("describe_step", None)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ) if self.env is None else dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        return env

    def played(self) -> list[PlayedStep]:
        """The steps run so far, in the order they were added."""
        with self._lock:
            return sorted(self.steps.values(), key=lambda s: s.added)

    def _play(self) -> None:
        while not self._stop.is_set():
            for cluster_id, cluster in list(emr_backend(self.region).clusters.items()):
                if cluster_id in self._foreign:
                    continue
                step = next((s for s in cluster.steps if s.state not in FINISHED), None)
                if step is not None and cluster.state not in ("TERMINATING", "TERMINATED"):
                    self._run(cluster_id, step)
            self._stop.wait(self.poll_seconds)

    def _run(self, cluster_id: str, step: Any) -> None:
        with self._lock:
            played = self.steps.get(step.id)
            if played is None:
                played = self.steps[step.id] = PlayedStep(
                    cluster_id, step.id, step.name, timestamp(step.creation_date_time)
                )
        step.state = "RUNNING"
        if self.hold is not None and self.hold(played):
            return  # asked again at the next look
        played.started = time.time()
        step.start_date_time = datetime.now(UTC).replace(tzinfo=None)
        job = local_job(step.args)
        argv = [sys.executable, str(self.jobs_dir / Path(job[0]).name), *job[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.environment(), check=False)
        if self.log is not None:
            with open(self.log, "a") as out:
                out.write(f"--- {step.name} ({step.id}): exit {done.returncode}\n{done.stdout}{done.stderr}")
        lines = (done.stderr or done.stdout).strip().splitlines()
        played.ended = time.time()
        step.end_date_time = datetime.now(UTC).replace(tzinfo=None)
        if done.returncode:
            step.last_state_change_reason = f"the job exited with code {done.returncode}: {lines[-1] if lines else ''}"
            step.state = played.state = "FAILED"
        else:
            step.state = played.state = "COMPLETED"

"""One Spark per DAG run in local mode: a Spark Connect server on 127.0.0.1 that the run's steps share.

A local step used to pay for a JVM of its own (spark-submit, the Spark session, its stop) and
for Python workers that start and import hmm and numba on the first E-step of every step:
about 8 s of a 15 s iteration on 500k sequences (benchmarks/README.md). With a server started
once per run (the ``start_spark`` task) each step is a plain python process holding a Spark
Connect session (``--remote sc://127.0.0.1:<port>``), and the server's Python workers, reused
from step to step, keep their imports and compiled kernels.

The server outlives the task that starts it (Airflow's LocalExecutor ends a task's process group
with the task), so it runs in a session of its own under a small supervisor, ``python -m
hmm.orchestration.connect serve``, which

* starts the server's JVM (``spark-submit --class ...SparkConnectServer``), which dies with the
  supervisor (``PR_SET_PDEATHSIG``), and reports the port the server listens on;
* stops it on SIGTERM (the ``stop_spark`` teardown), or by itself once no client has been
  connected for ``idle_seconds`` (a run whose teardown never ran: a killed scheduler, a crashed
  worker), so no server is left running forever;
* moves the JVM's class data sharing archive into place once the JVM has exited, as a step does.

The steps' Python workers are the server's: they get its environment (``PYSPARK_PYTHON``,
``PYTHONPATH``, the thread limits, ``NUMBA_CACHE_DIR``), which is the starting task's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The class spark-submit runs as a Spark Connect server (``sbin/start-connect-server.sh``).
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
#: How long a server may have no client connected before it stops itself. A DAG run's steps
#: follow each other within seconds; a run paused longer loses its server, and its next step
#: falls back to spark-submit (:func:`hmm.orchestration.tasks.run_local_step`).
IDLE_SECONDS = 900.0
#: How long starting a server may take (a JVM and a Spark session: 5-10 s here, more under load).
START_TIMEOUT = 180.0
#: How long a stopped server's JVM may take to exit before it is killed.
STOP_TIMEOUT = 60.0
#: Seconds between two looks at the server's connections.
POLL_SECONDS = 2.0
#: How many ports after the asked one (15002 by default) a server tries before it fails.
PORT_RETRIES = 100
#: The line of the server's log that says where it listens (it may take a later port if the asked one is taken).
_STARTED = re.compile(r"Spark Connect server started at: (\S+):(\d+)")


def server_command(
    spark_submit: str, master: str, conf: Mapping[str, str], java_options: Sequence[str], port: int = 0
) -> list[str]:
    """argv of a Spark Connect server on 127.0.0.1 with a local master, ``conf`` and the driver's JVM options.

    ``port`` 0: the server's default (15002), or the first free one of the :data:`PORT_RETRIES` after it.
    """
    settings = {
        **conf,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        **({"spark.connect.grpc.binding.port": str(port)} if port else {}),
        # Several runs (or other servers) on one machine: the next free port rather than a failed start.
        "spark.connect.grpc.port.maxRetries": str(PORT_RETRIES),
    }
    argv = [spark_submit, "--class", SERVER_CLASS, "--master", master, "--name", "hmm-em local Spark"]
    argv += [part for key, value in settings.items() for part in ("--conf", f"{key}={value}")]
    if java_options:
        argv += ["--driver-java-options", " ".join(java_options)]
    return [*argv, "spark-internal"]


def start(
    argv: Sequence[str],
    env: Mapping[str, str],
    state_dir: Path,
    *,
    idle_seconds: float = IDLE_SECONDS,
    archive: tuple[Path, Path] | None = None,
    timeout: float = START_TIMEOUT,
) -> dict[str, Any]:
    """Start a supervised server (``argv``: :func:`server_command`) in a session of its own; wait until it listens.

    Parameters
    ----------
    argv : sequence of str
        The server's command.
    env : mapping
        Its environment, and that of its Python workers.
    state_dir : Path
        A directory for its log (``server.log``) and state (``state.json``).
    idle_seconds : float, default=IDLE_SECONDS
        Stop once no client has been connected for this long.
    archive : (Path, Path), optional
        The class data sharing archive the JVM writes at exit, and where to move it then.
    timeout : float, default=START_TIMEOUT
        Seconds to wait for the server.

    Returns
    -------
    dict
        ``url`` (``sc://127.0.0.1:<port>``), ``port``, ``pid`` (the supervisor's), ``log``.

    Raises
    ------
    RuntimeError
        The server exited or did not listen within ``timeout``; the error holds the log's end.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state = state_dir / "state.json"
    log = state_dir / "server.log"
    command = [sys.executable, "-m", "hmm.orchestration.connect", "serve", "--state", str(state)]
    command += ["--idle-seconds", str(idle_seconds)]
    if archive is not None:
        command += ["--archive", str(archive[0]), str(archive[1])]
    with open(log, "ab") as output:
        # A session of its own: not in the task's process group, which Airflow ends with the task.
        supervisor = subprocess.Popen(
            [*command, "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.exists():
            found = json.loads(state.read_text())
            return {**found, "pid": supervisor.pid, "log": str(log)}
        if supervisor.poll() is not None:
            raise RuntimeError(f"the Spark Connect server exited with code {supervisor.returncode}: {_tail(log)}")
        time.sleep(0.2)
    stop(supervisor.pid)
    raise RuntimeError(f"the Spark Connect server did not start within {timeout:.0f} s: {_tail(log)}")


def alive(server: Mapping[str, Any]) -> bool:
    """``server`` (:func:`start`'s result) is still running: its supervisor lives and its port takes connections."""
    import socket

    if not supervisor_running(int(server["pid"])):
        return False
    with socket.socket() as probe:
        probe.settimeout(2.0)
        return probe.connect_ex(("127.0.0.1", int(server["port"]))) == 0


def stop(pid: int, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the supervisor ``pid`` and its server; False if it was not running (or ``pid`` is another program).

    Waits for it to exit (it stops the JVM first), and kills it after ``timeout``.
    """
    if not supervisor_running(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not supervisor_running(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # its JVM gets SIGKILL too (PR_SET_PDEATHSIG)
    return True


def supervisor_running(pid: int) -> bool:
    """``pid`` is a running supervisor of this module (a pid may be reused by another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return b"hmm.orchestration.connect" in cmdline and b"serve" in cmdline and status[0] != "Z"


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def connections(port: int) -> int:
    """Established TCP connections to 127.0.0.1:``port`` on this machine (Linux ``/proc/net/tcp``)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:  # 01: ESTABLISHED
                count += 1
    return count


# ------------------------------------------------------------------ the supervisor


def _die_with_parent() -> None:
    """In the JVM's process before exec: SIGKILL when the supervisor dies, however it dies."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(argv: Sequence[str], state: Path, idle_seconds: float, archive: tuple[Path, Path] | None) -> int:
    """Run the server ``argv`` until SIGTERM, its own exit, or ``idle_seconds`` without a client.

    Writes ``state`` (``url``, ``port``) once the server listens; the JVM's output goes to this
    process's (the log). Returns the exit code.
    """
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    jvm = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    port: list[int] = []

    def relay() -> None:
        assert jvm.stdout is not None
        for raw in jvm.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            found = _STARTED.search(raw.decode(errors="replace"))
            if found and not port:
                port.append(int(found.group(2)))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    last_client = time.monotonic()
    announced = False
    reason = "stopped"
    while jvm.poll() is None and not stopping.is_set():
        if port and not announced:
            partial = state.with_suffix(".partial")
            partial.write_text(json.dumps({"url": f"sc://127.0.0.1:{port[0]}", "port": port[0]}))
            os.replace(partial, state)
            announced = True
            last_client = time.monotonic()
        if announced:
            if connections(port[0]):
                last_client = time.monotonic()
            elif time.monotonic() - last_client > idle_seconds:
                reason = f"no client for {idle_seconds:.0f} s"
                break
        stopping.wait(POLL_SECONDS if announced else 0.1)
    if jvm.poll() is None:
        print(f"hmm-em: stopping the Spark Connect server ({reason})", flush=True)
        jvm.terminate()
        try:
            jvm.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            jvm.kill()
            jvm.wait()
    reader.join(5.0)
    if archive is not None and archive[0].exists():
        os.replace(archive[0], archive[1])  # atomic: a JVM starting now maps no archive or a whole one
    print(f"hmm-em: the Spark Connect server exited with code {jvm.returncode}", flush=True)
    return 0 if stopping.is_set() or reason != "stopped" else (jvm.returncode or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hmm.orchestration.connect serve --state FILE [--idle-seconds S] [--archive TMP FINAL] -- ARGV``."""
    parser = argparse.ArgumentParser(prog="python -m hmm.orchestration.connect")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run a Spark Connect server under supervision")
    run.add_argument("--state", type=Path, required=True)
    run.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS)
    run.add_argument("--archive", nargs=2, type=Path)
    run.add_argument("server", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    server = args.server[1:] if args.server[:1] == ["--"] else args.server
    return serve(server, args.state, args.idle_seconds, tuple(args.archive) if args.archive else None)


if __name__ == "__main__":
    sys.exit(main())

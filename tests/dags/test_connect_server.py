"""The run's Spark Connect server (hmm.orchestration.connect): it outlives the task that started it, and
stops itself once no client has been connected for its idle time, so a run whose teardown never ran
leaves no server behind. One real server (~10 s to start here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hmm.orchestration import connect

# hmm.orchestration.tasks imports Airflow, which reads its configuration once, when first imported:
# these tests import it inside, after the airflow_home fixture has configured it (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("airflow_home")

JOBS = str(Path(__file__).resolve().parents[2] / "jobs")
#: Starts a server as start_spark does, prints it, and waits to be killed with its process group.
STARTER = """
import json, sys
from pathlib import Path
from hmm.orchestration import connect
from hmm.orchestration.tasks import local_environment, spark_submit_path
argv = connect.server_command(spark_submit_path(), "local[1]", {"spark.ui.enabled": "false"}, [])
server = connect.start(argv, local_environment(sys.argv[1]), Path(sys.argv[2]), idle_seconds=float(sys.argv[3]))
print(json.dumps(server), flush=True)
sys.stdin.read()
"""


def worker_environment(batches):
    """What a Python worker of the server runs with: its interpreter, thread limits and the hmm it imports."""
    import pyarrow as pa

    import hmm

    for _ in batches:
        names = ["executable", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "hmm"]
        values = [sys.executable, os.environ.get("OMP_NUM_THREADS"), os.environ.get("NUMBA_NUM_THREADS"), hmm.__file__]
        yield pa.RecordBatch.from_pydict({"name": names, "value": values})


def wait_until(condition, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_the_server_outlives_its_starters_process_group_and_stops_itself_when_idle(tmp_path):
    from hmm.orchestration.tasks import local_environment

    # Airflow's LocalExecutor ends a task by signalling its process group: so does this test.
    env = {**local_environment(JOBS), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, JOBS, str(tmp_path / "server"), "8"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    server = None
    try:
        line = starter.stdout.readline()
        assert line, "the starter exited without a server"
        server = json.loads(line)
        os.killpg(starter.pid, signal.SIGKILL)
        starter.wait()
        assert connect.alive(server)
        assert server["url"] == f"sc://127.0.0.1:{server['port']}"
        # A connected client keeps it up, however long it is idle (a step between two Spark jobs).
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        session = ConnectSession.builder.remote(server["url"]).getOrCreate()
        try:
            # The server's Python workers run with the starting task's environment.
            rows = session.range(1).mapInArrow(worker_environment, "name string, value string").collect()
            seen = {row.name: row.value for row in rows}
            assert seen["executable"] == sys.executable
            assert seen["OMP_NUM_THREADS"] == "1" and seen["NUMBA_NUM_THREADS"] == "1"
            assert seen["hmm"] == str(Path(JOBS).parent / "hmm" / "__init__.py")
            assert session.range(3).count() == 3
            assert connect.connections(server["port"]) >= 1
            time.sleep(12)  # longer than the idle time
            assert connect.alive(server) and session.range(2).count() == 2
        finally:
            session.stop()
        # No client for 8 s: the server stops itself, JVM and supervisor.
        assert wait_until(lambda: not connect.supervisor_running(server["pid"]))
        assert not connect.alive(server) and not connect.connections(server["port"])
        assert "stopping the Spark Connect server (no client for 8 s)" in Path(server["log"]).read_text()
        assert connect.stop(server["pid"]) is False  # nothing left to stop
    finally:
        if starter.poll() is None:
            os.killpg(starter.pid, signal.SIGKILL)
        if server is not None:
            connect.stop(server["pid"])


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path):
    from hmm.orchestration.tasks import local_environment, spark_submit_path

    argv = connect.server_command(spark_submit_path(), "no-such-master", {}, [])
    server = None
    try:
        server = connect.start(argv, local_environment(JOBS), tmp_path, timeout=120)
    except RuntimeError as error:
        assert "exited with code 1" in str(error) and "Master must either be" in str(error)
    finally:
        if server is not None:
            connect.stop(server["pid"])
    assert server is None, "a server with an unknown master started"

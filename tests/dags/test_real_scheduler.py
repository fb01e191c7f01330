"""The DAG under the real Airflow 3 components, driven only through the public REST API v2.

Slow (a few minutes): :mod:`infra.local.airflow_services` starts what ``airflow standalone``
starts (scheduler with the LocalExecutor, DAG processor, API server, triggerer) on SQLite in a
temporary AIRFLOW_HOME, the API server on a free port of 127.0.0.1, with the project's dags/.
Every task is a real task process of the LocalExecutor that parses the DAG file, every step
a real job process (``engine=local``: python + pyarrow, tiny data). The test reads the store
directly (the truth of a training) and talks to Airflow only over HTTP with a JWT from
``POST /auth/token``. Every process started is stopped by the fixture's teardown.

The runs of all scenarios are triggered at once (the module fixture ``launched``) so they
share the machine; each test then waits for its own. Each scenario checks its ``hmm-em-model``
asset events through the API.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hmm.orchestration import decisions as orchestration
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import TrainingSpec
from hmm.training.store import open_store
from infra.local.airflow_services import AirflowServices, utc
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import SPEC, conf, records, reference

pytestmark = pytest.mark.slow

DAG_ID = "hmm_training"
ASSET = "hmm-em-model"
SLOTS = 6  # dags/hmm_training.py's ITERATION_SLOTS; the test checks the DAG has that many
#: Scenario 1: one iteration more than a run's slots, so the training needs a continuation run.
LONG_MAX_ITER = SLOTS + 1
LONG_DATE = datetime(2026, 1, 5, tzinfo=UTC)
#: Scenario 3: a training with iterations 0 and 1 committed, resumed by its id up to RESUME_MAX_ITER.
RESUME_ID = "partial-training"
RESUME_MAX_ITER = 3
#: Scenario 4: two weekly dates of the DAG's schedule (@weekly: Sundays 00:00 UTC).
BACKFILL_FROM = datetime(2026, 1, 4, tzinfo=UTC)
BACKFILL_TO = datetime(2026, 1, 11, tzinfo=UTC)
BACKFILL_MAX_ITER = 1


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def commits(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("COMMIT"))


def model_events(client: Any, training_id: str) -> list[dict[str, Any]]:
    """The ``hmm-em-model`` asset events (REST API) of one training."""
    events = client.asset_events(ASSET)
    assert all(e["source_dag_id"] == DAG_ID and e["source_task_id"] == "finalize" for e in events), events
    return [e for e in events if (e["extra"] or {}).get("training_id") == training_id]


def published_event(store: Path, training_id: str) -> dict[str, Any]:
    """What finalize records in the asset event: the training id and the PUBLISHED marker."""
    marker = Training(open_store(store.as_uri()), training_id).published()
    assert marker is not None, f"{training_id} is not published"
    return {"training_id": training_id, **marker}


def describe(client: Any, run_id: str) -> str:
    """Task states and the logs of failed tasks of a run, for an assertion's message."""
    states = client.task_states(DAG_ID, run_id)
    logs = [
        f"--- {task} ---\n{client.task_log(DAG_ID, run_id, task)[-3000:]}"
        for task, state in states.items()
        if state == "failed"
    ]
    return f"run {run_id}: {states}\n" + "\n".join(logs)


def finished(client: Any, run_id: str) -> dict[str, Any]:
    return client.wait_for_run(DAG_ID, run_id, timeout=1200)


def assert_success(client: Any, run: dict[str, Any]) -> None:
    assert run["state"] == "success", describe(client, run["dag_run_id"])


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """The four components on a fresh home; the DAG parsed and unpaused; a client with a token."""
    home = tmp_path_factory.mktemp("real_airflow")
    with AirflowServices(home) as services:
        client = services.client()
        client.wait_for_dag(DAG_ID)
        client.unpause(DAG_ID)
        yield services, client


@pytest.fixture(scope="module")
def launched(airflow, tmp_path_factory):
    """Every scenario's runs, triggered at once; what each test needs to check them."""
    _, client = airflow
    root = tmp_path_factory.mktemp("scenarios")
    data_uri = write_categorical_parquet(str(root / "data"), n_sequences=60)[0]
    out: dict[str, Any] = {"root": root, "data": data_uri}

    # 1. A training that needs more than one run.
    long_store = root / "long"
    long_conf = conf(data_uri, long_store.as_uri(), tol=0.0, max_iter=LONG_MAX_ITER)
    out["long"] = {
        "store": long_store,
        "conf": long_conf,
        "training_id": orchestration.derive_training_id(
            TrainingSpec.from_dict({**SPEC, "data": data_uri, "tol": 0.0, "max_iter": LONG_MAX_ITER}), LONG_DATE
        ),
        "response": client.trigger(DAG_ID, long_conf, LONG_DATE),
    }

    # 2. Hostile confs: one the API refuses (schema), one that passes the schema and fails in validate.
    refused_store = root / "refused"
    refused = conf(data_uri, refused_store.as_uri(), training_id="../../etc/passwd")
    escaping_store = f"{(root / 'hostile').as_uri()}/../escaped"
    out["hostile"] = {
        "refused": client.trigger(DAG_ID, refused, datetime(2026, 2, 2, tzinfo=UTC)),
        "refused_store": refused_store,
        "escaping": client.trigger(DAG_ID, conf(data_uri, escaping_store), datetime(2026, 2, 3, tzinfo=UTC)),
        "paths": [root / "hostile", root / "escaped"],
    }

    # 3. A partial training (iterations 0 and 1 committed here), resumed through the API by its id.
    resume_store = root / "resume"
    spec = TrainingSpec.from_dict({**SPEC, "data": data_uri, "tol": 0.0, "max_iter": RESUME_MAX_ITER})
    steps.init_training(resume_store.as_uri(), RESUME_ID, spec, engine="local")
    steps.em_iteration(resume_store.as_uri(), RESUME_ID, 1, engine="local")
    resume_conf = conf(data_uri, resume_store.as_uri(), tol=0.0, max_iter=RESUME_MAX_ITER, training_id=RESUME_ID)
    out["resume"] = {
        "store": resume_store,
        "before": tree_hashes(resume_store),
        "response": client.trigger(DAG_ID, resume_conf, datetime(2026, 3, 2, tzinfo=UTC)),
    }

    # 4. A backfill of two weekly dates.
    backfill_store = root / "backfill"
    backfill_conf = conf(data_uri, backfill_store.as_uri(), tol=0.0, max_iter=BACKFILL_MAX_ITER)
    out["backfill"] = {
        "store": backfill_store,
        "conf": backfill_conf,
        "first": client.create_backfill(DAG_ID, BACKFILL_FROM, BACKFILL_TO, backfill_conf),
    }
    return out


def test_the_dag_is_parsed_with_its_slots(airflow):
    _, client = airflow
    tasks = client.json("GET", f"/dags/{DAG_ID}/tasks")["tasks"]
    assert sorted(t["task_id"] for t in tasks if t["task_id"].startswith("iteration_")) == [
        f"iteration_{i}" for i in range(1, SLOTS + 1)
    ]


def test_a_training_longer_than_a_run_continues_in_a_triggered_run_and_is_published(airflow, launched, tmp_path):
    _, client = airflow
    long = launched["long"]
    assert long["response"].status_code == 200, long["response"].text
    first_id = long["response"].json()["dag_run_id"]
    first = finished(client, first_id)
    assert_success(client, first)
    states = client.task_states(DAG_ID, first_id)
    assert (states[f"wait_{SLOTS}"], states["continue_training"], states["finalize"]) == (
        "success",
        "success",
        "skipped",
    )
    training_id = long["training_id"]
    store = long["store"].as_uri()

    # The scheduler starts the continuation run that continue_training created.
    continuation_id = orchestration.continuation_run_id(training_id, SLOTS)
    second = finished(client, continuation_id)
    assert_success(client, second)
    # Self-contained: the first run's params (its conf over the DAG's defaults), pinned to the training.
    defaults = {name: p["value"] for name, p in client.json("GET", f"/dags/{DAG_ID}/details")["params"].items()}
    assert second["conf"] == {**defaults, **long["conf"], "training_id": training_id}
    assert client.task_states(DAG_ID, continuation_id)["finalize"] == "success"
    # No third run: the training converged (max_iter) in the continuation.
    assert orchestration.continuation_run_id(training_id, LONG_MAX_ITER) not in {
        r["dag_run_id"] for r in client.runs(DAG_ID)
    }

    final = records(store, training_id)
    assert sorted(final) == list(range(LONG_MAX_ITER + 1))
    assert final[LONG_MAX_ITER]["converged"]
    # Bit for bit what the same training gives in one process (and under dag.test()).
    expected = reference(f"file://{tmp_path}/reference", launched["data"], tol=0.0, max_iter=LONG_MAX_ITER)
    assert final[LONG_MAX_ITER]["params_sha256"] == expected["params_sha256"]
    published = Training(open_store(store), training_id).published()
    assert published is not None and published["iteration"] == LONG_MAX_ITER
    # The hmm-em-model asset event, recorded by the continuation's finalize.
    events = model_events(client, training_id)
    assert [e["extra"] for e in events] == [published_event(long["store"], training_id)]
    assert events[0]["source_run_id"] == continuation_id


def test_hostile_confs_are_refused_or_fail_in_validate_with_nothing_written(airflow, launched):
    _, client = airflow
    hostile = launched["hostile"]
    refused = hostile["refused"]
    assert refused.status_code == 400, refused.text
    assert "training_id" in refused.text
    assert not hostile["refused_store"].exists()

    escaping = hostile["escaping"]
    assert escaping.status_code == 200, escaping.text  # the schema allows it; validate does not
    run_id = escaping.json()["dag_run_id"]
    run = finished(client, run_id)
    assert run["state"] == "failed"
    states = client.task_states(DAG_ID, run_id)
    assert states["validate"] == "failed"
    assert states["init"] == "upstream_failed" and states["iteration_1"] == "upstream_failed"
    assert "must not contain '..'" in client.task_log(DAG_ID, run_id, "validate")
    for path in hostile["paths"]:
        assert not path.exists(), f"{path} was written"
    # The refused conf created no run.
    assert all((r["conf"] or {}).get("training_id") != "../../etc/passwd" for r in client.runs(DAG_ID))


def test_resume_by_training_id_keeps_the_committed_iterations_byte_for_byte(airflow, launched, tmp_path):
    _, client = airflow
    resume = launched["resume"]
    assert resume["response"].status_code == 200, resume["response"].text
    run_id = resume["response"].json()["dag_run_id"]
    assert_success(client, finished(client, run_id))
    states = client.task_states(DAG_ID, run_id)
    assert states["finalize"] == "success"
    after = tree_hashes(resume["store"])
    assert {path: after.get(path) for path in resume["before"]} == resume["before"]
    final = records(resume["store"].as_uri(), RESUME_ID)
    assert sorted(final) == list(range(RESUME_MAX_ITER + 1))
    # The run did iterations 2 and 3 only: 0 and 1 are the ones committed in this process before.
    assert sum(1 for path in after if path.endswith("COMMIT")) == RESUME_MAX_ITER + 1
    expected = reference(f"file://{tmp_path}/reference", launched["data"], tol=0.0, max_iter=RESUME_MAX_ITER)
    assert final[RESUME_MAX_ITER]["params_sha256"] == expected["params_sha256"]
    events = model_events(client, RESUME_ID)
    assert [(e["extra"], e["source_run_id"]) for e in events] == [(published_event(resume["store"], RESUME_ID), run_id)]


def backfill_runs(client: Any) -> list[dict[str, Any]]:
    return sorted((r for r in client.runs(DAG_ID) if r["run_type"] == "backfill"), key=lambda r: r["logical_date"])


def test_a_backfill_of_two_weeks_trains_each_date_and_again_adds_no_commit(airflow, launched):
    _, client = airflow
    backfill = launched["backfill"]
    store: Path = backfill["store"]
    client.wait_for_backfill(backfill["first"]["id"], timeout=1200)
    runs = backfill_runs(client)
    assert [utc(r["logical_date"]) for r in runs] == [BACKFILL_FROM, BACKFILL_TO]
    for run in runs:
        assert_success(client, run)
    spec = TrainingSpec.from_dict({**SPEC, "data": launched["data"], "tol": 0.0, "max_iter": BACKFILL_MAX_ITER})
    trainings = [orchestration.derive_training_id(spec, utc(r["logical_date"])) for r in runs]
    for training_id in trainings:
        training = Training(open_store(store.as_uri()), training_id)
        assert training.latest() == BACKFILL_MAX_ITER and training.published() is not None
    before = tree_hashes(store)
    committed = commits(store)
    assert len(committed) == 2 * (BACKFILL_MAX_ITER + 1)
    for training_id, run in zip(trainings, runs, strict=True):
        events = model_events(client, training_id)
        assert [(e["extra"], e["source_run_id"]) for e in events] == [
            (published_event(store, training_id), run["dag_run_id"])
        ]

    # The same backfill again, re-running the completed dates: every slot passes through.
    again = client.create_backfill(DAG_ID, BACKFILL_FROM, BACKFILL_TO, backfill["conf"], reprocess="completed")
    client.wait_for_backfill(again["id"], timeout=1200)
    rerun = backfill_runs(client)
    # The same runs, cleared and run again by the second backfill.
    assert [r["dag_run_id"] for r in rerun] == [r["dag_run_id"] for r in runs]
    for run in rerun:
        assert_success(client, run)
        assert utc(run["start_date"]) > utc(again["created_at"]), run
        states = client.task_states(DAG_ID, run["dag_run_id"])
        assert (states["wait_1"], states["finalize"]) == ("success", "skipped")
    assert commits(store) == committed
    assert tree_hashes(store) == before
    for training_id in trainings:
        assert len(model_events(client, training_id)) == 1  # no new model, no new event

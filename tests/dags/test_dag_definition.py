"""The DAG files: they import offline, the training DAG has the agreed shape, bad params never start a run."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from tests.conftest import DAGS

GOOD = {
    "model": "categorical",
    "n_components": 2,
    "data": "file:///nonexistent/data",
    "store": "file:///nonexistent/store",
    "engine": "local",
}


def test_every_dag_imports_without_network_or_errors(airflow_home, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    def no_network(*args, **kwargs):
        raise AssertionError(f"a DAG file opened a network connection at import: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert len(bag.dags) == len(list(DAGS.glob("*.py")))
    for dag in bag.dags.values():
        assert dag.doc_md, f"{dag.dag_id} has no doc_md"


def test_the_training_dag_is_a_bounded_chain_of_slots_with_a_teardown(dag):
    from airflow.sdk import TriggerRule

    slots = sorted(int(t.split("_")[1]) for t in dag.task_ids if t.startswith("iteration_"))
    assert slots == list(range(1, len(slots) + 1)) and len(slots) >= 2
    assert {t for t in dag.task_ids if t.startswith("wait_")} == {f"wait_{i}" for i in slots}
    for i in slots[:-1]:
        assert dag.task_dict[f"wait_{i}"].downstream_task_ids >= {f"iteration_{i + 1}", "finalize"}
    assert dag.task_dict[f"wait_{slots[-1]}"].downstream_task_ids >= {"continue_training", "finalize"}
    assert dag.task_dict["terminate_cluster"].trigger_rule == TriggerRule.ALL_DONE
    # Local mode's Spark: started before init, stopped whatever happened once the run's end is decided.
    assert dag.task_dict["start_spark"].downstream_task_ids == {"init", "watcher"}
    assert dag.task_dict["stop_spark"].trigger_rule == TriggerRule.ALL_DONE
    assert dag.task_dict["stop_spark"].upstream_task_ids == {"finalize", "continue_training"}
    assert dag.task_dict["watcher"].trigger_rule == TriggerRule.ONE_FAILED
    # The watcher sees every task but the two short circuits (which would skip it).
    assert dag.task_dict["watcher"].upstream_task_ids == set(dag.task_ids) - {"watcher", "emr_mode", "cluster_created"}
    assert [o.name for o in dag.task_dict["finalize"].outlets] == ["hmm-em-model"]
    assert not dag.catchup
    assert "Bounding the loop" in dag.doc_md and "backfill" in dag.doc_md
    assert dag.task_dict["continue_training"].trigger_dag_id == dag.dag_id


def test_the_params_are_the_fields_of_the_one_params_schema(dag):
    from hmm.orchestration.decisions import PARAMS_SCHEMA, check_params

    fields = PARAMS_SCHEMA["properties"]
    assert set(dag.params) == set(fields)
    for name, schema in fields.items():
        assert dag.params.get_param(name).schema == schema, name
    # The defaults pass the trigger form and the validate task's checks alike.
    assert check_params({**dag.params.dump(), **GOOD}).engine == "local"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"training_id": "../x"}, "Invalid input for param training_id: '../x' does not match"),
        # JSON-schema patterns are searched: "$" would let a final newline through, END does not.
        ({"training_id": "nl\n"}, "Invalid input for param training_id: 'nl\\n' does not match"),
        ({"sequence_col": "seq\n"}, "Invalid input for param sequence_col: 'seq\\n' does not match"),
        ({"store": "file:///tmp/store\n"}, "Invalid input for param store: 'file:///tmp/store\\n' does not match"),
        ({"model": "hmmlearn"}, "Invalid input for param model: 'hmmlearn' is not one of"),
        ({"tol": -1}, "Invalid input for param tol: -1 is less than the minimum of 0"),
        ({"store": "http://example.com/store"}, "Invalid input for param store: 'http://example.com/store' does not"),
        ({"emr": {"ssh_key": "x"}}, "Invalid input for param emr: Additional properties are not allowed"),
    ],
)
def test_bad_params_are_refused_before_any_task_runs(dag, changes, message):
    from airflow.models.dagrun import DagRun
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.utils.session import create_session

    with create_session() as session:
        runs_before = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).count()
    with pytest.raises(ParamValidationError) as refused:
        dag.test(logical_date=datetime(2030, 1, 1, tzinfo=UTC), run_conf={**GOOD, **changes})
    assert message in str(refused.value)
    with create_session() as session:
        assert session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).count() == runs_before


def test_what_the_schema_cannot_say_fails_the_validate_task_and_nothing_else_runs(dag, tmp_path, capfd):
    from tests.dags.helpers import task_states

    store = tmp_path / "store"
    run = dag.test(
        logical_date=datetime(2030, 1, 2, tzinfo=UTC),
        run_conf={**GOOD, "store": f"file://{store}", "training_id": "a..b"},
    )
    assert run.state == "failed"
    states = task_states(run)
    assert states["validate"] == "failed" and states["watcher"] == "failed"
    assert states["terminate_cluster"] == "skipped"  # no cluster was created
    assert states["stop_spark"] == "skipped"  # nor a local Spark
    others = set(states) - {"validate", "watcher", "cluster_created", "terminate_cluster", "stop_spark"}
    assert {states[t] for t in others} == {"upstream_failed"}
    assert "training_id 'a..b' is invalid" in capfd.readouterr().out
    assert not store.exists()


def test_an_init_from_naming_no_published_model_fails_the_validate_task_and_nothing_is_written(dag, tmp_path, capfd):
    from tests.dags.helpers import task_states

    store = tmp_path / "store"
    (store / "trainings" / "unpublished").mkdir(parents=True)  # a training without a published model
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    for init_from in ("nosuch", "unpublished"):
        run = dag.test(
            logical_date=datetime(2030, 1, 3, tzinfo=UTC),
            run_conf={**GOOD, "store": f"file://{store}", "init_from": init_from},
        )
        assert run.state == "failed"
        states = task_states(run)
        assert states["validate"] == "failed" and states["init"] == "upstream_failed"
        out = capfd.readouterr().out
        assert f"spec field 'init_from' is '{init_from}': the store file://{store}/ has no other training" in out
        assert sorted(p.relative_to(store) for p in store.rglob("*")) == before

"""The Airflow fixtures (airflow_home, loaded_dag, dag) are in tests/conftest.py, shared with tests/infra."""

from __future__ import annotations

import pytest


@pytest.fixture
def spark_servers(monkeypatch):
    """Every Spark Connect server a DAG's start_spark task starts (:func:`hmm.orchestration.connect.start`)."""
    from hmm.orchestration import connect

    real = connect.start
    started: list[dict] = []

    def start(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(connect, "start", start)
    return started

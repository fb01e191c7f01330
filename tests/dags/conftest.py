"""The Airflow fixtures (airflow_home, loaded_dag, dag) are in tests/conftest.py, shared with tests/infra."""

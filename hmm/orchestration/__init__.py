"""The Airflow layer: every decision of the training DAG (:mod:`.decisions`) and its tasks (:mod:`.tasks`).

The top layer: nothing else in hmm imports it. ``dags/`` wires these into a DAG; module-level
imports stay light because every Airflow task process parses the DAG file.
"""

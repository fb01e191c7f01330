"""Write cluster.json and steps.json: the DAG's EMR requests, for operators working by hand.

    python infra/emr/render.py          (rewrites the two files next to this one)

The cluster and its steps come from one place, :func:`hmm.orchestration.decisions.job_flow_config` and
:func:`hmm.orchestration.decisions.emr_step`; these files are what they render for the example values
below, and a test fails when the checked-in copies differ from a fresh rendering.

* cluster.json: the ``RunJobFlow`` request the DAG's create_cluster task sends.
* steps.json: the init, first iteration and finalize steps in the shape of
  ``aws emr add-steps --cluster-id j-... --steps file://steps.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hmm.orchestration import decisions as orchestration
from hmm.training.spec import TrainingSpec

HERE = Path(__file__).resolve().parent
#: Placeholders an operator replaces (infra/README.md): the stack's bucket, a code version that
#: `make upload` put there, and a training id.
STORE = "s3://your-bucket/hmm-em"
CODE_VERSION = "CODE_VERSION"
TRAINING_ID = "TRAINING_ID"
EXAMPLE_SPEC = {"model": "categorical", "n_components": 10, "data": "s3://your-bucket/data/sequences/", "id_col": "id"}
EMR_SETTINGS = {"log_uri": "s3://your-bucket-logs/emr/"}


def render() -> dict[str, str]:
    """File name -> content."""
    emr = orchestration.check_params({**EXAMPLE_SPEC, "store": STORE, "mode": "emr", "emr": EMR_SETTINGS}).emr
    cluster = orchestration.job_flow_config(emr, TRAINING_ID, CODE_VERSION)
    spec = TrainingSpec.from_dict(EXAMPLE_SPEC)
    steps = [
        orchestration.emr_step("init", emr, STORE, TRAINING_ID, CODE_VERSION, spec=spec),
        orchestration.emr_step("iterate", emr, STORE, TRAINING_ID, CODE_VERSION, iteration=1),
        orchestration.emr_step("finalize", emr, STORE, TRAINING_ID, CODE_VERSION),
    ]
    return {"cluster.json": as_json(cluster), "steps.json": as_json([cli_step(step) for step in steps])}


def cli_step(step: dict[str, Any]) -> dict[str, Any]:
    """An ``add_job_flow_steps`` step in the shape ``aws emr add-steps --steps file://...`` reads."""
    jar = step["HadoopJarStep"]
    return {
        "Type": "CUSTOM_JAR",
        "Name": step["Name"],
        "ActionOnFailure": step["ActionOnFailure"],
        "Jar": jar["Jar"],
        "Args": jar["Args"],
    }


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def main() -> int:
    for name, content in render().items():
        (HERE / name).write_text(content)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

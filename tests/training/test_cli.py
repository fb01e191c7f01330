"""hmm-em as a person uses it: help, train, status, resume, validate, report, and its errors."""

import json

import pytest

from hmm.training.cli import main
from hmm.training.commits import Training
from hmm.training.store import open_store


def spec_text(data_uri, **overrides):
    raw = {
        "model": "categorical",
        "n_components": 3,
        "data": data_uri,
        "id_col": "id",
        "tol": 0.5,
        "max_iter": 4,
        "seed": 1,
    }
    raw.update(overrides)
    return json.dumps(raw)


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("train", "resume", "status", "validate", "report", "init", "iterate", "finalize"):
        assert command in text


def test_train_status_resume_report(capsys, file_root, categorical_data):
    data_uri, _, _ = categorical_data
    common = ["--store", file_root, "--training-id", "cli", "--engine", "local"]
    assert main(["train", *common, "--spec", spec_text(data_uri)]) == 0
    out = capsys.readouterr().out
    assert "iteration    1 [committed] log-likelihood" in out
    latest = Training(open_store(file_root), "cli").latest()
    assert f"model {file_root}/trainings/cli/model/{latest}/model.npz" in out
    assert main(["status", "--store", file_root, "--training-id", "cli"]) == 0
    status = capsys.readouterr().out
    assert "| 0 | (initial parameters) |" in status and "latest committed iteration: 4" in status
    before = {k: open_store(file_root).read(k) for k in open_store(file_root).list("")}
    assert main(["resume", *common]) == 0
    assert main(["report", "--store", file_root, "--training-id", "cli"]) == 0
    assert "report: exists" in capsys.readouterr().out
    assert {k: open_store(file_root).read(k) for k in open_store(file_root).list("")} == before


def test_validate_reports_the_first_bad_row(capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d").mkdir()
    pq.write_table(
        pa.table({"id": [7, 8], "sequence": pa.array([[0, 1], [2, 3, 99]], pa.list_(pa.int32()))}),
        tmp_path / "d" / "p.parquet",
    )
    spec = spec_text(f"file://{tmp_path}/d", model_args={"n_features": 5})
    assert main(["validate", "--engine", "local", "--spec", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hmm-em validate: error: data file://")
    assert "sequence id=8, position 2: symbol 99 is outside [0, 5)" in err
    good = spec_text(f"file://{tmp_path}/d", model_args={"n_features": 100})
    assert main(["validate", "--engine", "local", "--spec", good]) == 0
    assert "valid: 2 sequences, 5 observations" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["status", "--store", "file:///x", "--training-id", "a/b"], 2, "training_id 'a/b' is invalid"),
        (["iterate", "--store", "file:///x", "--training-id", "a", "--iteration", "0"], 2, "iteration must be"),
        (["train", "--store", "gs://bucket/x", "--training-id", "a", "--spec", "{}"], 2, "only file:// and s3://"),
    ],
)
def test_bad_arguments_exit_2_naming_the_rule(capsys, argv, code, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    assert message in capsys.readouterr().err


def test_bad_spec_and_missing_training(capsys, file_root):
    assert main(["train", "--store", file_root, "--training-id", "a", "--engine", "local", "--spec", "{not json"]) == 2
    assert "spec is not valid JSON" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--store",
                file_root,
                "--training-id",
                "a",
                "--engine",
                "local",
                "--spec",
                spec_text("file:///d", tol=-1),
            ]
        )
        == 2
    )
    assert "spec field 'tol' is -1" in capsys.readouterr().err
    assert main(["status", "--store", file_root, "--training-id", "nothing"]) == 3
    assert "training 'nothing' does not exist" in capsys.readouterr().err
    assert open_store(file_root).list("") == []


def test_an_iteration_job_records_its_start_up_in_the_commit(file_root, categorical_data):
    """A job process (jobs/em_iteration.py) records its own start-up next to the step's phases;
    an iteration run inside another process (here, pytest) does not claim that process's age."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hmm.training import steps
    from hmm.training.commits import Training
    from hmm.training.spec import TrainingSpec

    data_uri, _, _ = categorical_data
    spec = TrainingSpec.from_dict(json.loads(spec_text(data_uri, tol=0.0)))
    steps.init_training(file_root, "timed", spec, engine="local")
    assert (
        main(["iterate", "--store", file_root, "--training-id", "timed", "--iteration", "1", "--engine", "local"]) == 0
    )
    in_process = Training(open_store(file_root), "timed").record(1)["timings"]
    assert set(in_process) == set(steps.STEP_PHASES)

    repo = Path(__file__).resolve().parents[2]
    arguments = ["--store", file_root, "--training-id", "timed", "--iteration", "2", "--engine", "local"]
    job = subprocess.run(
        [sys.executable, str(repo / "jobs" / "em_iteration.py"), *arguments],
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    record = Training(open_store(file_root), "timed").record(2)
    timings = record["timings"]
    assert set(steps.STEP_PHASES) < set(timings) and "launch_seconds" not in timings  # not under spark-submit
    assert 0 < timings["startup_seconds"] < 120
    line = steps.format_progress({**record, "status": "committed"})
    assert f"job start-up {timings['startup_seconds']:.1f} s" in line and line in job.stdout


def test_process_age_and_job_startup():
    from hmm.training.cli import job_startup, process_age_seconds

    age = process_age_seconds()
    assert age is not None and age > 0
    assert job_startup(1.5, own_process=False) == {"spark_session_seconds": 1.5}
    assert set(job_startup(None, own_process=True)) == {"startup_seconds"}


def test_a_job_ends_with_its_code_after_what_a_normal_exit_does(tmp_path):
    """exit_job skips only the interpreter's teardown: threads joined, atexit handlers run, output flushed."""
    import subprocess
    import sys

    script = f"""
import atexit, pathlib, sys, threading, time
from hmm.training.cli import exit_job
folder = pathlib.Path({str(tmp_path)!r})
atexit.register(lambda: (folder / "atexit").write_text("ran"))
def late_writer():
    time.sleep(0.3)
    (folder / "thread").write_text("joined")
threading.Thread(target=late_writer).start()
sys.stdout.write("no newline, still buffered")
sys.stderr.write("error line\\n")
exit_job(3)
print("never")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout == "no newline, still buffered"
    assert done.stderr == "error line\n"
    assert (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_the_job_scripts_end_with_exit_job():
    from pathlib import Path

    jobs = sorted((Path(__file__).resolve().parents[2] / "jobs").glob("*.py"))
    assert jobs
    for job in jobs:
        text = job.read_text()
        assert "exit_job(main(" in text, job.name
        assert "sys.exit" not in text, job.name

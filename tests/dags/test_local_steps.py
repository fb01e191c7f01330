"""Local-mode steps: spark-submit's JVM settings and the class data sharing archive they keep.

A JVM writes the archive when it exits, so the first step on a machine writes it to a file of
its own and the task moves it into place afterwards; later steps map it.
"""

from __future__ import annotations

import pytest

from hmm.orchestration import decisions as orchestration

PLAN = {"store": "file:///s", "training_id": "t-1", "engine": "spark", "spec": None}


def test_local_command_passes_the_jvm_options_as_one_driver_option():
    common = {"jobs_dir": "/repo/jobs", "python": "/venv/bin/python", "spark_submit": "/venv/bin/spark-submit"}
    argv = orchestration.local_command(
        "iterate",
        "file:///s",
        "t-1",
        engine="spark",
        iteration=2,
        java_options=["-XX:SharedArchiveFile=/c/a.jsa"],
        **common,
    )
    options = argv[argv.index("--driver-java-options") + 1]
    assert options == "-XX:TieredStopAtLevel=1 -XX:SharedArchiveFile=/c/a.jsa"
    for bad in (["-Da=b c"], ["not-an-option"]):
        with pytest.raises(ValueError, match="JVM options must be single words"):
            orchestration.local_command(
                "iterate", "file:///s", "t-1", engine="spark", iteration=2, java_options=bad, **common
            )


def test_the_archive_is_keyed_by_jdk_and_spark_and_lives_in_the_user_cache(airflow_home, tmp_path, monkeypatch):
    from hmm.orchestration import tasks as airflow_tasks

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spark_submit = tmp_path / "spark-submit"
    spark_submit.write_text("#!/bin/sh\n")
    archive = airflow_tasks.spark_class_archive(str(spark_submit))
    assert archive.parent == tmp_path / "cache" / "hmm-em" and archive.suffix == ".jsa"
    assert airflow_tasks.spark_class_archive(str(spark_submit)) == archive
    other = tmp_path / "other-spark-submit"
    other.write_text("#!/bin/sh\n")
    assert airflow_tasks.spark_class_archive(str(other)) != archive


def test_the_first_step_writes_the_archive_and_the_next_ones_map_it(airflow_home, tmp_path, monkeypatch):
    from hmm.orchestration import tasks as airflow_tasks

    archive = tmp_path / "cache" / "hmm-em" / "spark-classes-0123.jsa"
    monkeypatch.setattr(airflow_tasks, "spark_class_archive", lambda spark_submit: archive)
    monkeypatch.setattr(airflow_tasks, "spark_submit_path", lambda: "/venv/bin/spark-submit")
    commands: list[list[str]] = []

    def jvm(argv, env):
        """What the step's JVM does with the options: write the archive at exit when asked to."""
        commands.append(argv)
        options = argv[argv.index("--driver-java-options") + 1].split() if "--driver-java-options" in argv else []
        for option in options:
            if option.startswith("-XX:ArchiveClassesAtExit="):
                with open(option.split("=", 1)[1], "wb") as written:
                    written.write(b"classes")

    monkeypatch.setattr(airflow_tasks, "run_command", jvm)
    airflow_tasks.run_local_step(PLAN, "iterate", "/repo/jobs", iteration=1)
    first = commands[-1][commands[-1].index("--driver-java-options") + 1]
    assert "-XX:ArchiveClassesAtExit=" in first and "-Xlog:cds=off" in first
    assert archive.read_bytes() == b"classes" and list(archive.parent.iterdir()) == [archive]

    airflow_tasks.run_local_step(PLAN, "iterate", "/repo/jobs", iteration=2)
    second = commands[-1][commands[-1].index("--driver-java-options") + 1]
    assert f"-XX:SharedArchiveFile={archive}" in second and "ArchiveClassesAtExit" not in second

    # The local engine and finalize start no JVM: no options, no archive.
    airflow_tasks.run_local_step({**PLAN, "engine": "local"}, "iterate", "/repo/jobs", iteration=3)
    airflow_tasks.run_local_step(PLAN, "finalize", "/repo/jobs")
    assert all("--driver-java-options" not in argv for argv in commands[-2:])


def test_no_archive_where_its_path_would_split_the_options(airflow_home, tmp_path):
    from hmm.orchestration import tasks as airflow_tasks

    assert airflow_tasks.class_archive_options(tmp_path / "with space" / "a.jsa") == ([], None)

"""The DAG's decisions as plain functions: training ids, params, the loop, step command lines, EMR config."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hmm.orchestration import decisions as orch
from hmm.training.spec import InvalidSpecError, TrainingSpec

PARAMS = {
    "model": "categorical",
    "n_components": 3,
    "data": "s3://data-bucket/sequences",
    "store": "s3://store-bucket/hmm",
    "sequence_col": "sequence",
    "id_col": None,
    "tol": 0.01,
    "max_iter": 100,
    "seed": 0,
    "model_args": {},
    "mode": "emr",
    "engine": "spark",
    "emr": {"bundle_root": "s3://artifacts/hmm-em/bundles", "core_instance_count": 4},
    "training_id": None,
}
DATE = datetime(2026, 3, 2, tzinfo=UTC)


def spec(**changes):
    return TrainingSpec.from_dict({"model": "categorical", "n_components": 3, "data": "file:///data", **changes})


def test_training_id_is_the_model_the_date_and_a_digest_of_the_spec():
    training_id = orch.derive_training_id(spec(), DATE)
    assert training_id == f"categorical-20260302T000000Z-{orch.spec_digest(spec())[:12]}"
    # Same date and spec: same training (a backfill resumes it). Any change: another training.
    assert orch.derive_training_id(spec(), DATE.astimezone(timezone(timedelta(hours=2)))) == training_id
    assert orch.derive_training_id(spec(tol=0.5), DATE) != training_id
    assert orch.derive_training_id(spec(), DATE + timedelta(weeks=1)) != training_id
    with pytest.raises(ValueError, match="time zone"):
        orch.derive_training_id(spec(), datetime(2026, 3, 2))


def test_the_code_version_is_not_part_of_the_training_id():
    # The digest of trainings created before spec.json recorded a code version: they keep their ids.
    assert orch.spec_digest(spec()) == "a0e2433daba7136923422d293d287dc1dec47b3c52f04fd8568733e4d722b2c3"
    assert orch.spec_digest(spec(code_version="0.1.dev3+gabc1234")) == orch.spec_digest(spec())
    assert orch.spec_differences(spec(code_version="0.1"), spec(code_version="0.2", tol=0.5)) == ["tol"]
    assert "code_version" not in orch.SPEC_FIELDS  # not a param: the code records it


def test_a_training_id_in_the_conf_wins_and_runs_without_a_logical_date_use_run_after():
    settings = orch.check_params(PARAMS)
    assert orch.resolve_training_id(settings, DATE, DATE + timedelta(hours=1)) == orch.derive_training_id(
        settings.spec, DATE
    )
    assert orch.resolve_training_id(settings, None, DATE) == orch.derive_training_id(settings.spec, DATE)
    given = orch.check_params({**PARAMS, "training_id": "weekly-2026.03"})
    assert orch.resolve_training_id(given, DATE, DATE) == "weekly-2026.03"


def test_params_become_run_settings_with_emr_defaults_filled_in():
    settings = orch.check_params(PARAMS)
    assert settings.spec == TrainingSpec.from_dict(
        {k: PARAMS[k] for k in ("model", "n_components", "data", "sequence_col", "id_col", "tol", "max_iter", "seed")}
    )
    assert (settings.store, settings.mode, settings.engine, settings.training_id) == (
        "s3://store-bucket/hmm",
        "emr",
        "spark",
        None,
    )
    assert settings.emr == {
        **orch.EMR_DEFAULTS,
        "bundle_root": "s3://artifacts/hmm-em/bundles",
        "core_instance_count": 4,
    }


def test_the_bundles_are_under_the_store_unless_emr_bundle_root_says_otherwise():
    settings = orch.check_params({**PARAMS, "emr": {}, "store": "s3://store-bucket/hmm/"})
    assert settings.emr["bundle_root"] == "s3://store-bucket/hmm/bundle"
    local = orch.check_params({**PARAMS, "emr": {}, "mode": "local", "store": "file:///srv/store"})
    assert local.emr["bundle_root"] is None  # local mode runs this checkout's jobs/
    elsewhere = {"bundle_root": "s3://artifacts/hmm-em/bundles"}
    assert orch.check_params({**PARAMS, "emr": elsewhere, "store": "file:///srv/store"}).emr == {
        **orch.EMR_DEFAULTS,
        **elsewhere,
    }
    with pytest.raises(InvalidSpecError, match=r"param 'store' is 'file:///srv/store' and param 'emr.bundle_root'"):
        orch.check_params({**PARAMS, "emr": {}, "store": "file:///srv/store"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"training_id": "../x"}, "training_id '../x' is invalid"),
        ({"training_id": "a..b"}, "training_id 'a..b' is invalid"),
        ({"model": "hmmlearn"}, "spec field 'model' is 'hmmlearn'"),
        ({"tol": -1}, "spec field 'tol' is -1"),
        ({"store": "http://example.com/x"}, "param 'store' 'http://example.com/x' has scheme 'http'"),
        ({"store": "file:///srv/../etc"}, "must not contain '..'"),
        ({"data": "hdfs://nn/x"}, "spec field 'data' 'hdfs://nn/x' has scheme 'hdfs'"),
        ({"sequence_col": "seq; rm -rf /"}, "spec field 'sequence_col' is 'seq; rm -rf /'"),
        ({"model_args": {"n_iter": 5}}, "spec field 'model_args' has unknown argument(s) ['n_iter']"),
        ({"mode": "k8s"}, "param 'mode' is 'k8s'; choose one of ['local', 'emr']"),
        ({"engine": "dask"}, "param 'engine' is 'dask'"),
        ({"max_iters": 5}, "unknown param(s) ['max_iters']"),
        ({"emr": {"bundle_root": "file:///tmp/bundle"}}, "param 'emr.bundle_root' is 'file:///tmp/bundle'"),
        ({"emr": {"bundle_uri": "s3://b-1/x"}}, "param 'emr' has unknown field(s) ['bundle_uri']"),
        ({"emr": {"release_label": "emr-7; curl x"}}, "param 'emr.release_label' is 'emr-7; curl x'"),
        ({"emr": {"core_instance_count": 0}}, "param 'emr.core_instance_count' is 0"),
        ({"emr": {"core_instance_count": True}}, "param 'emr.core_instance_count' is True; it must be an integer"),
        ({"emr": {"deploy_mode": "local"}}, "param 'emr.deploy_mode' is 'local'"),
        ({"emr": {"ssh_key": "mine"}}, "param 'emr' has unknown field(s) ['ssh_key']"),
        ({"emr": "big"}, "param 'emr' is 'big'; it must be an object"),
    ],
)
def test_bad_params_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError) as raised:
        orch.check_params({**PARAMS, **changes})
    assert message in str(raised.value)


def test_a_run_s_slots_start_after_the_latest_committed_iteration():
    assert orch.first_iteration(None) == 1
    assert orch.first_iteration(0) == 1
    assert orch.first_iteration(6) == 7


def test_a_slot_runs_its_iteration_once_passes_through_when_committed_and_stops_when_converged():
    assert orch.slot_action(1, 0, False) == "run"
    assert orch.slot_action(5, 4, False) == "run"
    assert orch.slot_action(3, 4, False) == "committed"
    assert orch.slot_action(4, 4, True) == "committed"
    assert orch.slot_action(5, 4, True) == "converged"
    with pytest.raises(ValueError, match="iteration 7 cannot run: the latest committed iteration is 4"):
        orch.slot_action(7, 4, False)
    with pytest.raises(ValueError, match="no committed iteration 0"):
        orch.slot_action(1, None, False)


def test_a_commit_sends_the_loop_to_the_next_slot_finalize_or_a_continuation():
    assert orch.after_commit({"converged": False}, 1, 6) == "next"
    assert orch.after_commit({"converged": True}, 1, 6) == "finalize"
    assert orch.after_commit({"converged": True}, 6, 6) == "finalize"
    assert orch.after_commit({"converged": False}, 6, 6) == "continue"
    with pytest.raises(ValueError, match=r"slot 7 is outside 1\.\.6"):
        orch.after_commit({"converged": False}, 7, 6)


def test_stop_reason_names_the_rule():
    assert orch.stop_reason({"iteration": 100, "improvement": 5.0}, spec(max_iter=100)) == "max_iter=100 reached"
    assert (
        orch.stop_reason({"iteration": 7, "improvement": 0.004}, spec()) == "log-likelihood gain 0.004 below tol=0.01"
    )


def test_a_continuation_carries_the_params_and_the_training_id():
    conf = orch.continuation_conf({**PARAMS, "unrelated": 1}, "t-1")
    assert conf == {**PARAMS, "training_id": "t-1"}
    assert orch.continuation_run_id("t-1", 6) == "hmm_em_continue__t-1__6"
    with pytest.raises(InvalidSpecError):
        orch.continuation_run_id("../t", 6)


def test_job_arguments_are_the_one_command_line_of_each_step():
    the_spec = spec()
    assert orch.job_arguments("iterate", "s3://b-1/root", "t-1", iteration=3) == [
        "--store",
        "s3://b-1/root",
        "--training-id",
        "t-1",
        "--iteration",
        "3",
    ]
    init = orch.job_arguments("init", "s3://b-1/root", "t-1", spec=replace(the_spec, code_version="0.1"))
    assert init[4] == "--spec" and TrainingSpec.from_json(init[5].encode()) == the_spec
    assert "code_version" not in json.loads(init[5])  # the job records its own
    assert orch.job_arguments("finalize", "file:///s", "t-1") == ["--store", "file:///s", "--training-id", "t-1"]
    with pytest.raises(ValueError, match="iteration must be an integer >= 1"):
        orch.job_arguments("iterate", "file:///s", "t-1", iteration=0)
    with pytest.raises(ValueError, match="the init step needs the spec"):
        orch.job_arguments("init", "file:///s", "t-1")
    with pytest.raises(InvalidSpecError):
        orch.job_arguments("finalize", "file:///s", "-rf")
    with pytest.raises(ValueError, match="step kind"):
        orch.job_arguments("train", "file:///s", "t-1")


def test_local_commands_use_spark_submit_unless_the_engine_is_local():
    common = {"jobs_dir": "/repo/jobs", "python": "/venv/bin/python", "spark_submit": "/venv/bin/spark-submit"}
    assert orch.local_command("iterate", "file:///s", "t-1", engine="spark", iteration=2, **common) == [
        "/venv/bin/spark-submit",
        "--master",
        "local[*]",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.ui.showConsoleProgress=false",
        "--driver-java-options",
        "-XX:TieredStopAtLevel=1",
        "/repo/jobs/em_iteration.py",
        "--store",
        "file:///s",
        "--training-id",
        "t-1",
        "--iteration",
        "2",
    ]
    assert orch.local_command("iterate", "file:///s", "t-1", engine="local", iteration=2, **common) == [
        "/venv/bin/python",
        "/repo/jobs/em_iteration.py",
        "--store",
        "file:///s",
        "--training-id",
        "t-1",
        "--iteration",
        "2",
        "--engine",
        "local",
    ]
    with pytest.raises(ValueError, match="spark-submit not found"):
        orch.local_command("init", "file:///s", "t-1", engine="spark", spec=spec(), **{**common, "spark_submit": None})
    # finalize starts no Spark: a python process for either engine.
    assert orch.local_command("finalize", "file:///s", "t-1", engine="spark", **common) == [
        "/venv/bin/python",
        "/repo/jobs/finalize.py",
        "--store",
        "file:///s",
        "--training-id",
        "t-1",
    ]


def test_a_training_runs_the_code_version_its_spec_json_records(monkeypatch):
    monkeypatch.setattr(orch, "__version__", "0.3.dev2+gfeed123")  # this deployment
    assert orch.code_version_to_run(spec(code_version="0.1.dev9+gabc1234")) == "0.1.dev9+gabc1234"
    assert orch.code_version_to_run(None) == "0.3.dev2+gfeed123"  # a new training
    assert orch.code_version_to_run(spec()) == "0.3.dev2+gfeed123"  # spec.json from before code versions
    monkeypatch.setattr(orch, "__version__", orch.UNKNOWN_CODE_VERSION)
    with pytest.raises(ValueError, match=r"installed without git metadata \(version 0.0\)"):
        orch.code_version_to_run(None)


def test_an_emr_step_runs_the_job_from_the_bundle_of_the_code_version():
    emr = orch.check_emr({"bundle_root": "s3://artifacts/hmm-em/bundles/", "deploy_mode": "client"})
    bundle = "s3://artifacts/hmm-em/bundles/0.1.dev9+gabc1234"
    assert orch.emr_step("iterate", emr, "s3://store-bucket/hmm", "t-1", "0.1.dev9+gabc1234", iteration=7) == {
        "Name": "hmm-em t-1 iteration 7",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "client",
                f"{bundle}/jobs/em_iteration.py",
                "--store",
                "s3://store-bucket/hmm",
                "--training-id",
                "t-1",
                "--iteration",
                "7",
            ],
        },
    }
    assert orch.emr_step("finalize", emr, "s3://store-bucket/hmm", "t-1", "0.1")["HadoopJarStep"]["Args"] == [
        "spark-submit",
        "--deploy-mode",
        "client",
        "s3://artifacts/hmm-em/bundles/0.1/jobs/finalize.py",
        "--store",
        "s3://store-bucket/hmm",
        "--training-id",
        "t-1",
    ]
    assert orch.step_name("t-1", "init") == "hmm-em t-1 init"
    with pytest.raises(ValueError, match=r"emr\.bundle_root"):
        orch.emr_step("finalize", {**emr, "bundle_root": "s3://x/ --conf evil"}, "s3://store-bucket/hmm", "t-1", "0.1")
    with pytest.raises(ValueError, match=r"code version '0.1 --conf evil' is invalid"):
        orch.emr_step("finalize", emr, "s3://store-bucket/hmm", "t-1", "0.1 --conf evil")


def test_the_cluster_runs_the_bundle_s_bootstrap_and_python_3_11():
    config = orch.job_flow_config(
        {
            "bundle_root": "s3://artifacts/bundles",
            "log_uri": "s3://logs-bucket/emr/",
            "subnet_id": "subnet-0123456789abcdef0",
            "core_instance_count": 5,
        },
        "t-1",
        "0.1.dev9+gabc1234",
    )
    bundle = "s3://artifacts/bundles/0.1.dev9+gabc1234"
    assert config == {
        "Name": "hmm-em t-1",
        "ReleaseLabel": "emr-7.13.0",
        "Applications": [{"Name": "Spark"}],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Configurations": [
                    {
                        "Classification": "export",
                        "Properties": {
                            "PYSPARK_PYTHON": "/usr/bin/python3.11",
                            "PYSPARK_DRIVER_PYTHON": "/usr/bin/python3.11",
                            "NUMBA_CACHE_DIR": "/var/cache/hmm-em/numba",
                        },
                    }
                ],
                "Properties": {},
            },
            {
                "Classification": "spark-defaults",
                "Properties": {
                    "spark.executorEnv.NUMBA_CACHE_DIR": "/var/cache/hmm-em/numba",
                    "spark.yarn.appMasterEnv.NUMBA_CACHE_DIR": "/var/cache/hmm-em/numba",
                },
            },
        ],
        "BootstrapActions": [
            {
                "Name": "hmm-em 0.1.dev9+gabc1234",
                "ScriptBootstrapAction": {"Path": f"{bundle}/bootstrap.sh", "Args": [bundle]},
            }
        ],
        "Instances": {
            "InstanceGroups": [
                {
                    "Name": "primary",
                    "Market": "ON_DEMAND",
                    "InstanceRole": "MASTER",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                },
                {
                    "Name": "core",
                    "Market": "ON_DEMAND",
                    "InstanceRole": "CORE",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 5,
                },
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
            "TerminationProtected": False,
            "Ec2SubnetId": "subnet-0123456789abcdef0",
        },
        "JobFlowRole": "EMR_EC2_DefaultRole",
        "ServiceRole": "EMR_DefaultRole",
        "VisibleToAllUsers": True,
        "StepConcurrencyLevel": 1,
        "AutoTerminationPolicy": {"IdleTimeout": 3600},
        "Tags": [
            {"Key": "hmm-em:training-id", "Value": "t-1"},
            {"Key": "hmm-em:code-version", "Value": "0.1.dev9+gabc1234"},
            {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"},
        ],
        "LogUri": "s3://logs-bucket/emr/",
    }
    minimal = orch.job_flow_config({"bundle_root": "s3://artifacts/bundles"}, "t-1", "0.1")
    assert "LogUri" not in minimal and "Ec2SubnetId" not in minimal["Instances"]
    json.dumps(minimal)  # it travels as XCom
    with pytest.raises(ValueError, match=r"param 'emr.bundle_root' is required"):
        orch.job_flow_config({}, "t-1", "0.1")


def test_a_step_is_reused_only_while_it_is_pending_running_or_completed():
    steps = [
        {"Id": "s-3", "Name": "hmm-em t iteration 2", "Status": {"State": "FAILED"}},
        {"Id": "s-2", "Name": "hmm-em t iteration 1", "Status": {"State": "RUNNING"}},
        {"Id": "s-1", "Name": "hmm-em t init", "Status": {"State": "COMPLETED"}},
    ]
    assert orch.reusable_step(steps, "hmm-em t iteration 1") == "s-2"
    assert orch.reusable_step(steps, "hmm-em t init") == "s-1"
    assert orch.reusable_step(steps, "hmm-em t iteration 2") is None
    assert orch.reusable_step(steps, "hmm-em t iteration 3") is None


def test_a_failed_step_is_described_with_emr_s_reason():
    failed = {
        "Id": "s-9",
        "Name": "hmm-em t iteration 4",
        "Status": {
            "State": "FAILED",
            "FailureDetails": {
                "Reason": "Unknown Error.",
                "Message": "Exception in thread main: OutOfMemoryError",
                "LogFile": "s3://logs/j-1/steps/s-9/stderr.gz",
            },
        },
    }
    assert orch.step_failure(failed) == (
        "EMR step s-9 (hmm-em t iteration 4) is FAILED: Unknown Error.; Exception in thread main: OutOfMemoryError "
        "(log: s3://logs/j-1/steps/s-9/stderr.gz)"
    )
    cancelled = {"Id": "s-8", "Name": "n", "Status": {"State": "CANCELLED", "StateChangeReason": {}}}
    assert orch.step_failure(cancelled) == "EMR step s-8 (n) is CANCELLED: no reason given"
    for state in ("PENDING", "RUNNING", "COMPLETED"):
        assert orch.step_failure({"Id": "s", "Name": "n", "Status": {"State": state}}) is None

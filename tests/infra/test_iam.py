"""The IAM statements of infra/cloudformation/hmm-em.yaml grant exactly the AWS calls the code makes.

Nothing here lists actions by hand. The real DAG runs in ``emr`` mode under ``dag.test()``, twice
(a new training to convergence, then a re-run of the same date that finds it done), against moto's
S3 and EMR APIs behind a recording layer (``aws_recording``). Each principal signs with its own
access key, so each request says who made it:

* the Airflow role: the workers' AWS credentials (the ``aws_default`` connection has none of its
  own, so the EMR hook uses the same ones): validate, create cluster, list/add/describe steps,
  COMMIT and spec reads, the finalize check, terminate;
* the role of the instance profile that RunJobFlow names: the jobs, run here with each step's own
  arguments (``hmm.training.cli.main``, local engine: Parquet read by pyarrow's S3 client, which the
  recording sees like boto3), plus what EMR does with that profile for the recorded requests
  (bootstrap script, step code, step logs under LogUri).

After the training, the real ``hmm_decode`` DAG runs twice in ``emr`` mode on the model the training
published (a decode into the default output under ``<store>/decodes/``, then a re-run that finds it
finished and creates no cluster): the Airflow role validates (model, data, output) and reads the
``_SUCCESS`` manifest; the instance role's decode job writes the output. In emr mode the Airflow
role writes nothing, so no local decode is recorded.

Every recorded request becomes the authorizations AWS makes for it; each role's statements must
allow all of its own and contain nothing they do not use (see ``iam_policy.check_role``).
The stack is the template resolved for its default parameters plus a bucket name; the DAG's
settings come from its outputs (store root, log URI, role and instance profile names).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.local.s3 import free_port
from tests.conftest import write_categorical_parquet
from tests.dags.helpers import conf, run_job_here, task_states
from tests.dags.test_decode_dag import loaded_decode_dag  # noqa: F401 (a fixture)
from tests.infra import aws_recording
from tests.infra.iam_policy import (
    ACCOUNT,
    REGION,
    Need,
    Stack,
    check_role,
    condition_holds,
    denying,
    listed,
    load_template,
)

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "infra" / "cloudformation" / "hmm-em.yaml"
TEMPLATE = load_template(TEMPLATE_PATH)
#: Roles with statements of their own; the EMR service role has only AWS's managed policy.
POLICY_ROLES = sorted(n for n, r in TEMPLATE["Resources"].items() if r["Properties"].get("Policies"))
BUCKETS = sorted(n for n, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::S3::Bucket")
SETUP_KEY = "AKIATESTSETUP"
DATE = datetime(2026, 3, 2, tzinfo=UTC)
TOL = 1000.0  # converges at iteration 2 on the test data
COMMIT_NAME = "COMMIT"


def key_of(role: str) -> str:
    """The access key a role's requests are signed with in this test."""
    return f"AKIA{role.upper()}"


def service_authorization() -> dict[str, Any]:
    """AWS's Service Authorization Reference as cfn-lint ships it: service -> actions and resource types."""
    import cfnlint

    with open(Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json") as file:
        return json.load(file)


def trusted_by(stack: Stack, principal: dict[str, str]) -> list[str]:
    """Roles whose trust policy lets ``principal`` (e.g. ``{"Service": "ec2.amazonaws.com"}``) assume them."""
    found = []
    for name in stack.resources_of("AWS::IAM::Role"):
        document = stack.resolve(stack.resources[name]["Properties"]["AssumeRolePolicyDocument"])
        if any(s["Principal"] == principal for s in document["Statement"]):
            found.append(name)
    return found


# ------------------------------------------------------------------ the recorded run


@contextlib.contextmanager
def acting_as(key: str) -> Iterator[None]:
    """Sign every new client's requests (boto3's default session, pyarrow) with ``key``."""
    import boto3

    saved = os.environ["AWS_ACCESS_KEY_ID"]
    os.environ["AWS_ACCESS_KEY_ID"] = key
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        os.environ["AWS_ACCESS_KEY_ID"] = saved
        boto3.DEFAULT_SESSION = None


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """The stack's buckets on a recording moto server, the data uploaded, the stack resolved."""
    import boto3

    bucket = f"hmm-em-iam-{uuid.uuid4().hex[:8]}"
    stack = Stack(TEMPLATE, {"BucketName": bucket, "AirflowPrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/workers"})
    recording = aws_recording.Recording()
    server = aws_recording.RecordingMotoServer(free_port(), recording)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        patch.setenv("AWS_ACCESS_KEY_ID", SETUP_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        setup = boto3.client("s3")
        for name in stack.resources_of("AWS::S3::Bucket"):
            setup.create_bucket(Bucket=stack.ref(name))
        local = tmp_path_factory.mktemp("iam") / "data"
        write_categorical_parquet(str(local), n_sequences=60)
        data_prefix = stack.parameters["DataPrefix"]
        for part in sorted(local.iterdir()):
            setup.upload_file(str(part), bucket, f"{data_prefix}/{part.name}")
        try:
            yield SimpleNamespace(
                stack=stack,
                recording=recording,
                endpoint=endpoint,
                store=stack.output("StoreRoot"),
                data=f"s3://{bucket}/{data_prefix}",
            )
        finally:
            server.stop()


def emr_settings(aws: SimpleNamespace) -> dict[str, Any]:
    """The DAG's ``emr`` param as a deployment of this stack sets it: names and URIs from the outputs."""
    from hmm import __version__
    from hmm.orchestration import decisions as orchestration

    stack = aws.stack
    (profile,) = stack.resources_of("AWS::IAM::InstanceProfile")
    (service_role,) = trusted_by(stack, {"Service": "elasticmapreduce.amazonaws.com"})
    settings = {
        "log_uri": stack.output("LogUri"),
        "job_flow_role": stack.ref(profile),
        "service_role": stack.ref(service_role),
    }
    # The code bundle lives in the store bucket under <store root>/bundle/<version>/.
    properties = orchestration.EMR_SCHEMA["properties"]
    if "bundle_root" in properties:
        settings["bundle_root"] = f"{aws.store}/bundle"
    else:
        settings["bundle_uri"] = f"{aws.store}/bundle/{__version__}"
        settings["bootstrap_uri"] = f"{aws.store}/bundle/{__version__}/bootstrap.sh"
    return settings


class FakeCluster:
    """EMR's part (moto never runs steps): a step is RUNNING once, then its job runs here.

    The job runs with the step's own arguments, signed as the role of the instance profile the
    cluster was created with (read from the recorded RunJobFlow request).
    """

    def __init__(self, aws: SimpleNamespace):
        self.aws = aws
        self.seen: set[str] = set()

    def advance(self, cluster_id: str) -> None:
        from moto.emr.models import emr_backends

        from hmm.orchestration import decisions as orchestration

        steps = emr_backends[ACCOUNT][REGION].clusters[cluster_id].steps
        step = next((s for s in steps if s.state in ("PENDING", "RUNNING")), None)
        if step is None:
            return
        if step.id not in self.seen:
            self.seen.add(step.id)
            step.state = "RUNNING"
            return
        flow = aws_recording.EmrView.of(self.aws.recording.requests).clusters[cluster_id]
        (role,) = self.aws.stack.profile_roles(flow["JobFlowRole"])
        script = next(Path(a).stem for a in step.args if a.endswith(".py"))
        engine = [] if script == orchestration.JOBS["finalize"] else ["--engine", "local"]
        with acting_as(key_of(role)):
            code = run_job_here([*step.args, *engine])
        step.state = "COMPLETED" if code == 0 else "FAILED"


def restore_defaults(dag: Any, defaults: dict[str, Any]) -> Any:
    """The DAG with its params' defaults, as tests/dags' ``dag`` fixture restores them."""
    for owner in [dag, *dag.tasks]:
        for key in owner.params:
            if key in defaults:
                owner.params.get_param(key).value = copy.deepcopy(defaults[key])
    return dag


def trained_id(aws: SimpleNamespace) -> str:
    """The one training the recorded hmm_training runs made (read with the setup key: not a role's call)."""
    from hmm.training.store import open_store

    assert os.environ["AWS_ACCESS_KEY_ID"] == SETUP_KEY
    (training_id,) = {key.split("/", 1)[0] for key in open_store(f"{aws.store}/trainings").list("")}
    return training_id


@pytest.fixture(scope="module")
def recorded(aws, loaded_dag, loaded_decode_dag):  # noqa: F811 (the fixture imported above)
    """Requests of four DAG runs in emr mode: a new training to convergence, a re-run of that date, then
    a decode with the published model and its re-run."""
    from hmm.orchestration import emr
    from hmm.orchestration import tasks as airflow_tasks

    dag = restore_defaults(*loaded_dag)
    decode_dag = restore_defaults(*loaded_decode_dag)
    (airflow_role,) = trusted_by(aws.stack, {"AWS": aws.stack.parameters["AirflowPrincipalArn"]})
    cluster = FakeCluster(aws)
    real_state = emr.step_state

    def step_state(client: Any, cluster_id: str, step_id: str) -> str:
        cluster.advance(cluster_id)
        return real_state(client, cluster_id, step_id)

    connection = {"conn_type": "aws", "extra": {"endpoint_url": aws.endpoint, "region_name": REGION}}
    run_conf = conf(aws.data, aws.store, tol=TOL, max_iter=10, mode="emr", engine="spark", emr=emr_settings(aws))
    states = []
    decode_states = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        patch.setattr(emr, "step_state", step_state)
        patch.setattr(airflow_tasks, "STEP_POLL_SECONDS", 0.01)
        with acting_as(key_of(airflow_role)):
            aws.recording.on = True
            try:
                for _ in range(2):
                    run = dag.test(logical_date=DATE, run_conf=run_conf)
                    states.append((run.state, task_states(run)))
            finally:
                aws.recording.on = False
        decode_conf = {"store": aws.store, "training_id": trained_id(aws), "mode": "emr", "emr": emr_settings(aws)}
        with acting_as(key_of(airflow_role)):
            aws.recording.on = True
            try:
                for _ in range(2):
                    run = decode_dag.test(run_conf=decode_conf)
                    decode_states.append((run.state, task_states(run)))
            finally:
                aws.recording.on = False
    return SimpleNamespace(
        requests=list(aws.recording.requests),
        states=states,
        decode_states=decode_states,
        airflow_role=airflow_role,
    )


@pytest.fixture(scope="module")
def needs(aws, recorded) -> list[Need]:
    stack = aws.stack
    emr = service_authorization()["elasticmapreduce"]["Actions"]

    def pass_role(field: str, name: str) -> list[str]:
        if field == "JobFlowRole":
            roles = stack.profile_roles(name)
            return [stack.get_att(r, "Arn") for r in roles] or [stack.role_arn(name)]
        return [stack.role_arn(name)]

    principals: dict[str, str | None] = {SETUP_KEY: None}
    principals.update({key_of(role): role for role in stack.resources_of("AWS::IAM::Role")})
    # A bundle's bootstrap script is the repository's infra/emr/<name> (infra/bundle.py copies it).
    flows = aws_recording.EmrView.of(recorded.requests).clusters.values()
    paths = {a["ScriptBootstrapAction"]["Path"] for flow in flows for a in flow.get("BootstrapActions", [])}
    scripts = {path: (REPO / "infra" / "emr" / path.rsplit("/", 1)[-1]).read_text() for path in paths}
    return aws_recording.needs(
        recorded.requests,
        principals,
        {action: spec.get("Resources", []) for action, spec in emr.items()},
        pass_role,
        stack.profile_roles,
        scripts,
    )


def summary(needs: list[Need]) -> str:
    lines = sorted({f"{n.principal:16} {n.action:34} {n.resource}" for n in needs})
    return "\n".join(lines)


def test_both_runs_succeed_and_every_principal_is_recorded(recorded, needs):
    (first, first_tasks), (second, second_tasks) = recorded.states
    assert (first, second) == ("success", "success"), (first_tasks, second_tasks)
    assert first_tasks["finalize"] == "success" and second_tasks["finalize"] == "skipped"
    assert first_tasks["terminate_cluster"] == second_tasks["terminate_cluster"] == "success"
    (decoded, decoded_tasks), (again, again_tasks) = recorded.decode_states
    assert (decoded, again) == ("success", "success"), (decoded_tasks, again_tasks)
    assert (decoded_tasks["create_cluster"], decoded_tasks["terminate_cluster"]) == ("success", "success")
    # The second decode run found the output finished: no cluster, nothing written.
    assert (again_tasks["decode"], again_tasks["create_cluster"]) == ("success", "skipped")
    principals = {n.principal for n in needs}
    assert principals == set(POLICY_ROLES), summary(needs)
    # The jobs' Parquet reads went through pyarrow's own S3 client, and were recorded too.
    assert any(n.action == "s3:ListBucket" and ("s3:prefix", "data/") in n.context for n in needs), summary(needs)


@pytest.mark.parametrize("role", POLICY_ROLES)
def test_the_role_grants_exactly_what_the_code_calls(aws, needs, role):
    problems = check_role(role, aws.stack.role_statements(role), needs)
    assert problems == [], "\n".join([*problems, "", "recorded:", summary(needs)])


@pytest.mark.parametrize("bucket", BUCKETS)
def test_no_bucket_policy_refuses_a_recorded_call(aws, needs, bucket):
    statements = aws.stack.bucket_statements(bucket)
    arn = aws.stack.get_att(bucket, "Arn")
    mine = [n for n in needs if n.resource == arn or n.resource.startswith(f"{arn}/")]
    assert mine and statements
    refused = [(n, [s["Sid"] for s in denying(statements, n)]) for n in mine if denying(statements, n)]
    assert refused == []


def store_writes(aws: SimpleNamespace, needs: list[Need], folder: str) -> list[Need]:
    """The recorded PUTs of objects under ``<store root>/<folder>/``."""
    bucket, _, prefix = aws.store.removeprefix("s3://").partition("/")
    root = f"arn:aws:s3:::{bucket}/{prefix}/{folder}/"
    return [n for n in needs if n.action == "s3:PutObject" and n.resource.startswith(root)]


def refuses_unconditional_puts(statements: list[dict[str, Any]], writes: list[Need]) -> None:
    """Each write was a put-if-absent the bucket allows; the same PUT without If-None-Match is refused."""
    assert {n.keys.get("s3:if-none-match") for n in writes} == {"*"}, [n.source for n in writes]
    for write in writes:
        attempt = Need("anyone", "s3:PutObject", write.resource, (("aws:SecureTransport", "true"),))
        assert [s["Sid"] for s in denying(statements, attempt)], write.resource
        assert denying(statements, write) == []


def test_training_objects_are_written_only_if_absent_and_markers_can_be_neither_replaced_nor_deleted(aws, needs):
    statements = aws.stack.bucket_statements("StoreBucket")
    writes = store_writes(aws, needs, "trainings")
    markers = [n for n in writes if n.resource.endswith((f"/{COMMIT_NAME}", "/PUBLISHED"))]
    assert {n.resource.rsplit("/", 1)[1] for n in markers} == {COMMIT_NAME, "PUBLISHED"}, summary(needs)
    # The index finalize writes per setup (what init_from "latest" lists): created once, by the cluster.
    index = store_writes(aws, needs, "setups")
    assert len(index) == 1 and index[0].resource.endswith(".json"), summary(needs)
    assert {n.principal for n in index} == {"EmrInstanceRole"}, summary(needs)
    refuses_unconditional_puts(statements, index)
    markers += index
    # Every write of a training's objects the code made was a put-if-absent, and the bucket refuses
    # any other kind, whoever asks...
    refuses_unconditional_puts(statements, writes)
    secure = {"aws:SecureTransport": "true"}
    for marker in markers:
        # ...and any deletion of a COMMIT or PUBLISHED marker, or of an index entry.
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
            attempt = Need("anyone", action, marker.resource, tuple(secure.items()))
            assert [s["Sid"] for s in denying(statements, attempt)], (action, marker.resource)


def test_decode_outputs_are_written_only_if_absent_by_the_cluster_alone(aws, recorded, needs):
    """The claim, every part and the manifest are created once (put-if-absent), by the instance role."""
    from hmm.orchestration.decisions import DECODES_PREFIX
    from hmm.training.decode import CLAIM_KEY, SUCCESS_KEY, part_key

    writes = store_writes(aws, needs, DECODES_PREFIX)
    names = {n.resource.rsplit("/", 1)[1] for n in writes}
    assert {CLAIM_KEY, SUCCESS_KEY, part_key(0)} <= names, summary(needs)
    assert all(n in (CLAIM_KEY, SUCCESS_KEY) or n.startswith("part-") for n in names), names
    (instance_role,) = aws.stack.profile_roles(aws.stack.ref(aws.stack.resources_of("AWS::IAM::InstanceProfile")[0]))
    assert {n.principal for n in writes} == {instance_role}
    assert not [n for n in needs if n.principal == recorded.airflow_role and n.action == "s3:PutObject"]
    refuses_unconditional_puts(aws.stack.bucket_statements("StoreBucket"), writes)


def test_store_access_logs_can_be_delivered_to_the_log_bucket(aws):
    stack = aws.stack
    logging = stack.resolve(stack.resources["StoreBucket"]["Properties"]["LoggingConfiguration"])
    target = f"arn:aws:s3:::{logging['DestinationBucketName']}/{logging['LogFilePrefix']}2026-03-02-00-00-00-X"
    delivery = Need(
        "logging.s3.amazonaws.com",
        "s3:PutObject",
        target,
        (
            ("aws:SecureTransport", "true"),
            ("aws:SourceArn", stack.get_att("StoreBucket", "Arn")),
            ("aws:SourceAccount", ACCOUNT),
        ),
    )
    (log_bucket,) = [
        n for n in stack.resources_of("AWS::S3::Bucket") if stack.ref(n) == logging["DestinationBucketName"]
    ]
    statements = stack.bucket_statements(log_bucket)
    allowed = [
        s
        for s in statements
        if s["Effect"] == "Allow"
        and s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
        and condition_holds(s.get("Condition"), delivery.keys)
        and not denying(statements, delivery)
    ]
    assert allowed, "S3 server access logging of the store bucket has no permission to write to the log bucket"
    other_bucket = Need(delivery.principal, delivery.action, target, (("aws:SourceArn", "arn:aws:s3:::other"),))
    assert not any(condition_holds(s.get("Condition"), other_bucket.keys) for s in allowed)


def test_a_wildcard_resource_only_for_actions_iam_cannot_scope(aws):
    """``Resource: "*"`` only where the Service Authorization Reference lists no resource type."""
    data = service_authorization()
    for role in POLICY_ROLES:
        for statement in aws.stack.role_statements(role):
            if "*" not in listed(statement["Resource"]):
                continue
            for action in listed(statement["Action"]):
                service, name = action.split(":")
                types = data[service]["Actions"][name.lower()].get("Resources", [])
                assert not types, f"{role} {statement['Sid']}: {action} can be scoped to {types}, not *"


def test_each_role_is_assumable_only_by_its_user(aws):
    stack = aws.stack
    assert trusted_by(stack, {"AWS": stack.parameters["AirflowPrincipalArn"]}) == ["AirflowRole"]
    (instance_role,) = stack.profile_roles(stack.ref(stack.resources_of("AWS::IAM::InstanceProfile")[0]))
    assert trusted_by(stack, {"Service": "ec2.amazonaws.com"}) == [instance_role]
    (service_role,) = trusted_by(stack, {"Service": "elasticmapreduce.amazonaws.com"})
    assert "Policies" not in stack.resources[service_role]["Properties"]


def test_clusters_carry_the_tag_the_emr_v2_service_policy_requires(aws, recorded):
    managed = aws.stack.resolve(aws.stack.resources["EmrServiceRole"]["Properties"]["ManagedPolicyArns"])
    assert any(arn.endswith("/AmazonEMRServicePolicy_v2") for arn in managed)
    flows = aws_recording.EmrView.of(recorded.requests).clusters.values()
    assert flows
    for flow in flows:
        assert {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"} in flow.get("Tags", [])


# ------------------------------------------------------------------ the comparison itself


POLICY = [
    {"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/store/*"},
    {
        "Sid": "List",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::b",
        "Condition": {"StringLike": {"s3:prefix": ["store/*", "data/*"]}},
    },
]


def test_a_missing_action_and_an_extra_one_are_both_reported_by_role_action_and_resource():
    needs = [
        Need("Worker", "s3:GetObject", "arn:aws:s3:::b/store/t/COMMIT", source="GetObject s3://b/store/t/COMMIT"),
        Need("Worker", "s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "store/t/"),), "ListObjectsV2"),
        Need("Worker", "s3:PutObject", "arn:aws:s3:::b/store/t/COMMIT", source="PutObject s3://b/store/t/COMMIT"),
    ]
    extra = {"Sid": "Data", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/data/*"}
    problems = check_role("Worker", [*POLICY, extra], needs)
    assert problems == [
        "Worker: missing s3:PutObject on arn:aws:s3:::b/store/t/COMMIT (needed by PutObject s3://b/store/t/COMMIT)",
        "Worker: extra condition value StringLike s3:prefix 'data/*' for s3:ListBucket on arn:aws:s3:::b "
        "(statement List): no recorded call needs it",
        "Worker: extra s3:GetObject on arn:aws:s3:::b/data/* (statement Data): no recorded call needs it",
    ]
    assert check_role("Worker", POLICY, needs[:1]) == [
        "Worker: extra s3:ListBucket on arn:aws:s3:::b if {'StringLike': {'s3:prefix': ['store/*', 'data/*']}} "
        "(statement List): no recorded call needs it"
    ]


def test_a_grant_reaching_a_folder_the_role_never_touches_is_too_broad():
    needs = [
        Need("Cluster", "s3:PutObject", "arn:aws:s3:::b/store/trainings/t/COMMIT"),
        Need("Cluster", "s3:GetObject", "arn:aws:s3:::b/store/bundle/1/bootstrap.sh"),
    ]
    broad = {"Sid": "Write", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/store/*"}
    read = {"Sid": "Code", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/store/bundle/*"}
    assert check_role("Cluster", [broad, read], needs) == [
        "Cluster: too broad: statement Write allows s3:PutObject on arn:aws:s3:::b/store/bundle/1/*, "
        "which the code never does as Cluster"
    ]
    narrow = {**broad, "Resource": "arn:aws:s3:::b/store/trainings/*"}
    assert check_role("Cluster", [narrow, read], needs) == []


def test_conditions_are_evaluated_as_iam_does():
    assert condition_holds({"StringLike": {"s3:prefix": ["a/*", "b/*"]}}, {"s3:prefix": "b/x"})
    assert not condition_holds({"StringLike": {"s3:prefix": "a/*"}}, {})  # an absent key never matches
    assert condition_holds({"StringLikeIfExists": {"s3:prefix": "a/*"}}, {})
    assert condition_holds({"Null": {"s3:if-none-match": "true"}}, {})
    assert not condition_holds({"Null": {"s3:if-none-match": "true"}}, {"s3:if-none-match": "*"})
    assert condition_holds({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "false"})
    with pytest.raises(NotImplementedError, match="ForAnyValue:StringLike"):
        condition_holds({"ForAnyValue:StringLike": {"aws:TagKeys": "x"}}, {})


def test_a_bootstrap_script_s_s3_commands_are_read_from_the_script():
    script = """#!/usr/bin/env bash
bundle=${1%/}
aws s3 cp --recursive --only-show-errors "$bundle/" "$workdir/" \\
  --exclude '*' --include 'hmm_em-*.whl' --include constraints.txt
aws s3 cp "${bundle}/extra.txt" /tmp/
"""
    assert aws_recording.script_s3_reads(script, ["s3://b/store/bundle/1.0/"]) == [
        ("s3://b/store/bundle/1.0/", "s3:ListBucket"),
        ("s3://b/store/bundle/1.0/hmm_em-*.whl", "s3:GetObject"),
        ("s3://b/store/bundle/1.0/constraints.txt", "s3:GetObject"),
        ("s3://b/store/bundle/1.0/extra.txt", "s3:GetObject"),
    ]
    with pytest.raises(aws_recording.UnknownRequestError, match="is not modelled"):
        aws_recording.script_s3_reads("aws s3 sync s3://b/x /tmp", [])


def test_the_operation_table_uses_real_actions_on_their_resource_types():
    """Each action the recording maps to exists in AWS's Service Authorization data, on that resource type."""
    data = service_authorization()
    s3 = [
        ("GET", "", {"list-type": "2", "prefix": "p/"}, "bucket"),
        ("GET", "", {}, "bucket"),
        ("GET", "", {"versions": ""}, "bucket"),
        ("GET", "", {"location": ""}, "bucket"),
        ("GET", "", {"uploads": ""}, "bucket"),
        ("HEAD", "", {}, "bucket"),
        ("GET", "k", {}, "object"),
        ("GET", "k", {"versionId": "v"}, "object"),
        ("HEAD", "k", {}, "object"),
        ("PUT", "k", {}, "object"),
        ("PUT", "k", {"partNumber": "1", "uploadId": "u"}, "object"),
        ("POST", "k", {"uploads": ""}, "object"),
        ("POST", "k", {"uploadId": "u"}, "object"),
        ("DELETE", "k", {"uploadId": "u"}, "object"),
        ("DELETE", "k", {}, "object"),
        ("DELETE", "k", {"versionId": "v"}, "object"),
    ]
    for method, key, query, kind in s3:
        _, action = aws_recording.s3_operation(method, key, query, {})
        service, name = action.split(":")
        assert kind in data[service]["Actions"][name.lower()]["Resources"], (method, key, query, action)
    with pytest.raises(aws_recording.UnknownRequestError, match="sub-resources=\\['tagging'\\]"):
        aws_recording.s3_operation("PUT", "k", {"tagging": ""}, {})
    assert data["iam"]["Actions"]["passrole"]["Resources"] == ["role"]

"""Every AWS request the code makes, as moto's server receives it, turned into IAM authorizations.

:class:`RecordingMotoServer` is moto's threaded server (a real S3 and EMR HTTP API on 127.0.0.1)
with a WSGI layer in front that records each request: the access key that signed it (which says
which principal made it), method, path, query, the few headers IAM conditions read, the status
and, for EMR's JSON API, both bodies. It sees boto3 (the store, Airflow's EMR hook) and pyarrow's
own S3 client (the local engine's Parquet reads) alike, and nothing is mocked: moto answers.

:func:`needs` maps each request to what AWS authorizes for it, following the "Permissions" section
of each operation in the S3 and EMR API references (the operation -> action table below; its
actions and resource types are checked against the Service Authorization data cfn-lint ships):

* S3 REST requests are classified by method, key and sub-resource; anything unknown raises;
* HeadObject/GetObject answered 404 also need ``s3:ListBucket`` on the bucket (without it S3
  answers 403, and the code treats only a 404 as "absent"); that check carries no ``s3:prefix``;
* EMR calls need ``elasticmapreduce:<Operation>`` on the cluster ARN (or ``*``), with the cluster's
  tags as ``elasticmapreduce:ResourceTag/...``; RunJobFlow also needs ``iam:PassRole`` of the
  service role and of the role in the instance profile it names.

:func:`cluster_needs` adds what EMR itself does with the cluster's instance profile for the
recorded requests: fetch each bootstrap script and run it (its ``aws s3 cp`` commands, read from the
script's text by :func:`script_s3_reads`), fetch the ``s3://`` code of each step (any ``s3://`` argument:
the application file, through EMRFS), and upload step logs under ``<LogUri><cluster id>/``.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from tests.infra.iam_policy import ACCOUNT, PARTITION, REGION, Need

#: Headers that IAM condition keys or the classification read.
HEADERS = ("Host", "Authorization", "X-Amz-Target", "If-None-Match", "If-Match", "X-Amz-Copy-Source")
#: HTTPS is what the SDKs use against AWS (only moto is plain HTTP): every request carries this key.
SECURE = (("aws:SecureTransport", "true"),)


@dataclass
class Request:
    key_id: str | None
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    body: bytes = b""
    response: bytes = b""

    @property
    def target(self) -> str | None:
        """EMR's JSON API: ``ElasticMapReduce.<Operation>``."""
        return self.headers.get("X-Amz-Target")


@dataclass
class Recording:
    requests: list[Request] = field(default_factory=list)
    on: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _key_id(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    credential = query.get("X-Amz-Credential")
    if credential:
        return credential.split("/")[0]
    match = re.search(r"Credential=([^/,\s]+)/", headers.get("Authorization", ""))
    return match.group(1) if match else None


def recording_app(app: Callable[..., Any], recording: Recording) -> Callable[..., Any]:
    def record(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not recording.on:
            return app(environ, start_response)
        headers = {
            h: environ[f"HTTP_{h.upper().replace('-', '_')}"]
            for h in HEADERS
            if f"HTTP_{h.upper().replace('-', '_')}" in environ
        }
        raw = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ["PATH_INFO"]
        parsed = urlparse(raw)
        query = dict(parse_qsl(parsed.query, keep_blank_values=True))
        request = Request(_key_id(headers, query), environ["REQUEST_METHOD"], unquote(parsed.path), query, headers)
        if request.target:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            request.body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(request.body)

        def start(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            request.status = int(status.split()[0])
            return start_response(status, response_headers, exc_info)

        with recording.lock:
            recording.requests.append(request)
        body = app(environ, start)
        if request.target:
            request.response = b"".join(body)
            return [request.response]
        return body

    return record


class RecordingMotoServer(ThreadedMotoServer):
    """moto's ThreadedMotoServer with the recording WSGI layer in front of the same app."""

    def __init__(self, port: int, recording: Recording):
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.recording = recording

    def _server_entry(self) -> None:
        app = recording_app(DomainDispatcherApplication(create_backend_app), self.recording)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


# ------------------------------------------------------------------ S3


class UnknownRequestError(ValueError):
    """A request this test cannot map to IAM actions: extend the table rather than ignore it."""


#: Query parameters that do not change the operation.
_PLAIN = {
    "prefix", "delimiter", "max-keys", "continuation-token", "encoding-type", "fetch-owner", "start-after",
    "list-type", "x-id", "versionId", "partNumber",
}  # fmt: skip


def s3_operation(method: str, key: str, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, str]:
    """(operation, IAM action) of an S3 REST request on a bucket (``key`` "") or an object."""
    subresources = {q for q in query if q not in _PLAIN and not q.startswith(("response-", "X-Amz-"))}
    versioned = "versionId" in query
    if not key:
        table = {
            ("GET", frozenset()): (
                "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects",
                "s3:ListBucket",
            ),
            ("GET", frozenset({"versions"})): ("ListObjectVersions", "s3:ListBucketVersions"),
            ("GET", frozenset({"location"})): ("GetBucketLocation", "s3:GetBucketLocation"),
            ("GET", frozenset({"uploads"})): ("ListMultipartUploads", "s3:ListBucketMultipartUploads"),
            ("HEAD", frozenset()): ("HeadBucket", "s3:ListBucket"),
        }
    else:
        copy = "X-Amz-Copy-Source" in headers
        table = {
            ("GET", frozenset()): ("GetObject", "s3:GetObjectVersion" if versioned else "s3:GetObject"),
            ("HEAD", frozenset()): ("HeadObject", "s3:GetObjectVersion" if versioned else "s3:GetObject"),
            ("PUT", frozenset()): ("CopyObject" if copy else "PutObject", "s3:PutObject"),
            ("PUT", frozenset({"uploadId"})): ("UploadPartCopy" if copy else "UploadPart", "s3:PutObject"),
            ("POST", frozenset({"uploads"})): ("CreateMultipartUpload", "s3:PutObject"),
            ("POST", frozenset({"uploadId"})): ("CompleteMultipartUpload", "s3:PutObject"),
            ("DELETE", frozenset({"uploadId"})): ("AbortMultipartUpload", "s3:AbortMultipartUpload"),
            ("DELETE", frozenset()): ("DeleteObject", "s3:DeleteObjectVersion" if versioned else "s3:DeleteObject"),
        }
    found = table.get((method, frozenset(subresources)))
    if found is None:
        raise UnknownRequestError(f"S3 {method} key={key!r} sub-resources={sorted(subresources)}: not in the table")
    return found


def _bucket_and_key(request: Request) -> tuple[str, str]:
    host = request.headers.get("Host", "").split(":")[0]
    path = request.path.lstrip("/")
    if host.endswith(".localhost") or (host and not re.fullmatch(r"[\d.]+|localhost", host)):
        return host.split(".")[0], path  # virtual-hosted style
    bucket, _, key = path.partition("/")
    return bucket, key


def s3_needs(principal: str, request: Request) -> list[Need]:
    bucket, key = _bucket_and_key(request)
    operation, action = s3_operation(request.method, key, request.query, request.headers)
    where = f"s3://{bucket}/{key or request.query.get('prefix', '')}"
    source = f"{operation} {where} -> {request.status}"
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    if not key:
        keys = {f"s3:{q}": request.query[q] for q in ("prefix", "delimiter", "max-keys") if q in request.query}
        return [Need(principal, action, bucket_arn, SECURE + tuple(sorted(keys.items())), source)]
    context = dict(SECURE)
    for header, name in (("If-None-Match", "s3:if-none-match"), ("If-Match", "s3:if-match")):
        if header in request.headers:
            context[name] = request.headers[header]
    result = [Need(principal, action, f"{bucket_arn}/{key}", tuple(sorted(context.items())), source)]
    if operation == "CopyObject":
        copied = unquote(request.headers["X-Amz-Copy-Source"]).lstrip("/").split("?")[0]
        result.append(Need(principal, "s3:GetObject", f"arn:{PARTITION}:s3:::{copied}", SECURE, source))
    if operation in ("GetObject", "HeadObject") and request.status == 404:
        result.append(Need(principal, "s3:ListBucket", bucket_arn, SECURE, f"{source} (a 404 needs ListBucket)"))
    return result


# ------------------------------------------------------------------ EMR


#: EMR request field naming the cluster(s), by operation.
_CLUSTER_FIELDS = ("ClusterId", "JobFlowId", "JobFlowIds")


def cluster_arn(cluster_id: str) -> str:
    return f"arn:{PARTITION}:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{cluster_id}"


def _tag_context(prefixes: Iterable[str], tags: Iterable[Mapping[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((f"{p}/{t['Key']}", t.get("Value", "")) for p in prefixes for t in tags))


@dataclass
class EmrView:
    """What the recorded EMR requests say: each cluster's RunJobFlow request and its added steps."""

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> RunJobFlow request
    steps: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # id -> [(step id, step)]

    @classmethod
    def of(cls, requests: Iterable[Request]) -> EmrView:
        view = cls()
        for request in requests:
            if request.status != 200 or not request.target:
                continue
            operation = request.target.split(".")[-1]
            body, answer = json.loads(request.body or b"{}"), json.loads(request.response or b"{}")
            if operation == "RunJobFlow":
                view.clusters[answer["JobFlowId"]] = body
            elif operation == "AddJobFlowSteps":
                added = list(zip(answer["StepIds"], body["Steps"], strict=True))
                view.steps.setdefault(body["JobFlowId"], []).extend(added)
        return view


def emr_needs(
    principal: str,
    request: Request,
    view: EmrView,
    resource_types: Mapping[str, list[str]],
    pass_role: Callable[[str, str], list[str]],
) -> list[Need]:
    """``resource_types``: EMR action (lower case) -> its resource types; ``pass_role(field, name)`` -> role ARNs."""
    operation = request.target.split(".")[-1]  # type: ignore[union-attr]
    action = f"elasticmapreduce:{operation}"
    if operation.lower() not in resource_types:
        raise UnknownRequestError(f"EMR operation {operation} is not an IAM action")
    body = json.loads(request.body or b"{}")
    source = f"EMR {operation} -> {request.status}"
    if operation == "RunJobFlow":
        context = SECURE + _tag_context(("aws:RequestTag", "elasticmapreduce:RequestTag"), body.get("Tags", []))
        result = [Need(principal, action, "*", context, source)]
        for name in ("ServiceRole", "JobFlowRole"):
            for role_arn in pass_role(name, body[name]):
                result.append(Need(principal, "iam:PassRole", role_arn, SECURE, f"{source} ({name} {body[name]})"))
        return result
    if "cluster" not in resource_types[operation.lower()]:
        return [Need(principal, action, "*", SECURE, source)]
    ids = [i for f in _CLUSTER_FIELDS for i in ([body[f]] if isinstance(body.get(f), str) else body.get(f, []))]
    if not ids:
        raise UnknownRequestError(f"EMR {operation} names no cluster: {sorted(body)}")
    result = []
    for cluster_id in ids:
        tags = view.clusters.get(cluster_id, {}).get("Tags", [])
        context = SECURE + _tag_context(("aws:ResourceTag", "elasticmapreduce:ResourceTag"), tags)
        result.append(Need(principal, action, cluster_arn(cluster_id), context, f"{source} on {cluster_id}"))
    return result


def _s3_object_arn(uri: str) -> str:
    parsed = urlparse(uri)
    return f"arn:{PARTITION}:s3:::{parsed.netloc}/{parsed.path.lstrip('/')}"


def step_code(step: Mapping[str, Any]) -> list[str]:
    """The ``s3://`` objects a step's command fetches before the application starts.

    The jar, and ``spark-submit``'s ``s3://`` arguments up to the application file (the first
    ``.py``): what follows are the application's own arguments, which the job reads itself.
    """
    hadoop = step["HadoopJarStep"]
    fetched = [hadoop["Jar"]] if hadoop["Jar"].startswith("s3://") else []
    for argument in hadoop.get("Args", []):
        if argument.startswith("s3://"):
            fetched.append(argument)
        if argument.endswith(".py"):
            break
    return fetched


def script_s3_reads(script: str, arguments: list[str]) -> list[tuple[str, str]]:
    """(URI or ``s3://bucket/prefix/`` to list, what) for each ``aws s3 cp`` of a bootstrap script.

    ``$1``/``$bundle``-style variables assigned from positional arguments are replaced by the
    action's ``Args``; a recursive copy lists its source prefix and reads each ``--include``d
    name. Any other ``aws`` command raises: model it here before the script uses it.
    """
    script = script.replace("\\\n", " ")
    values = {str(i + 1): a.rstrip("/") for i, a in enumerate(arguments)}
    for name, position in re.findall(r"^(\w+)=\$\{?(\d)(?:%/)?\}?$", script, re.MULTILINE):
        values[name] = values[position]
    reads = []
    for line in re.findall(r"^\s*(aws\s.*)$", script, re.MULTILINE):
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), line)
        words = shlex.split(expanded)
        if words[:3] != ["aws", "s3", "cp"]:
            raise UnknownRequestError(f"bootstrap command {line!r} is not modelled")
        source = next(w for w in words[3:] if w.startswith("s3://"))
        if "--recursive" not in words:
            reads.append((source, "s3:GetObject"))
            continue
        prefix = source.rstrip("/") + "/"
        reads.append((prefix, "s3:ListBucket"))
        includes = [words[i + 1] for i, w in enumerate(words) if w == "--include"]
        reads += [(prefix + pattern, "s3:GetObject") for pattern in includes]
    return reads


def cluster_needs(
    view: EmrView, instance_principals: Callable[[str], list[str]], scripts: Mapping[str, str] | None = None
) -> list[Need]:
    """What EMR does with each cluster's instance profile (``instance_principals(profile name)``).

    ``scripts``: bootstrap script URI -> its text (the repository's copy), for the S3 reads the
    script itself makes; a script not given raises.
    """
    result = []
    for cluster_id, flow in view.clusters.items():
        principals = instance_principals(flow["JobFlowRole"])
        reads = []
        lists = []
        for action in flow.get("BootstrapActions", []):
            bootstrap = action["ScriptBootstrapAction"]
            why = f"bootstrap action {action['Name']!r} of {cluster_id}"
            reads.append((bootstrap["Path"], why))
            if scripts is None or bootstrap["Path"] not in scripts:
                raise UnknownRequestError(f"{why} runs {bootstrap['Path']}: give its text to model its S3 reads")
            for uri, action_name in script_s3_reads(scripts[bootstrap["Path"]], bootstrap.get("Args", [])):
                (lists if action_name == "s3:ListBucket" else reads).append((uri, f"{why}: aws s3 cp {uri}"))
        for principal in principals:
            for uri, why in lists:
                parsed = urlparse(uri)
                context = (*SECURE, ("s3:prefix", parsed.path.lstrip("/")))
                result.append(Need(principal, "s3:ListBucket", f"arn:{PARTITION}:s3:::{parsed.netloc}", context, why))
        writes = []
        for step_id, step in view.steps.get(cluster_id, []):
            reads += [(uri, f"code of step {step['Name']!r} ({step_id})") for uri in step_code(step)]
            if flow.get("LogUri"):
                log = f"{flow['LogUri'].rstrip('/')}/{cluster_id}/steps/{step_id}/stderr.gz"
                writes.append((log, f"logs of step {step['Name']!r} ({step_id}) under LogUri"))
        for principal in principals:
            result += [Need(principal, "s3:GetObject", _s3_object_arn(u), SECURE, why) for u, why in reads]
            result += [Need(principal, "s3:PutObject", _s3_object_arn(u), SECURE, why) for u, why in writes]
    return result


def needs(
    requests: Iterable[Request],
    principals: Mapping[str, str | None],
    resource_types: Mapping[str, list[str]],
    pass_role: Callable[[str, str], list[str]],
    instance_principals: Callable[[str], list[str]],
    scripts: Mapping[str, str] | None = None,
) -> list[Need]:
    """Every authorization the recorded requests need. ``principals``: access key id -> role (None: ignore)."""
    requests = list(requests)
    view = EmrView.of(requests)
    result = []
    for request in requests:
        if request.key_id not in principals:
            raise UnknownRequestError(
                f"request signed by unknown key {request.key_id}: {request.method} {request.path}"
            )
        principal = principals[request.key_id]
        if principal is None:
            continue
        if request.target:
            result += emr_needs(principal, request, view, resource_types, pass_role)
        else:
            result += s3_needs(principal, request)
    return result + cluster_needs(view, instance_principals, scripts)

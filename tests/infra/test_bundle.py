"""The EMR code bundle: `make bundle`, `make upload` to a real S3 API (moto), the bootstrap
action and the operators' copy of the cluster config.

The bundle is built once per module by `make bundle` (about 20 s: pip builds the wheel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import boto3
import numpy as np
import pytest

import hmm
from hmm.orchestration import decisions as orchestration
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import CODE_VERSION, TrainingSpec
from hmm.training.store import open_store
from infra import bundle
from infra.emr import render
from tests.conftest import write_categorical_parquet

REPO = Path(__file__).resolve().parents[2]
JOBS = ("decode.py", "em_iteration.py", "finalize.py", "init_training.py")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """`make` in the repository, with the virtual environment running these tests."""
    venv = Path(sys.executable).parents[1]
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), f"VENV={venv}", *args], capture_output=True, text=True, timeout=600
    )


def built(out: Path) -> Path:
    """The one ``<version>/`` directory a build wrote under ``out``."""
    (version,) = [p for p in out.iterdir() if p.is_dir()]
    return version


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    done = make("bundle", f"BUNDLE_DIR={out}")
    assert done.returncode == 0, done.stderr
    return built(out)


def test_make_bundle_writes_everything_a_cluster_needs_and_a_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    version = bundle_dir.name
    wheel = f"hmm_em-{version}-py3-none-any.whl"
    assert sorted(manifest["files"]) == sorted(
        [wheel, "bootstrap.sh", "constraints.txt", *(f"jobs/{job}" for job in JOBS)]
    )
    assert sorted(p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()) == sorted(
        [*manifest["files"], "manifest.json"]
    )
    assert (manifest["name"], manifest["version"], manifest["wheel"]) == ("hmm-em", version, wheel)
    assert CODE_VERSION.match(version) and version != orchestration.UNKNOWN_CODE_VERSION
    assert manifest["git_commit"] == bundle.git("rev-parse", "HEAD")
    assert f"+g{manifest['git_commit'][:7]}" in version or "+" not in version  # the version names the commit
    assert isinstance(manifest["git_dirty"], bool)
    for name, digest in manifest["files"].items():
        assert bundle.sha256(bundle_dir / name) == digest, name

    for job in JOBS:
        assert (bundle_dir / "jobs" / job).read_bytes() == (REPO / "jobs" / job).read_bytes()
    assert (bundle_dir / "bootstrap.sh").read_bytes() == (REPO / "infra/emr/bootstrap.sh").read_bytes()
    assert (bundle_dir / "constraints.txt").read_bytes() == (REPO / "constraints.txt").read_bytes()

    # The wheel holds the hmm package with its recorded version: what the steps import on the nodes.
    with zipfile.ZipFile(bundle_dir / wheel) as wheel_zip:
        package = set(wheel_zip.namelist())
        assert {"hmm/__init__.py", "hmm/_version.py", "hmm/training/steps.py", "hmm/core/warmup.py"} <= package
        assert f"__version__ = version = '{version}'" in wheel_zip.read("hmm/_version.py").decode()
        metadata = wheel_zip.read(f"hmm_em-{version}.dist-info/METADATA").decode()
    assert f"\nVersion: {version}\n" in metadata
    assert "Provides-Extra: emr" in metadata


def test_the_version_comes_from_git_and_unknown_code_has_the_fallback_version():
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert settings["project"]["dynamic"] == ["version"]
    assert settings["tool"]["setuptools_scm"]["fallback_version"] == orchestration.UNKNOWN_CODE_VERSION
    assert CODE_VERSION.match(hmm.__version__)


def test_upload_puts_the_bundle_under_the_root_once_and_refuses_other_bytes_for_its_version(
    bundle_dir, s3_root, tmp_path
):
    local, version = bundle_dir, bundle_dir.name
    bucket, root = s3_root.removeprefix("s3://").split("/", 1)
    destination = f"{s3_root}/bundle/{version}/"
    names = [*json.loads((local / "manifest.json").read_text())["files"], "manifest.json"]
    assert bundle.upload(local, s3_root, allow_dirty=True) == [f"{destination}{name}" for name in names]

    def objects():
        s3 = boto3.client("s3")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{root}/bundle/")["Contents"]
        return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}

    uploaded = objects()
    assert uploaded == {f"{root}/bundle/{version}/{name}": (local / name).read_bytes() for name in names}

    # The same version again: nothing to do.
    assert bundle.upload(local, s3_root, allow_dirty=True) == []

    # Another build of the same version (uncommitted changes): refused before anything is written.
    other = tmp_path / "other" / version
    shutil.copytree(local, other)
    with (other / "jobs" / "finalize.py").open("a") as job:
        job.write("# changed\n")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["files"]["jobs/finalize.py"] = bundle.sha256(other / "jobs" / "finalize.py")
    (other / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(bundle.BundleError) as refused:
        bundle.upload(other, s3_root, allow_dirty=True)
    assert str(refused.value).startswith(
        f"{destination} already holds a different build of hmm-em {version} "
        "(['jobs/finalize.py', 'manifest.json'] differ); nothing was uploaded."
    )
    assert objects() == uploaded

    # A bundle of uncommitted changes goes to a development stack only when asked; an edited one never.
    manifest["git_dirty"] = True
    (other / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(bundle.BundleError, match=r"was built from uncommitted changes, so version .* does not name"):
        bundle.upload(other, f"s3://{bucket}/elsewhere")
    (other / "bootstrap.sh").write_bytes(b"not the built script")
    with pytest.raises(bundle.BundleError, match=r"was changed after it was built \(\['bootstrap.sh'\] differ"):
        bundle.upload(other, f"s3://{bucket}/elsewhere", allow_dirty=True)
    with pytest.raises(bundle.BundleError, match=r"upload root 'file:///tmp/x' must be s3://bucket"):
        bundle.upload(local, "file:///tmp/x", allow_dirty=True)
    assert objects() == uploaded


def test_make_upload_needs_a_root():
    done = make("upload", "ROOT=")
    assert done.returncode != 0
    assert "bundle: error: upload root '' must be s3://bucket[/prefix] (make upload ROOT=s3://bucket/prefix)" in (
        done.stderr
    )


def test_the_bootstrap_action_is_valid_bash():
    script = REPO / "infra/emr/bootstrap.sh"
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: " in usage.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_bootstrap_action_passes_shellcheck():
    checked = subprocess.run(["shellcheck", str(REPO / "infra/emr/bootstrap.sh")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_the_operators_copy_of_the_cluster_config_is_what_the_code_renders():
    for name, content in render.render().items():
        checked_in = (REPO / "infra/emr" / name).read_text()
        assert checked_in == content, f"infra/emr/{name} is stale: run `.venv/bin/python infra/emr/render.py`"
    cluster = json.loads((REPO / "infra/emr/cluster.json").read_text())
    assert cluster == orchestration.job_flow_config(
        {"bundle_root": "s3://your-bucket/hmm-em/bundle", "log_uri": "s3://your-bucket-logs/emr/"},
        "TRAINING_ID",
        "CODE_VERSION",
    )


@pytest.mark.slow
def test_the_bundle_installs_in_a_fresh_environment_and_its_jobs_train_on_s3(bundle_dir, s3_root, tmp_path):
    """A node's view of the bundle: a fresh virtual environment gets the wheel with the spark and
    emr extras under the bundle's constraints, the kernels are compiled into a numba cache as the
    bootstrap action does (python -m hmm.core.warmup), and spark-submit runs each job from the bundle
    with the installed package against data and a store on S3 (moto). The result equals the same
    training run in this process, and no job had to compile a kernel the warm-up missed.

    Slow, about 2.5 minutes: pip installs the stack from its cache (~40 s), the warm-up compiles
    every kernel (~30 s) and each job starts a JVM.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wheel = bundle_dir / json.loads((bundle_dir / "manifest.json").read_text())["wheel"]
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    pip_log = tmp_path / "pip.log"
    with pip_log.open("w") as log:
        installing = subprocess.Popen(
            [
                *pip,
                "install",
                "--quiet",
                "--no-compile",
                "-c",
                str(bundle_dir / "constraints.txt"),
                f"{wheel}[spark,emr]",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    # Meanwhile: the data on S3, and the reference training in this process.
    bucket = s3_root.removeprefix("s3://").split("/")[0]
    data_uri = upload_sequences(tmp_path / "data", bucket)
    spec = {"model": "categorical", "n_components": 3, "data": data_uri, "id_col": "id", "tol": 0.0, "max_iter": 1}
    steps.train(f"file://{tmp_path}/reference", "reference", TrainingSpec.from_dict(spec), engine="local")
    assert installing.wait(timeout=900) == 0, pip_log.read_text()[-3000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME", "VIRTUAL_ENV")}
    env.update(PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python), SPARK_LOCAL_IP="127.0.0.1")
    numba_cache = tmp_path / "numba-cache"
    env["NUMBA_CACHE_DIR"] = str(numba_cache)  # as the cluster config sets it (CLUSTER_NUMBA_CACHE)
    warmed = subprocess.run(
        [str(python), "-m", "hmm.core.warmup"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert warmed.returncode == 0, warmed.stderr[-3000:]
    cached = sorted(p.relative_to(numba_cache) for p in numba_cache.rglob("*"))
    assert any(p.suffix == ".nbc" for p in cached)

    def submit(job, *arguments):
        """The EMR step's command line on local[2]: the executors read the data from S3 with pyarrow."""
        command = [str(venv / "bin" / "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false"]
        command += [str(bundle_dir / "jobs" / f"{job}.py")]
        command += ["--store", s3_root, "--training-id", "bundled", *arguments]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{job}: {done.stderr[-3000:]}"
        return done.stdout

    assert "init: committed" in submit("init_training", "--spec", json.dumps(spec))
    assert "[committed]" in submit("em_iteration", "--iteration", "1")  # max_iter: converged
    assert "finalize: published" in submit("finalize")
    # Every kernel the jobs ran came from the warm-up's cache: none was compiled (and added) by a job.
    assert sorted(p.relative_to(numba_cache) for p in numba_cache.rglob("*")) == cached

    training = Training(open_store(s3_root), "bundled")
    version = bundle_dir.name
    assert training.spec().code_version == version
    assert {r["step"]["code_version"] for r in training.records()} == {version}
    assert {r["step"]["engine"] for r in training.records()} == {"spark"}
    assert training.published()["iteration"] == 1
    reference = Training(open_store(f"file://{tmp_path}/reference"), "reference")
    assert training.history() == reference.history()
    bundled, expected = training.load_params(1), reference.load_params(1)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        assert np.array_equal(getattr(bundled, name), getattr(expected, name)), name


def upload_sequences(directory: Path, bucket: str) -> str:
    """Small categorical sequences as Parquet on S3; returns their URI."""
    write_categorical_parquet(str(directory), n_sequences=60)
    s3 = boto3.client("s3")
    for part in sorted(directory.glob("*.parquet")):
        s3.upload_file(str(part), bucket, f"data/sequences/{part.name}")
    return f"s3://{bucket}/data/sequences/"

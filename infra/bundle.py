"""Build and upload the code bundle that a training's EMR steps run.

    python infra/bundle.py build  [--out dist/bundle]                       (make bundle)
    python infra/bundle.py upload --root s3://bucket/prefix [--allow-dirty]  (make upload ROOT=...)

A bundle is one code version's directory, ``<out>/<version>/`` (the layout the DAG expects is
named in :mod:`hmm.orchestration.decisions`)::

    hmm_em-<version>-py3-none-any.whl   the wheel; bootstrap.sh installs it on every node, steps import it
    jobs/<job>.py                       the spark-submit entry points
    bootstrap.sh                        the cluster's bootstrap action (infra/emr/)
    constraints.txt                     the pinned versions the wheel is installed with
    manifest.json                       version, git commit, SHA-256 of every other file

``upload`` builds the bundle and copies it to ``<root>/bundle/<version>/``, where EMR mode looks
for it by default (``emr.bundle_root`` empty: ``<store>/bundle``). A version's bundle never
changes once uploaded, since trainings that recorded the version keep running it: uploading a
version that is there with the same bytes does nothing, with other bytes it is refused. Builds
are reproducible (file times are the commit's time), so rebuilding a commit gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from hmm.orchestration.decisions import (
    BOOTSTRAP_SCRIPT,
    BUNDLE_JOBS,
    BUNDLE_PREFIX,
    UNKNOWN_CODE_VERSION,
    check_code_version,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "dist" / "bundle"
MANIFEST = "manifest.json"
CONSTRAINTS = "constraints.txt"


class BundleError(RuntimeError):
    """A bundle cannot be built or uploaded as asked; the message says why and what to do."""


# ------------------------------------------------------------------ build


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        raise BundleError(f"{REPO} must be a git checkout to build a bundle (git {' '.join(args)}: {detail})") from None
    return done.stdout.strip()


def build(out: Path = DEFAULT_OUT) -> Path:
    """Build the bundle of the checkout's code under ``out/<version>/``; returns that directory."""
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    commit_time = git("log", "-1", "--format=%ct")
    with tempfile.TemporaryDirectory(prefix="hmm-em-bundle-") as scratch:
        wheel = build_wheel(Path(scratch), commit_time)
        version = check_code_version(wheel.name.split("-")[1])
        if version == UNKNOWN_CODE_VERSION:
            raise BundleError(f"the wheel has the version of unknown code ({version}): is setuptools-scm missing?")
        target = out / version
        if target.exists():
            shutil.rmtree(target)
        (target / BUNDLE_JOBS).mkdir(parents=True)
        shutil.copyfile(wheel, target / wheel.name)
    for job in sorted((REPO / "jobs").glob("*.py")):
        shutil.copyfile(job, target / BUNDLE_JOBS / job.name)
    shutil.copyfile(REPO / "infra" / "emr" / BOOTSTRAP_SCRIPT, target / BOOTSTRAP_SCRIPT)
    shutil.copyfile(REPO / CONSTRAINTS, target / CONSTRAINTS)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    manifest = {
        "name": "hmm-em",
        "version": version,
        "git_commit": commit,
        "git_dirty": dirty,  # uncommitted changes: the version names the commit, not all of the code
        "wheel": wheel.name,
        "files": {name: sha256(target / name) for name in files},
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


def build_wheel(scratch: Path, commit_time: str) -> Path:
    """``pip wheel`` of the checkout (setuptools-scm versions it), built outside the source tree."""
    # setuptools would reuse a build/ directory in the checkout, stale modules included.
    config = scratch / "setup.cfg"
    config.write_text(f"[build]\nbuild_base = {scratch / 'build'}\n[egg_info]\negg_base = {scratch}\n")
    env = {**os.environ, "DIST_EXTRA_CONFIG": str(config), "SOURCE_DATE_EPOCH": commit_time}
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--quiet"]
    # setuptools-scm writes hmm/_version.py into the checkout while it builds: put back what was there,
    # so the installed (editable) hmm keeps reporting the version it was installed with, as every
    # process that imported it already does.
    version_file = REPO / "hmm" / "_version.py"
    before = version_file.read_bytes() if version_file.exists() else None
    try:
        done = subprocess.run(
            [*command, "--wheel-dir", str(scratch / "wheel"), str(REPO)], env=env, capture_output=True, text=True
        )
    finally:
        if before is not None:
            version_file.write_bytes(before)
    if done.returncode != 0:
        raise BundleError(f"pip wheel failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    wheels = list((scratch / "wheel").glob("hmm_em-*.whl"))
    if len(wheels) != 1:
        raise BundleError(f"pip wheel made {[w.name for w in wheels]}, not one hmm_em wheel")
    return wheels[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The bundle's manifest, after checking that every file it lists has the bytes it records."""
    try:
        manifest: dict[str, Any] = json.loads((bundle / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"{bundle} is not a bundle (make bundle builds one): {error}") from None
    changed = [name for name, digest in manifest["files"].items() if sha256(bundle / name) != digest]
    if changed:
        raise BundleError(f"{bundle} was changed after it was built ({changed} differ from {MANIFEST}): rebuild it")
    return manifest


# ------------------------------------------------------------------ upload


def upload(bundle: Path, root: str, allow_dirty: bool = False, client: Any = None) -> list[str]:
    """Copy ``bundle`` to ``<root>/bundle/<version>/``; returns the URIs written (none: it was there).

    Refuses, before writing anything, a bundle whose version at ``root`` holds other bytes, and
    a bundle of uncommitted changes unless ``allow_dirty``. The manifest goes last, so a bundle
    with a manifest is complete.
    """
    manifest = read_manifest(bundle)
    version = manifest["version"]
    if manifest["git_dirty"] and not allow_dirty:
        raise BundleError(
            f"{bundle} was built from uncommitted changes, so version {version} does not name its code: "
            "commit them and rebuild (or allow a dirty bundle, for a development stack only)"
        )
    bucket, root_prefix = parse_root(root)
    prefix = "/".join(p for p in (root_prefix, BUNDLE_PREFIX, version) if p)
    destination = f"s3://{bucket}/{prefix}/"
    if client is None:
        import boto3

        client = boto3.client("s3")

    names = [*manifest["files"], MANIFEST]  # the manifest last
    present = {name: remote_bytes(client, bucket, f"{prefix}/{name}") for name in names}
    different = [name for name, data in present.items() if data is not None and data != (bundle / name).read_bytes()]
    if different:
        raise BundleError(
            f"{destination} already holds a different build of hmm-em {version} ({different} differ); nothing was "
            "uploaded. A version's bundle never changes, since trainings that recorded it run it: "
            "commit your changes (a new commit is a new version) and upload that"
        )
    written = []
    for name in names:
        if present[name] is None:
            put_if_absent(client, bucket, f"{prefix}/{name}", (bundle / name).read_bytes(), destination)
            written.append(f"{destination}{name}")
    return written


def parse_root(root: str) -> tuple[str, str]:
    """(bucket, prefix) of an ``s3://bucket[/prefix]`` root."""
    parsed = urlparse(root)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise BundleError(f"upload root {root!r} must be s3://bucket[/prefix] (make upload ROOT=s3://bucket/prefix)")
    return parsed.netloc, parsed.path.strip("/")


def remote_bytes(client: Any, bucket: str, key: str) -> bytes | None:
    try:
        data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return data


def put_if_absent(client: Any, bucket: str, key: str, data: bytes, destination: str) -> None:
    """Write ``key`` unless it exists; an upload racing this one must have written the same bytes."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
            raise
        if remote_bytes(client, bucket, key) != data:
            raise BundleError(f"another upload wrote different bytes to {destination} at the same time") from None


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/bundle.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="build the bundle of this checkout under OUT/<version>/")
    upload_command = commands.add_parser("upload", help="build the bundle and upload it to ROOT/bundle/<version>/")
    for command in (build_command, upload_command):
        command.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where bundles are built (dist/bundle)")
    upload_command.add_argument("--root", required=True, help="s3://bucket/prefix: the store root of the stack")
    upload_command.add_argument(
        "--allow-dirty", action="store_true", help="upload a bundle of uncommitted changes (development stacks)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "upload":
            parse_root(args.root)  # before the build, which takes a while
        bundle = build(args.out)
        manifest = read_manifest(bundle)
        state = " with uncommitted changes" if manifest["git_dirty"] else ""
        print(f"built {bundle}: hmm-em {manifest['version']}, commit {manifest['git_commit'][:12]}{state}")
        if args.command == "upload":
            written = upload(bundle, args.root, allow_dirty=args.allow_dirty)
            destination = f"{args.root.rstrip('/')}/{BUNDLE_PREFIX}/{manifest['version']}/"
            if written:
                print(f"uploaded {len(written)} files to {destination}")
            else:
                print(f"{destination} holds this bundle already: nothing to upload")
    except BundleError as error:
        print(f"bundle: error: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:  # credentials, bucket, network
        print(f"bundle: error: upload to {args.root} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

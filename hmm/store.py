"""Object storage behind one small interface: a ``file://`` directory or an ``s3://`` prefix.

Everything a training keeps (spec, parameters, commit records, the published
model) goes through a :class:`Store`. Two operations carry the commit
protocol:

* ``write`` replaces an object atomically: a reader sees the old bytes or the
  new bytes, never a mix.
* ``create_if_absent`` creates an object only if no object has that key, and
  says whether it did. On S3 this is a conditional write (``If-None-Match:
  *``); on a file system a hard link of a fully written temporary file, which
  fails atomically if the name exists. Two writers racing for the same key:
  exactly one wins, the other changes nothing.

S3 endpoint, region and credentials come from the usual AWS configuration
(environment, profile, instance role), so a local S3 API such as a moto
server works unchanged through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

SCHEMES = ("file", "s3")
_UMASK = os.umask(0)
os.umask(_UMASK)


class StoreError(RuntimeError):
    """A storage operation failed for a reason the caller cannot fix by retrying the same call."""


class MissingObjectError(StoreError, FileNotFoundError):
    """The object does not exist."""


class InvalidURIError(ValueError):
    """A store or data URI that is not ``file://`` or ``s3://`` or is malformed."""


def check_uri(uri: str, field: str = "uri") -> str:
    """The URI if its scheme is file or s3 and it names a path; else InvalidURIError."""
    if not isinstance(uri, str) or not uri:
        raise InvalidURIError(f"{field} must be a non-empty string, got {uri!r}")
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        raise InvalidURIError(f"{field} {uri!r} has scheme {parsed.scheme!r}; only file:// and s3:// are allowed")
    if any(ord(c) < 32 for c in uri):
        raise InvalidURIError(f"{field} {uri!r} contains control characters")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise InvalidURIError(f"{field} {uri!r} must be an absolute file:///path")
    elif not parsed.netloc or len(parsed.netloc) < 3:
        raise InvalidURIError(f"{field} {uri!r} must name a bucket: s3://bucket/prefix")
    if ".." in Path(parsed.path).parts:
        raise InvalidURIError(f"{field} {uri!r} must not contain '..'")
    return uri


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid object key {key!r}")
    return key


class Store(ABC):
    """Keys are relative, '/'-separated paths under the store's root URI."""

    uri: str

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def create_if_absent(self, key: str, data: bytes) -> bool: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in '/'), sorted."""


class FileStore(Store):
    def __init__(self, uri: str):
        self.uri = check_uri(uri)
        self.root = Path(urlparse(uri).path)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise MissingObjectError(f"{self.url(key)} does not exist") from None

    def _temporary(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp makes 0600; stored objects get the usual mode
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        return Path(name)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._temporary(path, data), path)

    def create_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        temporary = self._temporary(path, data)
        try:
            os.link(temporary, path)
            return True
        except FileExistsError:
            return False
        finally:
            temporary.unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )


class S3Store(Store):
    def __init__(self, uri: str, client: Any = None):
        self.uri = check_uri(uri)
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise MissingObjectError(f"{self.url(key)} does not exist") from None
        return bytes(response["Body"].read())

    def write(self, key: str, data: bytes) -> None:
        # A PUT replaces an S3 object atomically.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as error:
            # 412: the key exists; 409: a concurrent conditional write won the race.
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)


def open_store(uri: str) -> Store:
    """The store for a ``file:///path`` or ``s3://bucket/prefix`` root."""
    scheme = urlparse(check_uri(uri)).scheme
    return FileStore(uri) if scheme == "file" else S3Store(uri)

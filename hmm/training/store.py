"""Object storage behind one small interface: a ``file://`` directory or an ``s3://`` prefix.

Everything a training keeps (spec, parameters, commit records, the published
model) goes through a :class:`Store`, and is created once, never replaced:

* ``create_if_absent`` creates an object only if no object has that key, and
  says whether it did. On S3 this is a conditional write (``If-None-Match:
  *``); on a file system a hard link of a fully written temporary file, which
  fails atomically if the name exists. Two writers racing for the same key:
  exactly one wins, the other changes nothing. This is the commit protocol's
  only write.
* ``write`` replaces an object atomically (a reader sees the old bytes or the
  new bytes, never a mix); trainings do not use it (the store bucket's policy
  refuses it under ``trainings/``), it stays for other callers and tests.

Failures are one-line :class:`StoreError` s naming the object: missing
(:class:`MissingObjectError`), or a store that cannot be used now
(:class:`StoreUnavailableError`).

S3 endpoint, region and credentials come from the usual AWS configuration
(environment, profile, instance role), so a local S3 API such as a moto
server works unchanged through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hmm.distributed.uris import URI_PATH, check_uri

_UMASK = os.umask(0)
os.umask(_UMASK)


class StoreError(RuntimeError):
    """A storage operation failed; the message names the object and the cause (a broken store if no subclass)."""


class MissingObjectError(StoreError, FileNotFoundError):
    """The object does not exist."""


class StoreUnavailableError(StoreError):
    """The store could not be used: endpoint down, credentials missing or refused, disk full, read-only.

    Nothing was written (or a partial temporary was removed); the same call may succeed once the
    cause is fixed.
    """


def _check_key(key: str) -> str:
    parts = key.split("/")
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or not URI_PATH.fullmatch(key)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise StoreError(f"invalid object key {key!r}")
    return key


class Store(ABC):
    """Objects under a root URI; keys are relative, '/'-separated paths.

    A key is plain: no leading '/', no empty, ``.`` or ``..`` segments, only the characters a
    URI path may hold here (:data:`hmm.distributed.uris.URI_PATH`); any other raises
    :class:`StoreError`. Every method raises :class:`StoreUnavailableError` when the store
    cannot be used (endpoint down, credentials, disk full, read-only) and :class:`StoreError`
    for a broken store (e.g. a directory where an object should be).
    """

    uri: str

    def url(self, key: str) -> str:
        """The object's URI: ``<root>/<key>``, as messages and published results name it."""
        return f"{self.uri.rstrip('/')}/{key}"

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The object's bytes.

        Raises
        ------
        MissingObjectError
            No object has this key.
        """

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Create or replace the object, atomically: a reader sees the old bytes or the new ones."""

    @abstractmethod
    def create_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object unless one exists, atomically, even against concurrent writers.

        Returns
        -------
        bool
            True if this call created it; False if an object was there (it is left as it was).
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object has this key."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in '/'), sorted.

        Parameters
        ----------
        prefix : str
            A key prefix; ``""`` lists the whole store.

        Returns
        -------
        list of str
            Keys relative to the store's root; an empty list when nothing is under ``prefix``.
        """


@contextmanager
def _os_errors(url: str, action: str) -> Iterator[None]:
    """OSErrors of a file store as one line naming the object and the cause."""
    try:
        yield
    except MissingObjectError:
        raise
    except FileNotFoundError:
        raise MissingObjectError(f"{url} does not exist") from None
    except OSError as error:
        if error.errno == errno.ELOOP:  # a link loop is a broken store, not an unavailable one
            raise StoreError(f"cannot {action} {url}: a symbolic link loop") from None
        cause = error.strerror or str(error)
        name = errno.errorcode.get(error.errno or 0)
        raise StoreUnavailableError(f"cannot {action} {url}: {cause}" + (f" ({name})" if name else "")) from None


class FileStore(Store):
    """A store in a directory (``file:///path``): atomic writes by rename, create-if-absent by hard link.

    Objects are written to a temporary next to them, synced, then renamed (or linked) into place,
    so a crash never leaves a partial object. Names starting with ``.`` are not listed.
    """

    def __init__(self, uri: str):
        self.uri = check_uri(uri)
        self.root = Path(urlparse(uri).path)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def read(self, key: str) -> bytes:
        path = self._path(key)
        with _os_errors(self.url(key), "read"):
            if path.exists() and not path.is_file():
                raise StoreError(f"cannot read {self.url(key)}: not a regular file")
            return path.read_bytes()

    def _temporary(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp makes 0600; stored objects get the usual mode
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            # A full disk or a kill must not leave a partial temporary behind.
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with _os_errors(self.url(key), "write"):
            temporary = self._temporary(path, data)
            try:
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise

    def create_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with _os_errors(self.url(key), "write"):
            temporary = self._temporary(path, data)
            try:
                os.link(temporary, path)
                return True
            except FileExistsError:
                return False
            finally:
                temporary.unlink()

    def exists(self, key: str) -> bool:
        path = self._path(key)
        with _os_errors(self.url(key), "look up"):
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                return False
            if not stat.S_ISREG(mode):
                raise StoreError(f"cannot look up {self.url(key)}: not a regular file")
            return True

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        with _os_errors(self.url(prefix) if prefix else self.uri, "list"):
            if not base.is_dir():
                return []
            # os.walk does not follow directory links: a link loop cannot make the listing endless.
            keys = []
            for folder, _, names in os.walk(base):
                for name in names:
                    path = Path(folder, name)
                    if not name.startswith(".") and path.is_file():
                        keys.append(str(path.relative_to(self.root)))
            return sorted(keys)


#: S3 error codes that mean "no such object".
_S3_MISSING = frozenset(("404", "NoSuchKey", "NotFound"))


class S3Store(Store):
    """A store under an S3 prefix (``s3://bucket/prefix``); needs boto3 (the ``aws`` extra).

    A PUT replaces an object atomically; create-if-absent is a conditional PUT (``If-None-Match: *``).
    ``client``: a boto3 S3 client; default ``boto3.client("s3")`` (credentials, region and
    endpoint from the environment).
    """

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

    @contextmanager
    def _errors(self, key: str, action: str) -> Iterator[None]:
        """botocore's errors as one line naming the object: missing, or the store unavailable."""
        from botocore.exceptions import BotoCoreError, ClientError

        url = self.url(key) if key else self.uri
        try:
            yield
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", ""))
            if code in _S3_MISSING:
                raise MissingObjectError(f"{url} does not exist") from None
            message = details.get("Message") or code
            raise StoreUnavailableError(f"cannot {action} {url}: {code}: {message}") from None
        except BotoCoreError as error:  # endpoint down, no credentials, invalid parameters, ...
            raise StoreUnavailableError(f"cannot {action} {url}: {error}") from None

    def read(self, key: str) -> bytes:
        with self._errors(key, "read"):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(response["Body"].read())

    def write(self, key: str, data: bytes) -> None:
        # A PUT replaces an S3 object atomically.
        with self._errors(key, "write"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with self._errors(key, "write"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
                return True
            except ClientError as error:
                # 412: the key exists; 409: a concurrent conditional write won the race.
                if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key, "look up"):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
        except MissingObjectError:
            return False

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        with self._errors(prefix, "list"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)


def open_store(uri: str) -> Store:
    """The store for a ``file:///path`` or ``s3://bucket/prefix`` root.

    Parameters
    ----------
    uri : str
        The store's root URI.

    Returns
    -------
    Store
        A :class:`FileStore` or an :class:`S3Store`. Nothing is created or contacted yet.

    Raises
    ------
    InvalidURIError
        ``uri`` is not one :func:`hmm.distributed.uris.check_uri` accepts.
    """
    scheme = urlparse(check_uri(uri)).scheme
    return FileStore(uri) if scheme == "file" else S3Store(uri)

"""Data and store URIs: plain ``file:///abs/path`` and ``s3://bucket/prefix``, nothing else.

The distributed layer reads data at such URIs and the training layer keeps its store at one;
both check them here, before a URI reaches a path, an S3 key or Spark.
"""

from __future__ import annotations

import re

SCHEMES = ("file", "s3")
#: The longest URI accepted: S3 keys are at most 1,024 bytes, and a root leaves room for the keys below it.
MAX_URI_LENGTH = 512
#: S3's bucket naming rules (general purpose buckets): 3-63 lowercase letters, digits, '.' and '-',
#: starting and ending with a letter or digit.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: Characters a root URI's path may hold: no '#', '?', ';', '%', spaces or controls, which a URL parser
#: would split off or decode while printed URLs kept them.
URI_PATH = re.compile(r"[A-Za-z0-9/_.+=@,:~-]*")


class InvalidURIError(ValueError):
    """A store or data URI that is not ``file://`` or ``s3://`` or is malformed."""


def brief(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: error messages quote hostile input, not all of it.

    Parameters
    ----------
    value : object
        What to quote.
    limit : int, default=80
        The longest result; a longer repr ends with ``[...]``.

    Returns
    -------
    str
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}[...]"


def check_uri(uri: str, field: str = "uri") -> str:
    """The URI if its scheme is file or s3 and it names a path; else InvalidURIError.

    Only plain absolute paths are accepted: no query, fragment or parameters (``?``, ``#``,
    ``;``), no percent-escapes, no ``.`` or ``..`` segments, no empty segments, at most
    :data:`MAX_URI_LENGTH` characters, and for S3 a bucket name that S3 accepts.

    Parameters
    ----------
    uri : str
        The URI to check.
    field : str, default="uri"
        How the error names it, e.g. ``"spec field 'data'"``.

    Returns
    -------
    str
        ``uri``, unchanged.

    Raises
    ------
    InvalidURIError
        The rule ``uri`` breaks, after ``field`` and the (cut) URI.
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidURIError(f"{field} must be a non-empty string, got {brief(uri)}")
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidURIError(f"{field} is {len(uri)} characters long; at most {MAX_URI_LENGTH} are allowed")
    if not uri.isascii() or any(ord(c) < 33 or ord(c) == 127 for c in uri):
        raise InvalidURIError(f"{field} {brief(uri)} contains spaces, control or non-ASCII characters")
    scheme, separator, rest = uri.partition("://")
    if not separator:
        scheme, rest = "", uri
    if scheme not in SCHEMES:
        raise InvalidURIError(f"{field} {brief(uri)} has scheme {scheme!r}; only file:// and s3:// are allowed")
    netloc, _, path = rest.partition("/")
    path = "/" + path
    if not URI_PATH.fullmatch(path):
        bad = next(c for c in path if not URI_PATH.fullmatch(c))
        raise InvalidURIError(
            f"{field} {brief(uri)} contains {bad!r}; "
            "a URI here is a plain path (no query, fragment, parameters or escapes)"
        )
    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise InvalidURIError(f"{field} {brief(uri)} must be an absolute file:///path")
    elif not BUCKET_NAME.fullmatch(netloc) or ".." in netloc:
        raise InvalidURIError(
            f"{field} {brief(uri)} must name a bucket as S3 does (s3://bucket/prefix: 3-63 lowercase letters, "
            "digits, '.' and '-')"
        )
    segments = path.strip("/").split("/") if path.strip("/") else []
    if any(part in ("", ".", "..") for part in segments):
        raise InvalidURIError(f"{field} {brief(uri)} must not contain '..', '.' or empty path segments")
    return uri

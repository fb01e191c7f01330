"""An executor-local cache of decoded splits: Arrow IPC files that later reads memory-map.

An EM training reads the same Parquet splits every iteration, and decoding
Parquet is a fixed share of each iteration's CPU (~13% of the workers' time at
1M categorical sequences; an uncompressed Arrow IPC copy reads in a fifteenth
of that). The first time a process reads a split, :func:`cached_batches`
writes the batches it yields to an uncompressed Arrow IPC file in a local
folder; a later read of the same split on the same machine (the next
iteration on ``local[*]``, the Python workers of a Spark Connect server that
live from step to step, an EMR node that gets the same split again)
memory-maps that file instead: the same rows in the same batches (integer
symbols possibly narrowed, below), so every record is bit-identical with and
without the cache.

Configuration: the environment variable :data:`ENVIRONMENT`
(``HMM_EM_SPLIT_CACHE``) of the process that reads (a Spark executor's own):
``off`` (or ``0``, ``false``, ``no``) turns the cache off; a path names the
folder; unset or empty, the folder is ``hmm-em-split-cache-<uid>`` in
:func:`tempfile.gettempdir` (not ``SPARK_LOCAL_DIRS``: YARN deletes those when
each application ends, and an EMR training is one application per iteration).
The folder is created with mode 0700 and used only if it is a real directory
(not a symbolic link) owned by this user that no one else can write;
otherwise reads go to Parquet, as they do whenever anything about the cache
fails.

The integer symbols of a categorical model without named symbols are kept
as ``list<uint8>`` when the split's Parquet statistics put them all in
[0, 255] (:func:`hmm.distributed.sources.read_split`'s ``symbols``): the
model widens them to int64 whatever their type, so its records are the same,
from a quarter of the bytes (1M sequences of 100 symbols: 100 MB).

Rules that keep it safe:

* The key is everything that identifies the batches read: the file system,
  the file's path, its size, modification time (and on a local disk its
  device, inode and change time), the row groups, the columns, the rows and
  bytes per batch, the column that may be narrowed, and
  :data:`FORMAT_VERSION`. The file is stat'ed at every read, so a file
  rewritten in place is a miss, never an old entry.
* Only settled files are cached: modified at least :data:`SETTLE_SECONDS`
  ago, and unchanged (same stat) from before to after the read; so a rewrite
  within one tick of the file system's clock cannot reuse an entry.
* Entries are written to a temporary file and renamed into place when the
  whole split was read (a read stopped early writes nothing): a reader never
  sees a partial file, and two processes writing the same entry each rename a
  complete one.
* An entry is opened without following symbolic links and checked (regular
  file, Arrow IPC footer, the key and row count kept in its schema metadata,
  every batch validated with its offsets); anything else is a miss, and the
  entry is written again.
* Disk: an entry is written only if, after it, its file system keeps at
  least :data:`MIN_FREE_BYTES` (1 GiB) and :data:`MIN_FREE_SHARE` (15%) of
  its size free and the cache holds at most :data:`MAX_SHARE_OF_AVAILABLE`
  (half) of the space that is free or already its own; to make room, entries
  unused for :data:`STALE_SECONDS` (an hour; a hit touches its entry) and
  stray temporary files that old are deleted first, least recently used first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from hmm.distributed.sources import Split

#: The environment variable: ``off`` or a folder path (unset: the default folder).
ENVIRONMENT = "HMM_EM_SPLIT_CACHE"
#: Part of every key: bump it when what an entry holds changes.
FORMAT_VERSION = 1
#: A file modified less than this many seconds ago is read from Parquet and not cached.
SETTLE_SECONDS = 2.0
#: Free space an entry must leave on its file system: at least this many bytes ...
MIN_FREE_BYTES = 2**30
#: ... and this share of the file system (YARN marks a node unhealthy at 90% disk use) ...
MIN_FREE_SHARE = 0.15
#: ... and the cache holds at most this share of the space that is free or already its own.
MAX_SHARE_OF_AVAILABLE = 0.5
#: Entries (and temporary files) untouched this long may be deleted to make room for new ones.
STALE_SECONDS = 3600.0

_OFF = {"off", "0", "false", "no", "none"}
_METADATA = b"hmm-em-split-cache"
_SUFFIX = ".arrow"
_TEMPORARY = ".tmp-"


def cache_folder() -> str | None:
    """This process's cache folder, created if missing; None when the cache is off or the folder unusable.

    Returns
    -------
    str or None
        :data:`ENVIRONMENT`'s path, or ``<tempdir>/hmm-em-split-cache-<uid>``; None if the
        variable says off, or the folder cannot be created, is not a directory (a symbolic link,
        a file), is another user's, or others can write to it.
    """
    setting = os.environ.get(ENVIRONMENT, "").strip()
    if setting.lower() in _OFF:
        return None
    folder = setting or os.path.join(tempfile.gettempdir(), f"hmm-em-split-cache-{os.getuid()}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:  # no parent, no permission, a read-only file system
        return None
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    usable = (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & 0o022  # nobody else can plant or replace entries
        and os.access(folder, os.W_OK | os.X_OK)
    )
    return folder if usable else None


@dataclass(frozen=True)
class Entry:
    """One split's place in the cache: its file and the key its metadata must hold."""

    folder: str
    key: str
    #: The data file's identity when the key was made (to check that the read did not race a rewrite).
    identity: tuple[Any, ...]
    filesystem: pafs.FileSystem = field(compare=False, repr=False)
    data_path: str = ""

    @property
    def path(self) -> str:
        return os.path.join(self.folder, hashlib.sha256(self.key.encode()).hexdigest() + _SUFFIX)


def entry_for(
    filesystem: pafs.FileSystem,
    split: Split,
    columns: list[str],
    batching: tuple[int, ...],
    symbols: str | None = None,
) -> Entry | None:
    """The cache entry of ``split``'s ``columns`` as the data file is now; None if it is not cached.

    ``batching``: what the batch boundaries follow besides the file (the reader's rows and bytes
    per batch), so another batching is another entry; ``symbols``: the column the entry may keep
    as ``list<uint8>`` (:func:`cached_batches`), another entry than the same columns as they
    are. None when the cache is off
    (:func:`cache_folder`), the file cannot be stat'ed, or it changed less than
    :data:`SETTLE_SECONDS` ago.
    """
    folder = cache_folder()
    if folder is None:
        return None
    identity = _identity(filesystem, split.path)
    if identity is None:
        return None
    key = json.dumps(
        {
            "version": FORMAT_VERSION,
            "file": identity,
            "row_groups": None if split.row_groups is None else list(split.row_groups),
            "columns": list(columns),
            "batching": list(batching),
            "narrow": symbols,
        },
        sort_keys=True,
    )
    return Entry(folder, key, identity, filesystem, split.path)


def _identity(filesystem: pafs.FileSystem, path: str) -> tuple[Any, ...] | None:
    """What identifies the data file's bytes now; None if unknown or changed too recently to trust."""
    import pyarrow.fs as pafs

    now = time.time_ns()
    settle = int(SETTLE_SECONDS * 1e9)
    if isinstance(filesystem, pafs.LocalFileSystem):
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or max(info.st_mtime_ns, info.st_ctime_ns) > now - settle:
            return None
        return ("file", path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    try:
        found = filesystem.get_file_info(path)
    except OSError:
        return None
    if found.type != pafs.FileType.File or found.size is None or found.mtime_ns is None:
        return None
    if found.mtime_ns > now - settle:
        return None
    return (filesystem.type_name, *_endpoint(filesystem), path, found.size, found.mtime_ns)


def _endpoint(filesystem: pafs.FileSystem) -> tuple[str | None, str | None]:
    """An S3 file system's endpoint and region (the same bucket and key elsewhere is other data)."""
    try:
        options = filesystem.__reduce__()[1][0]  # pyarrow's own pickling: a dict of the options
        return options.get("endpoint_override") or None, options.get("region") or None
    except (AttributeError, IndexError, KeyError, TypeError):
        return None, None


def load(entry: Entry) -> list[pa.RecordBatch] | None:
    """The entry's batches, memory-mapped; None (a miss) if it is absent or fails a check.

    The file is opened without following a symbolic link and must be a non-empty regular file
    in Arrow IPC file format whose schema metadata holds the entry's key and row count, with
    every batch valid (offsets included). A hit touches the file (its last use, for
    :data:`STALE_SECONDS`).
    """
    import pyarrow as pa

    try:
        descriptor = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # absent, or a symbolic link (ELOOP)
        return None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return None
        mapped = mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ)
        with contextlib.suppress(OSError):
            os.utime(descriptor)
    except (OSError, ValueError):
        return None
    finally:
        os.close(descriptor)
    try:
        reader = pa.ipc.open_file(pa.py_buffer(mapped))
        metadata = dict(reader.schema.metadata or {})
        header = json.loads(metadata.pop(_METADATA, b"null"))
        if not isinstance(header, dict) or header.get("key") != entry.key:
            return None
        schema = reader.schema.with_metadata(metadata) if metadata else reader.schema.remove_metadata()
        batches = []
        for number in range(reader.num_record_batches):
            batch = reader.get_batch(number)
            batch.validate(full=True)  # offsets within bounds: a damaged entry never reads outside its rows
            batches.append(batch.replace_schema_metadata(schema.metadata))
    except (pa.ArrowException, ValueError, TypeError, OSError):
        return None
    if sum(batch.num_rows for batch in batches) != header.get("rows") or not all(b.num_rows for b in batches):
        return None
    return batches


def cached_batches(
    entry: Entry, batches: Iterable[pa.RecordBatch], rows: int, size: int, narrow: str | None = None
) -> Iterator[pa.RecordBatch]:
    """``batches``, unchanged, also written to ``entry`` when all of them were read.

    Parameters
    ----------
    entry : Entry
        Where to keep them (:func:`entry_for`).
    batches : iterable of pyarrow.RecordBatch
        The split's batches as Parquet gives them.
    rows : int
        How many rows ``batches`` hold in all (the Parquet footer's count), kept in the entry.
    size : int
        About how many bytes the entry will take (the row groups' uncompressed size), for the
        free-space rule.
    narrow : str, optional
        A ``list<integer>`` column to keep as ``list<uint8>``: the same values in a quarter of the
        bytes. A batch with a value outside [0, 255] (or a null) drops the entry.

    Yields
    ------
    pyarrow.RecordBatch
        Each of ``batches``. Nothing about the cache ever fails the read: an entry that cannot be
        written (no room, ``ENOSPC``, a rename refused) is dropped with its temporary file, as is
        one whose reading stopped early or raised, or whose data file changed during the read.
    """
    writer = _Writer(entry, rows, narrow) if _room_for(entry.folder, size // 4 if narrow else size) else None
    try:
        for batch in batches:
            if writer is not None and not writer.write(batch):
                writer = None
            yield batch
        if writer is not None:
            writer.commit()
            writer = None
    finally:
        if writer is not None:
            writer.abort()


class _Writer:
    """An entry being written: a temporary file in the folder, renamed into place by :meth:`commit`."""

    def __init__(self, entry: Entry, rows: int, narrow: str | None = None):
        self.entry = entry
        self.rows = rows
        self.narrow = narrow
        self.temporary: str | None = None
        self.sink: Any = None
        self.writer: Any = None

    def write(self, batch: pa.RecordBatch) -> bool:
        """Append ``batch``; False (and nothing left behind) if that failed."""
        import pyarrow as pa

        try:
            if self.narrow is not None:
                batch = _narrowed(batch, self.narrow)
            if self.writer is None:
                descriptor, self.temporary = tempfile.mkstemp(prefix=_TEMPORARY, suffix=_SUFFIX, dir=self.entry.folder)
                os.close(descriptor)
                header = json.dumps({"key": self.entry.key, "rows": self.rows}).encode()
                schema = batch.schema.with_metadata({**(batch.schema.metadata or {}), _METADATA: header})
                self.sink = pa.OSFile(self.temporary, "wb")
                self.writer = pa.ipc.new_file(self.sink, schema)
            self.writer.write_batch(batch)
            return True
        except (OSError, pa.ArrowException):
            self.abort()
            return False

    def commit(self) -> None:
        """Close the file and rename it into place, if the data file is still what the key says."""
        import pyarrow as pa

        if self.writer is None:  # no batch: nothing worth keeping
            return
        try:
            self.writer.close()
            self.sink.close()
            self.writer = None
            if _identity(self.entry.filesystem, self.entry.data_path) != self.entry.identity:
                raise OSError(errno.ESTALE, "the data file changed while it was read")
            if self.temporary is None:
                return
            os.replace(self.temporary, self.entry.path)  # atomic; replaces a symbolic link, never follows it
            self.temporary = None
        except (OSError, pa.ArrowException):
            self.abort()

    def abort(self) -> None:
        """Drop the temporary file (a read stopped early, or a write or rename failed)."""
        for closing in (self.writer, self.sink):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close()
        self.writer = self.sink = None
        if self.temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temporary)
            self.temporary = None


def _narrowed(batch: pa.RecordBatch, column: str) -> pa.RecordBatch:
    """``batch`` with ``column`` cast to ``list<uint8>``; ``ArrowInvalid`` if a value does not fit or is null."""
    import pyarrow as pa

    index = batch.schema.get_field_index(column)
    values = batch.column(index)
    if values.null_count or values.flatten().null_count:
        raise pa.ArrowInvalid("nulls are kept as they are")  # their errors name the batch's own type
    narrow = values.cast(pa.list_(pa.uint8()), safe=True)
    return batch.set_column(index, batch.schema.field(index).with_type(narrow.type), narrow)


def _room_for(folder: str, size: int) -> bool:
    """Whether an entry of ``size`` bytes fits the disk rule, after deleting stale files if it does not."""
    listing = _listing(folder)
    if listing is None:
        return False
    if _fits(folder, size, listing):
        return True
    now = time.time()
    stale = sorted((used, path) for path, (used, _) in listing.items() if used < now - STALE_SECONDS)
    for _, path in stale:  # least recently used first
        with contextlib.suppress(OSError):
            os.unlink(path)
        del listing[path]
        if _fits(folder, size, listing):
            return True
    return False


def _listing(folder: str) -> dict[str, tuple[float, int]] | None:
    """The folder's entries and temporary files: last use (modification time) and size, by path."""
    found = {}
    try:
        with os.scandir(folder) as items:
            for item in items:
                if item.name.endswith(_SUFFIX) and item.is_file(follow_symlinks=False):
                    info = item.stat(follow_symlinks=False)
                    found[item.path] = (info.st_mtime, info.st_blocks * 512)
    except OSError:
        return None
    return found


def _fits(folder: str, size: int, listing: dict[str, tuple[float, int]]) -> bool:
    """The disk rule: after the entry, the file system keeps :data:`MIN_FREE_BYTES` and :data:`MIN_FREE_SHARE`
    of its size free, and the cache holds at most :data:`MAX_SHARE_OF_AVAILABLE` of the space that is free
    or its own."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return False
    held = sum(used for _, used in listing.values())
    return usage.free - size >= max(
        MIN_FREE_BYTES, MIN_FREE_SHARE * usage.total
    ) and held + size <= MAX_SHARE_OF_AVAILABLE * (usage.free + held)

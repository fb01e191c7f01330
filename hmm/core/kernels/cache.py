"""Numba's on-disk cache of the kernels, kept consistent with their sources.

Numba reuses a compiled kernel while the stamp (modification time and size) of the
kernel's own source file is unchanged; it does not look at the files that kernel calls
into. The kernels inline :mod:`.lanes` (the lane count, the intrinsics), so a checkout
that changes ``lanes.py`` but not ``forward.py`` would keep running ``forward.py``'s old
machine code against new buffer layouts: wrong numbers, not an error (seen as NaN start
probabilities after a merge changed the lane count). :func:`clear_stale_caches` drops the
package's cache files whenever any kernel source differs from the last import's.

Only the in-tree cache (``__pycache__`` beside the sources, numba's choice for a writable
install) is guarded; a read-only install compiles into numba's user-wide cache, which an
install replaces wholesale.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Beside numba's files: the digest of the sources they were compiled from.
STAMP_NAME = "kernel-sources.sha256"


def sources_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of the ``*.py`` files of ``folder``."""
    digest = hashlib.sha256()
    for source in sorted(folder.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def clear_stale_caches(folder: Path) -> bool:
    """Delete numba's cache files in ``folder/__pycache__`` if the sources changed since they were written.

    Returns whether anything was cleared. Never raises for the cache folder: an unwritable
    or missing one leaves numba to its own devices. Concurrent callers (Spark's Python
    workers start together) at worst both clear and recompile.
    """
    cache = folder / "__pycache__"
    stamp = cache / STAMP_NAME
    digest = sources_digest(folder)
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    cleared = False
    try:
        for compiled in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            compiled.unlink(missing_ok=True)
            cleared = True
        cache.mkdir(exist_ok=True)
        partial = cache / f"{STAMP_NAME}.{os.getpid()}"
        partial.write_text(digest)
        os.replace(partial, stamp)
    except OSError:
        pass
    return cleared

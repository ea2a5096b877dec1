"""Drop this package's numba caches when any of its sources changed.

numba keys a cached kernel on its own source file only, while the kernels of `single_query.py`
and `substring_scan.py` compile in kernels of `kernels.py` (and constants of `bucket_table.py`).
After an edit or a `git pull` that changes one file but not another, numba would load a cached
kernel built from the old code. So the index records a digest of all its sources next to the
cache and deletes the cached kernels when the digest changes; they are recompiled on first use.
A read-only install (a Docker image) keeps the caches it was built with, from these sources.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MARKER = "kernel-sources.sha256"


def sources_digest(package: Path) -> str:
    """sha256 over the package's Python sources, in name order."""
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_caches(package: Path) -> bool:
    """Delete package/__pycache__'s numba files (*.nbi, *.nbc) if the sources changed since the
    digest was recorded; True when they were dropped. Unwritable folders are left as they are."""
    cache = package / "__pycache__"
    marker = cache / MARKER
    digest = sources_digest(package)
    try:
        if marker.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for cached in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            cached.unlink()
        marker.write_text(digest)
    except OSError:
        return False
    return True

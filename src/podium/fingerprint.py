"""Content fingerprints of raw data, so a run records exactly what it read.

A fingerprint hashes every file's relative path, size and bytes. Files larger than
``full_hash_limit`` are hashed by size plus their first and last ``edge_bytes``:
full DFDC is 470 GB, and re-reading it to tag a run would cost more than the run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

FULL_HASH_LIMIT = 8 * 1024 * 1024
EDGE_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024


def file_digest(
    path: Path, full_hash_limit: int = FULL_HASH_LIMIT, edge_bytes: int = EDGE_BYTES
) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        if size <= full_hash_limit:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        else:
            digest.update(handle.read(edge_bytes))
            handle.seek(size - edge_bytes)
            digest.update(handle.read(edge_bytes))
    return digest.hexdigest()


def iter_files(root: Path) -> Iterable[Path]:
    """Every regular file under ``root`` in a stable order (``root`` itself if a file)."""
    if root.is_file():
        yield root
        return
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            yield Path(directory) / name


def path_fingerprint(root: Path, **limits: int) -> dict[str, object]:
    """``{"sha256", "files", "bytes"}`` of a file or a folder; a missing path is reported."""
    root = Path(root)
    if not root.exists():
        return {"sha256": "missing", "files": 0, "bytes": 0}
    digest = hashlib.sha256()
    n_files = n_bytes = 0
    for path in iter_files(root):
        relative = path.relative_to(root).as_posix() if root.is_dir() else path.name
        digest.update(relative.encode() + b"\0" + file_digest(path, **limits).encode())
        n_files += 1
        n_bytes += path.stat().st_size
    return {"sha256": digest.hexdigest(), "files": n_files, "bytes": n_bytes}


def combine(fingerprints: Mapping[str, Mapping[str, object]]) -> str:
    """One digest for several named fingerprints (order-independent); ``none`` if empty."""
    if not fingerprints:
        return "none"
    digest = hashlib.sha256()
    for name in sorted(fingerprints):
        digest.update(f"{name}={fingerprints[name]['sha256']};".encode())
    return digest.hexdigest()

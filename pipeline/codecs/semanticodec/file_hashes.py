"""SHA-256 of checkpoint files, remembered in the project's cache, never beside the files.

Checkpoints are GBs, so a file's digest is cached. The cache entry is keyed by everything that
changes when the file does (real path, size, mtime, inode, ctime: ctime cannot be set back by a
user), and it also records a cheap digest of the file's first and last MiB that is checked on
every use, so an entry written for another file, or forged, is not trusted: the file is hashed
again. The user's checkpoint folder (read-only, a Hugging Face cache) is never written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

_BLOCK_BYTES = 8 << 20
_EDGE_BYTES = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_of_file(path: str | os.PathLike, cache_dir: str | os.PathLike) -> str:
    """The SHA-256 of `path`, from the cache under `cache_dir` when its entry still fits the file."""
    path = Path(path)
    stat = path.stat()
    real = str(path.resolve())
    stamp = {
        "path": real,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()
    entry_path = Path(cache_dir) / key[:2] / f"{key}.json"
    edges = edge_digest(path, stat.st_size)
    cached = _read_entry(entry_path)
    if cached and cached.get("stamp") == stamp and cached.get("edges") == edges:
        return cached["sha256"]
    value = _full_digest(path)
    _write_entry(entry_path, {"stamp": stamp, "edges": edges, "sha256": value})
    return value


def edge_digest(path: Path, size: int) -> str:
    """SHA-256 of the size, the first MiB and the last MiB: cheap, and no stale entry survives it."""
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            handle.seek(max(size - _EDGE_BYTES, _EDGE_BYTES))
            digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()


def _full_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _read_entry(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not _HEX64.fullmatch(str(entry.get("sha256", ""))):
        return None
    return entry


def _write_entry(path: Path, entry: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(entry))
        os.replace(partial, path)
    except OSError:  # an unwritable cache only costs hashing again next time
        pass

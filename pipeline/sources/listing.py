"""The one listing rule of every file-based source (audio files, tar shards, Parquet files), on any
fsspec filesystem: `list_files` gives the root and the files, and every id is relative to the root.

However the source is spelled, the same files get the same root:
- a folder (with or without a trailing `/`, `file://` or not, a local path or `s3://bucket/prefix`):
  the folder is the root; its files are found recursively and kept by suffix;
- a single file: its folder is the root, so its id is its file name;
- a glob (`shards/*.tar`, `s3://b/audio/**/*.flac`): the root is the folder before the first
  path segment holding a wildcard; every file the pattern matches is kept.

A glob's expansion grows exponentially with its `**` segments (twelve took 83 s), so a pattern with
more than `MAX_RECURSIVE_WILDCARDS` of them is refused in one line before fsspec sees it.

A folder's subfolders are listed in parallel (`find_files`): an object store lists a prefix one page
of 1,000 keys after another, so one flat listing of millions of keys takes minutes.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import SourceError
from ..fsutil import fs_protocol, is_local_fs

GLOB_CHARS = "*?["
MAX_RECURSIVE_WILDCARDS = 2  # `**` segments in one pattern
LIST_THREADS = 16  # subfolders listed at once


@dataclass(frozen=True)
class Listing:
    """The files of a source: `paths` (filesystem paths, sorted) under `root`."""

    fs: object
    root: str
    paths: list[str]
    prefix: str  # the protocol prefix that turns a path back into a URL ("" for local files)

    def id_of(self, path: str) -> str:
        return relative_id(path, self.root)

    def uri_of(self, path: str) -> str:
        return self.prefix + path

    def ids_of(self, paths: list[str]) -> list[str]:
        """`id_of` for many paths: a path made of the root, `/` and a normal relative path is that
        relative path (what `relpath` gives, without its two `abspath`s); any other goes through `relpath`."""
        if not self.root:
            return [relative_id(path, self.root) for path in paths]
        head = f"{self.root.rstrip('/')}/"
        cut = len(head)
        ids = []
        for path in paths:
            rest = path[cut:]
            plain = (path.startswith(head) and rest and not rest.startswith(("/", ".."))
                     and posixpath.normpath(rest) == rest)
            ids.append(rest if plain else relative_id(path, self.root))
        return ids


def has_glob(url: str) -> bool:
    return any(ch in url for ch in GLOB_CHARS)


def check_glob(pattern: str) -> None:
    """Refuse a pattern whose expansion could run for hours (one line, before any listing)."""
    recursive = sum(1 for part in pattern.split("/") if "**" in part)
    if recursive > MAX_RECURSIVE_WILDCARDS:
        raise SourceError(f"the pattern {pattern[:200]!r} has {recursive} '**' segments; at most "
                          f"{MAX_RECURSIVE_WILDCARDS} are allowed (each multiplies the listing's work): "
                          "name a folder, or use one '**'")


def glob_root(path: str) -> str:
    """The folder before the first path segment that holds a wildcard."""
    first = min(path.find(ch) for ch in GLOB_CHARS if ch in path)
    return path[:first].rsplit("/", 1)[0] if "/" in path[:first] else ""


def relative_id(path: str, root: str) -> str:
    """A path relative to the source root, '/'-separated: the stable id of a file."""
    return posixpath.relpath(path, root) if root else path.lstrip("/")


def protocol_prefix(fs) -> str:
    return "" if is_local_fs(fs) else f"{fs_protocol(fs)}://"


def list_files(url: str, storage_options: dict | None, keep: Callable[[str], bool],
               found: list[str] | None = None) -> Listing:
    """The root and files of `url`: in a folder, the files `keep` accepts; for a glob, every file it
    matches; a single file itself. No match is an empty list (the caller says what it needed).
    `found`: the folder's files or the glob's matches, when already listed (`open_source` lists a
    folder to tell its kind)."""
    fs, path, root, kind = _locate(url, storage_options)
    prefix = protocol_prefix(fs)
    if kind == "glob":
        return Listing(fs, root, sorted(found if found is not None else glob_files(fs, path)), prefix)
    if kind == "file":
        return Listing(fs, root, [path], prefix)
    return Listing(fs, root, sorted(p for p in (found if found is not None else find_files(fs, root)) if keep(p)),
                   prefix)


def glob_files(fs, pattern: str) -> list[str]:
    """The files (not folders) a glob matches."""
    return [p for p, info in fs.glob(pattern, detail=True).items() if info.get("type") != "directory"]


def find_files(fs, root: str, threads: int = LIST_THREADS) -> list[str]:
    """Every file under the folder `root`, as `fs.find` gives them (unsorted), its subfolders listed
    in parallel (a local folder by `os.scandir`: fsspec's local `find` stats every entry, about 7 µs
    a file)."""
    if is_local_fs(fs):
        return _local_files(root)
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    folders = [entry["name"] for entry in entries if entry.get("type") == "directory"]
    if len(folders) < 2:  # nothing to share out
        return fs.find(root)
    files = [entry["name"] for entry in entries if entry.get("type") != "directory"]
    with ThreadPoolExecutor(min(threads, len(folders))) as pool:
        for found in pool.map(fs.find, folders):
            files.extend(found)
    return files


def _local_files(root: str) -> list[str]:
    """What fsspec's local `find` gives for `root`: everything below it that is not a folder (a link
    counts as a file, a link to a folder too, and is not followed), folders that cannot be listed
    left out; `root` itself when it is something else that exists."""
    if not os.path.isdir(root):
        return [root] if os.path.exists(root) else []
    files, folders = [], [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        (folders if entry.is_dir(follow_symlinks=False) else files).append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return files


def listing_root(url: str, storage_options: dict | None) -> str:
    """The root `list_files` gives `url`, as a URL (a local path for local files), without listing."""
    fs, _, root, _ = _locate(url, storage_options)
    return protocol_prefix(fs) + (root or "/")


def _locate(url: str, storage_options: dict | None) -> tuple[object, str, str, str]:
    """(filesystem, path, root, "glob" | "file" | "folder")."""
    from ..fsutil import url_to_fs

    if has_glob(url):
        check_glob(url)
    fs, path = url_to_fs(url, storage_options)
    if has_glob(path):
        return fs, path, glob_root(path), "glob"
    path = path.rstrip("/") or "/"
    if fs.isfile(path):
        return fs, path, posixpath.dirname(path), "file"
    return fs, path, path, "folder"

"""Sources: turn a URL into work units and items. `open_source` tells the kinds apart by itself."""

from __future__ import annotations

import os

from ..errors import SourceError
from .audioset import AudioSetSource
from .base import AUDIO_EXTENSIONS, DEFAULT_READ_RETRIES, Source, WorkUnit, user_errors
from .files import FilesSource
from .hf_parquet import HF_DATASETS_PREFIX, HFParquetSource, is_hf_audio_parquet
from .ids import ID_RULE_VERSION, MAX_ID_CHARS, dedupe_units, find_duplicate_ids, id_problem
from .listing import find_files, has_glob, list_files, protocol_prefix
from .manifest import MANIFEST_SUFFIXES, ManifestSource
from .tar import TarSource
from .uri_rule import UriOutsideRule, UriRule, allowed_locations
from .uris import is_member_uri, split_member_uri
from .work_list import WorkList, list_work

__all__ = [
    "AUDIO_EXTENSIONS", "ID_RULE_VERSION", "MAX_ID_CHARS", "AudioSetSource", "FilesSource", "HFParquetSource",
    "ManifestSource", "Source", "TarSource", "UriOutsideRule", "UriRule", "WorkList", "WorkUnit", "dedupe_units",
    "find_duplicate_ids", "id_problem", "is_member_uri", "list_work", "open_source", "split_member_uri",
]

LOOKED_FOR = ("audio files (" + ", ".join(AUDIO_EXTENSIONS) + "), .tar shards, Parquet with an HF audio column, "
              "or a manifest (" + ", ".join(MANIFEST_SUFFIXES) + ")")


def open_source(
    url: str,
    *,
    audio_root: str | None = None,
    class_labels: str | None = None,
    split: str | None = None,
    storage_options: dict | None = None,
    read_retries: int = DEFAULT_READ_RETRIES,
    missing_inputs: str = "retry",
    dedupe: str = "refuse",
    allow_uri_prefixes: tuple[str, ...] | list[str] = (),
) -> Source:
    """The right Source for `url`: a folder/prefix/glob of audio files, a manifest
    (.csv/.jsonl/.json/.parquet with an audio path column, NeMo or Lhotse JSONL), HF-layout Parquet
    (recognised from its schema), `hf://datasets/<repo>`, .tar shards, or an AudioSet segments CSV
    (with `audio_root`). Checks first that the source exists and can be read: any problem is a
    `SourceError` with one line saying what is wrong. `dedupe` and `allow_uri_prefixes` apply to
    ids and URIs found inside the data (`ids.py`, `uri_rule.py`)."""
    options = dict(storage_options or {})
    allowed = tuple(allow_uri_prefixes or ())
    allowed_locations(allowed)  # a bad prefix is a ConfigError now, not in a task
    common = {"storage_options": options, "read_retries": read_retries, "missing_inputs": missing_inputs,
              "dedupe": dedupe, "allow_uri_prefixes": allowed}
    if url.startswith(HF_DATASETS_PREFIX):
        return HFParquetSource(url, split=split, **common)
    with user_errors(url):
        return _detect(url, audio_root=audio_root, class_labels=class_labels, split=split, common=common)


def _detect(url: str, *, audio_root, class_labels, split, common) -> Source:
    from ..fsutil import url_to_fs

    fs, path = url_to_fs(url, common["storage_options"])
    if has_glob(path):
        matches = list_files(url, common["storage_options"], keep=lambda _: True).paths
        if not matches:
            raise SourceError(f"source {url} matches no files")
        return _with_listing(_kind_of(url, fs, path, matches, audio_root, class_labels, split, common), matches)
    if not fs.exists(path):
        raise SourceError(f"source {url} does not exist")
    if protocol_prefix(fs) == "" and not os.access(path, os.R_OK):
        raise SourceError(f"source {url} cannot be read: permission denied")
    files = None if fs.isfile(path) else find_files(fs, path.rstrip("/") or "/")
    return _with_listing(_kind_of(url, fs, path, files, audio_root, class_labels, split, common), files)


def _with_listing(source: Source, found: list[str] | None) -> Source:
    """The source, holding the files found while telling its kind for its own listing (one pass)."""
    if found is not None:
        source.remember_listing(found)
    return source


def _kind_of(url: str, fs, path: str, files: list[str] | None, audio_root, class_labels, split, common) -> Source:
    """The source for `url`: from its name, else from the files it holds (`files`: a folder's, or a
    glob's matches; None for a single file)."""
    lower = path.lower()
    if lower.endswith(".tar"):
        return TarSource(url, **common)
    if lower.endswith(".csv") and (audio_root or _looks_like_audioset_csv(fs, path)):
        return AudioSetSource(url, audio_root=audio_root or "", class_labels_url=class_labels, **common)
    if lower.endswith(MANIFEST_SUFFIXES) and not lower.endswith(".parquet"):
        return ManifestSource(url, **common)
    if lower.endswith(".parquet"):
        first = files[0] if has_glob(path) else path
        if _is_hf_parquet(fs, first):
            return HFParquetSource(url, split=split, **common)
        return ManifestSource(url, **common)
    if lower.endswith(AUDIO_EXTENSIONS) and not has_glob(path):
        return FilesSource(url, **common)
    if not files:
        raise SourceError(f"source {url} is an empty folder")
    if any(f.lower().endswith(AUDIO_EXTENSIONS) for f in files):
        return FilesSource(url, **common)
    if any(f.endswith(".tar") for f in files):
        return TarSource(url, **common)
    parquet = [f for f in files if f.endswith(".parquet")]
    if parquet and _is_hf_parquet(fs, parquet[0]):
        return HFParquetSource(url, split=split, **common)
    examples = ", ".join(sorted(f.rsplit("/", 1)[-1] for f in files)[:3])
    raise SourceError(f"cannot tell what kind of source {url} is: looked for {LOOKED_FOR}; "
                      f"found {len(files)} other file(s) ({examples})")


def _looks_like_audioset_csv(fs, path: str) -> bool:
    with fs.open(path, "rb") as handle:
        return handle.read(1) == b"#"


def _is_hf_parquet(fs, path: str) -> bool:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        return is_hf_audio_parquet(pq.read_schema(handle))

"""Sources: turn a URL into work units and items. `open_source` tells the kinds apart by itself."""

from __future__ import annotations

from .audioset import AudioSetSource
from .base import AUDIO_EXTENSIONS, ITEM_FIELDS, Source
from .files import FilesSource, has_glob
from .hf_parquet import HF_DATASETS_PREFIX, HFParquetSource, is_hf_audio_parquet
from .manifest import ManifestSource
from .tar import TarSource

__all__ = [
    "AUDIO_EXTENSIONS", "ITEM_FIELDS", "AudioSetSource", "FilesSource", "HFParquetSource",
    "ManifestSource", "Source", "TarSource", "open_source",
]


def open_source(
    url: str,
    *,
    audio_root: str | None = None,
    class_labels: str | None = None,
    split: str | None = None,
    storage_options: dict | None = None,
) -> Source:
    """The right Source for `url`: a folder/prefix/glob of audio files, a manifest
    (.csv/.jsonl/.parquet with a uri column), HF-layout Parquet (recognised from its schema),
    `hf://datasets/<repo>`, .tar shards, or an AudioSet segments CSV (with `audio_root`)."""
    from ..fsutil import url_to_fs

    options = dict(storage_options or {})
    if url.startswith(HF_DATASETS_PREFIX):
        return HFParquetSource(url, options, split=split)
    fs, path = url_to_fs(url, options)
    lower = path.lower()
    if lower.endswith(".tar"):
        return TarSource(url, options)
    if lower.endswith(".csv") and (audio_root or _looks_like_audioset_csv(fs, path)):
        return AudioSetSource(url, options, audio_root=audio_root or "", class_labels_url=class_labels)
    if lower.endswith((".csv", ".jsonl", ".json")):
        return ManifestSource(url, options)
    if lower.endswith(".parquet"):
        first = fs.glob(path)[0] if has_glob(path) else path
        return HFParquetSource(url, options, split=split) if _is_hf_parquet(fs, first) else ManifestSource(url, options)
    files = fs.glob(path) if has_glob(path) else fs.find(path)
    if any(f.lower().endswith(AUDIO_EXTENSIONS) for f in files):
        return FilesSource(url, options)
    if any(f.endswith(".tar") for f in files):
        return TarSource(url, options)
    parquet = [f for f in files if f.endswith(".parquet")]
    if parquet and _is_hf_parquet(fs, parquet[0]):
        return HFParquetSource(url, options, split=split)
    raise ValueError(f"cannot tell what kind of source {url} is: no audio files, .tar shards or HF Parquet found")


def _looks_like_audioset_csv(fs, path: str) -> bool:
    with fs.open(path, "rb") as handle:
        return handle.read(1) == b"#"


def _is_hf_parquet(fs, path: str) -> bool:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        return is_hf_audio_parquet(pq.read_schema(handle))

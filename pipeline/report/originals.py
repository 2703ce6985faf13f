"""The original audio of a picked row: the span of the source object the row covers
(`source_start_s`, `source_end_s`), fetched by its uri (local path or any fsspec URL), as mono
16 kHz float32. A uri that cannot be fetched is a reason, never an exception: uris with a `#`
suffix (tar members, Parquet rows) cannot be fetched directly, and a uri is a URI from data, read
only when the URI rule allows it (`pipeline/sources/uri_rule.py`: under the corpus folder or an
--allow-uri-prefix), so a corpus cannot make the report read, or request, anything else."""

from __future__ import annotations

import numpy as np

from ..sources.uri_rule import UriOutsideRule, UriRule
from .token_stats import classify_uri


def row_span_start(row: dict) -> float:
    """Where a token row's audio starts in its source object, seconds: its recorded span (tokens
    schema minor 2), else (older files) its chunk's start, which is right unless it is a segment."""
    start = row.get("source_start_s")
    return float(row["chunk_start_s"] if start is None else start)


def fetch_original(uri: str, start_s: float, seconds: float, storage_options: dict | None, *, rule: UriRule):
    """(mono 16 kHz float32 of [start_s, start_s + seconds) of the file, None, file seconds) or
    (None, reason it is unavailable, None)."""
    import soundfile as sf
    import torch

    from ..codecs.semanticodec.input import to_mono_16k
    from ..fsutil import url_to_fs

    kind = classify_uri(uri)
    if kind == "archive_member":
        return None, "original unavailable: archive member uri (tar/Parquet source) cannot be fetched directly", None
    if kind is not None:
        return None, f"original unavailable: unknown uri ({kind})", None
    try:
        uri = rule.resolve(uri)
    except UriOutsideRule as error:
        return None, f"original not read: {error}", None
    try:
        fs, path = url_to_fs(uri, storage_options)
        with fs.open(path, "rb") as handle, sf.SoundFile(handle) as audio:
            rate = audio.samplerate
            file_s = audio.frames / rate
            first = round(start_s * rate)
            if first:
                audio.seek(first)
            data = audio.read(round(seconds * rate), dtype="float32", always_2d=True)[:, 0]
    except FileNotFoundError:
        return None, "original unavailable: unknown uri (not found)", None
    except Exception as error:  # noqa: BLE001 - shown as the pick's reason: the report compares what it can
        return None, f"original unavailable: {type(error).__name__}: {error}", None
    if data.size == 0:
        return None, "original unavailable: no samples at the row's position", file_s
    mono = to_mono_16k(torch.from_numpy(np.ascontiguousarray(data))[None], int(rate)).numpy()
    return mono.astype(np.float32), None, file_s

"""Records → Parquet shard tables, and the commit of one batch's shards (plain functions).
Uris, failure messages and the provenance are redacted here (`pipeline.redaction`): nothing a
shard holds carries a credential, though the workers read with the uri as given.

A batch's encoded chunks become one tokens shard, its final failures one failures shard, and its
retryable failures one shard under retryable/ (not final: the next run retries those inputs).
Each shard declares the old rows its rows supersede (a retried input's earlier failure row: the
rule is in `folder.py`). A failure row records the versions of the pipeline and of the libraries
that decode and encode (`environment_versions`), so the rows of a broken environment can be found
and retried. The summary it returns (`ShardSummary`) is what the driver needs for progress, the
output's keys and the run record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata

import numpy as np

from .. import __version__
from ..records import EncodedChunk, Failure
from ..redaction import redact, redact_all
from .folder import FAILURES_DIR, RETRYABLE_DIR, TOKENS_DIR, OutputFolder, failures_table, tokens_table
from .summary import ShardSummary
from .supersede import declarations_for, relative_shard

# failure row column -> the distribution whose version it records
VERSION_DISTRIBUTIONS = {"torch_version": "torch", "torchaudio_version": "torchaudio",
                         "soundfile_version": "soundfile", "pyav_version": "av"}


def token_row(chunk: EncodedChunk) -> dict:
    info = chunk.info
    return {
        "id": info.id, "uri": redact(info.uri), "chunk_index": info.chunk_index, "num_chunks": info.num_chunks,
        "chunk_start_s": info.chunk_start_s, "duration_s": info.duration_s,
        "source_start_s": info.source_start_s, "source_end_s": info.source_end_s,
        "source_sample_rate": info.source_sample_rate, "source_channels": info.source_channels,
        "num_frames": chunk.num_frames, "semantic": np.asarray(chunk.semantic, np.uint16),
        "acoustic": np.asarray(chunk.acoustic, np.uint16),
        "labels": info.labels or None, "human_labels": info.human_labels or None,
        "meta": json.dumps(info.meta, sort_keys=True, ensure_ascii=False) if info.meta else None,
    }


def failure_row(failure: Failure) -> dict:
    return {"id": failure.id, "uri": redact(failure.uri), "stage": failure.stage, "error_type": failure.error_type,
            "message": redact(failure.message), **environment_versions()}


@lru_cache(maxsize=1)
def environment_versions() -> dict[str, str | None]:
    """The versions of this process's pipeline and decode/encode libraries (None: not installed,
    or libsndfile not loadable). Packages are read from their installed metadata, not imported."""
    versions = {"pipeline_version": __version__}
    for column, distribution in VERSION_DISTRIBUTIONS.items():
        try:
            versions[column] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[column] = None
    try:
        import soundfile

        versions["libsndfile_version"] = soundfile.__libsndfile_version__
    except (ImportError, OSError):
        versions["libsndfile_version"] = None
    return versions


def _folder_of(record) -> str:
    if isinstance(record, EncodedChunk):
        return TOKENS_DIR
    return RETRYABLE_DIR if record.retryable else FAILURES_DIR


_ROW_OF = {TOKENS_DIR: (token_row, tokens_table), FAILURES_DIR: (failure_row, failures_table),
           RETRYABLE_DIR: (failure_row, failures_table)}


def write_records(output: OutputFolder, records: list, provenance: dict, units: list[str] | None = None,
                  previous: Mapping[str, str] | None = None) -> ShardSummary:
    """Commit one batch's shards; returns their summary. `provenance`: the codec's, recorded in the
    tokens shard's footer; `units`: each record's work unit key;
    `previous` {id or unit key: shard}: the old rows of inputs being retried, which the new
    shards supersede."""
    units = units if units is not None else [None] * len(records)
    provenance = redact_all(provenance)  # a checkpoint URL may carry credentials
    grouped: dict[str, list] = {}
    for record, unit in zip(records, units, strict=True):
        grouped.setdefault(_folder_of(record), []).append((record, unit))
    superseded: dict[str, set[str]] = {}
    new_retryable = []
    for folder, pairs in grouped.items():
        to_row, to_table = _ROW_OF[folder]
        ids = [record.info.id if isinstance(record, EncodedChunk) else record.id for record, _ in pairs]
        declared = declarations_for([*ids, *(u for _, u in pairs if u is not None)], previous or {})
        path = output.write_shard(folder, to_table([to_row(r) for r, _ in pairs]),
                                  provenance if folder == TOKENS_DIR else None, supersedes=declared)
        for shard, keys in declared.items():
            superseded.setdefault(shard, set()).update(keys)
        if folder == RETRYABLE_DIR:
            new_retryable = [[key, relative_shard(path)] for key in ids]
    encoded = [r for r in records if isinstance(r, EncodedChunk)]
    failures = [r for r in records if isinstance(r, Failure)]
    return ShardSummary(
        token_rows=len(encoded),
        failed=sum(not f.retryable for f in failures),
        retryable=sum(f.retryable for f in failures),
        # an input is done when its last chunk is written (chunks of one input are written in order)
        inputs_done=sum(r.info.chunk_index == r.info.num_chunks - 1 for r in encoded) + len(failures),
        audio_s=float(sum(r.info.duration_s for r in encoded)),
        token_pairs=int(sum(r.num_frames for r in encoded)),
        shards=len(grouped),
        failure_types=Counter(f.error_type for f in failures if not f.retryable),
        retryable_types=Counter(f.error_type for f in failures if f.retryable),
        provenance=provenance if encoded else {},
        token_keys=[[r.info.id, r.info.chunk_index, r.info.num_chunks] for r in encoded],
        failed_ids=[f.id for f in failures if not f.retryable],
        retryable_ids=new_retryable,
        superseded={shard: sorted(keys) for shard, keys in superseded.items()},
    )

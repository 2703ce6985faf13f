"""Records → Parquet shard tables, and the commit of one batch's shards (plain functions).
Uris, failure messages and the provenance are redacted here (`pipeline.redaction`): nothing a
shard holds carries a credential, though the workers read with the uri as given.

A batch's encoded chunks become one tokens shard, its final failures one failures shard, and its
retryable failures one shard under retryable/ (not final: the next run retries those inputs).
The summary it returns is what the driver needs for progress and the manifest.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa

from ..records import EncodedChunk, Failure
from ..redaction import redact, redact_all
from .folder import FAILURES_DIR, RETRYABLE_DIR, TOKENS_DIR, OutputFolder, failures_table, tokens_table


def token_row(chunk: EncodedChunk) -> dict:
    info = chunk.info
    return {
        "id": info.id, "uri": redact(info.uri), "chunk_index": info.chunk_index, "num_chunks": info.num_chunks,
        "chunk_start_s": info.chunk_start_s, "duration_s": info.duration_s,
        "source_sample_rate": info.source_sample_rate, "source_channels": info.source_channels,
        "num_frames": chunk.num_frames, "semantic": np.asarray(chunk.semantic, np.uint16),
        "acoustic": np.asarray(chunk.acoustic, np.uint16),
        "labels": info.labels or None, "human_labels": info.human_labels or None,
        "meta": json.dumps(info.meta, sort_keys=True, ensure_ascii=False) if info.meta else None,
    }


def failure_row(failure: Failure) -> dict:
    return {"id": failure.id, "uri": redact(failure.uri), "stage": failure.stage, "error_type": failure.error_type,
            "message": redact(failure.message)}


def shard_tables(records: list) -> dict[str, pa.Table]:
    """{folder: table} for the records of one batch; folders with no rows are left out."""
    encoded = [r for r in records if isinstance(r, EncodedChunk)]
    final = [r for r in records if isinstance(r, Failure) and not r.retryable]
    retryable = [r for r in records if isinstance(r, Failure) and r.retryable]
    tables = {}
    if encoded:
        tables[TOKENS_DIR] = tokens_table([token_row(r) for r in encoded])
    if final:
        tables[FAILURES_DIR] = failures_table([failure_row(r) for r in final])
    if retryable:
        tables[RETRYABLE_DIR] = failures_table([failure_row(r) for r in retryable])
    return tables


def write_records(output: OutputFolder, records: list, provenance: dict) -> dict:
    """Commit one batch's shards; returns its summary."""
    files = {}
    provenance = redact_all(provenance)  # a checkpoint URL may carry credentials
    for folder, table in shard_tables(records).items():
        files[folder] = output.write_shard(folder, table, provenance if folder == TOKENS_DIR else None)
    encoded = [r for r in records if isinstance(r, EncodedChunk)]
    failures = [r for r in records if isinstance(r, Failure)]
    return {
        "token_rows": len(encoded),
        "failed": sum(not f.retryable for f in failures),
        "retryable": sum(f.retryable for f in failures),
        # an input is done when its last chunk is written (chunks of one input are written in order)
        "inputs_done": sum(r.info.chunk_index == r.info.num_chunks - 1 for r in encoded) + len(failures),
        "audio_s": float(sum(r.info.duration_s for r in encoded)),
        "token_pairs": int(sum(r.num_frames for r in encoded)),
        "failure_types": json.dumps(Counter(f.error_type for f in failures if not f.retryable)),
        "retryable_types": json.dumps(Counter(f.error_type for f in failures if f.retryable)),
        "shards": len(files),
        # the keys committed, so the driver keeps the output's state without reading shards again
        "token_keys_json": json.dumps([[r.info.id, r.info.chunk_index, r.info.num_chunks] for r in encoded]),
        "failed_ids_json": json.dumps([f.id for f in failures if not f.retryable]),
    }

"""Write stage: a batch of encoded rows → one committed tokens shard and/or one failures shard.

Returns a one-row summary per batch (counts, audio seconds, token pairs, failure types, file
names) for the driver's progress display and manifest.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from ..output import FAILURES_DIR, TOKENS_DIR, OutputFolder, failures_table, tokens_table
from .encode import batch_to_rows


def write_rows(output: OutputFolder, rows: list[dict], run_info: dict) -> dict:
    ok = [r for r in rows if not r["error_type"]]
    failed = [r for r in rows if r["error_type"]]
    token_file = failure_file = ""
    if ok:
        provenance = {**json.loads(ok[0]["provenance_json"]), **run_info}
        token_file = output.write_shard(TOKENS_DIR, tokens_table([_token_record(r) for r in ok]), provenance)
    if failed:
        failure_file = output.write_shard(FAILURES_DIR, failures_table([_failure_record(r) for r in failed]))
    return {
        "token_rows": len(ok),
        "failed": len(failed),
        "audio_s": float(sum(r["duration_s"] for r in ok)),
        "token_pairs": int(sum(r["num_frames"] for r in ok)),
        "failure_types": json.dumps(Counter(r["error_type"] for r in failed)),
        "token_file": token_file,
        "failure_file": failure_file,
    }


def _token_record(row: dict) -> dict:
    return {
        "id": row["id"], "uri": row["uri"], "chunk_index": row["chunk_index"], "num_chunks": row["num_chunks"],
        "chunk_start_s": row["chunk_start_s"], "duration_s": row["duration_s"],
        "source_sample_rate": row["source_sample_rate"], "source_channels": row["source_channels"],
        "num_frames": row["num_frames"], "semantic": np.asarray(row["semantic"], np.uint16),
        "acoustic": np.asarray(row["acoustic"], np.uint16),
        "labels": json.loads(row["labels_json"]) or None, "human_labels": json.loads(row["human_labels_json"]) or None,
    }


def _failure_record(row: dict) -> dict:
    return {"id": row["id"], "uri": row["uri"], "stage": row["error_stage"], "error_type": row["error_type"],
            "message": row["error_message"]}


def write_batch(batch: dict, output: OutputFolder, run_info: dict) -> dict:
    """Ray Data adapter for `write_rows`."""
    summary = write_rows(output, batch_to_rows(batch), run_info)
    return {key: np.asarray([value]) for key, value in summary.items()}

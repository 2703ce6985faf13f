"""Decode stage (CPU tasks): item with bytes → mono 16 kHz chunk rows, or one failure row.

Long files are cut into chunks of whole 10.24 s windows (default 30 windows = 307.2 s) so that
memory per row stays bounded. Each chunk is encoded as a clip of its own; see `EncodeStage` for
how its tokens are trimmed so consecutive chunks tile the file's timeline.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..audio import TARGET_SAMPLE_RATE_HZ, decode_channel0, to_mono_16k
from ..codecs.semanticodec.variants import SEGMENT_SAMPLES
from ..errors import AudioInputError

DEFAULT_CHUNK_WINDOWS = 30
DEFAULT_MAX_DURATION_S = 6 * 3600.0

ROW_FIELDS = (
    "id", "uri", "chunk_index", "num_chunks", "chunk_start_s", "duration_s", "source_sample_rate",
    "source_channels", "labels_json", "human_labels_json", "waveform", "error_stage", "error_type", "error_message",
)


def failure_row(item: dict, stage: str, error_type: str, message: str) -> dict:
    row = _base_row(item)
    row.update(error_stage=stage, error_type=error_type, error_message=message)
    return row


def _base_row(item: dict) -> dict:
    return {
        "id": item["id"], "uri": item["uri"], "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0,
        "duration_s": 0.0, "source_sample_rate": 0, "source_channels": 0,
        "labels_json": json.dumps(item.get("labels")), "human_labels_json": json.dumps(item.get("human_labels")),
        "waveform": np.zeros(0, np.float32), "error_stage": "", "error_type": "", "error_message": "",
    }


def decode_item(item: dict, *, chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
                max_duration_s: float = DEFAULT_MAX_DURATION_S) -> list[dict]:
    """One item → its chunk rows (waveform set), or a single failure row (error_* set)."""
    if item.get("error_type"):
        return [failure_row(item, item["error_stage"], item["error_type"], item["error_message"])]
    try:
        samples, rate, channels = decode_channel0(
            item["data"], start_s=item.get("start_s"), end_s=item.get("end_s"), max_duration_s=max_duration_s
        )
        import torch

        mono = to_mono_16k(torch.from_numpy(samples)[None], rate).numpy()
    except AudioInputError as error:
        return [failure_row(item, "decode", type(error).__name__, str(error))]
    except Exception as error:  # an unforeseen decoder failure is still this input's failure
        return [failure_row(item, "decode", type(error).__name__, f"{error}")]
    chunk_samples = chunk_windows * SEGMENT_SAMPLES
    count = max(1, math.ceil(len(mono) / chunk_samples))
    rows = []
    for index in range(count):
        piece = mono[index * chunk_samples : (index + 1) * chunk_samples]
        row = _base_row(item)
        row.update(
            chunk_index=index, num_chunks=count, chunk_start_s=index * chunk_samples / TARGET_SAMPLE_RATE_HZ,
            duration_s=len(piece) / TARGET_SAMPLE_RATE_HZ, source_sample_rate=int(rate),
            source_channels=int(channels), waveform=np.ascontiguousarray(piece, dtype=np.float32),
        )
        rows.append(row)
    return rows

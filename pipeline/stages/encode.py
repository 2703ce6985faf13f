"""Encode stage: rows with 16 kHz waveforms → rows with semantic/acoustic token lists.

`encode_rows` is the plain function; `EncodeStage` is the Ray Data callable class that holds
one codec per actor (one actor per GPU, or CPU actors). Failure rows pass through untouched;
an encoder error is pinned to the row that caused it by retrying the batch row by row.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from ..codecs.semanticodec import SemantiCodec
from ..codecs.semanticodec.lengths import kept_token_count

log = logging.getLogger(__name__)


def chunk_token_count(codec: SemantiCodec, row: dict) -> int:
    """Tokens kept for a row. The last (or only) chunk follows the official trimming; an inner
    chunk is a whole number of windows and keeps exactly its windows' tokens, so consecutive
    chunks tile the file's timeline (the official rule would add a silent window's tokens)."""
    samples = len(row["waveform"])
    if row["chunk_index"] < row["num_chunks"] - 1:
        return round(samples / 16000 * codec.frame_rate)
    return kept_token_count(samples, codec.variant.stack_factor)


def encode_rows(codec: SemantiCodec, rows: list[dict]) -> list[dict]:
    """Encode the rows that have audio (one packed call); set token columns, drop the waveform."""
    provenance = json.dumps(codec.provenance.to_dict(), sort_keys=True)
    todo = [r for r in rows if not r["error_type"]]
    try:
        tokens = codec.encode([r["waveform"] for r in todo], sample_rate=16000)
    except Exception:  # find the row(s) at fault; the others still get their tokens
        tokens = [_encode_one(codec, row) for row in todo]
    for row, tok in zip(todo, tokens):
        if tok is not None:
            tok = tok[: chunk_token_count(codec, row)]
            row.update(semantic=tok[:, 0].astype(np.uint16), acoustic=tok[:, 1].astype(np.uint16), num_frames=len(tok))
    for row in rows:
        row.setdefault("semantic", np.zeros(0, np.uint16))
        row.setdefault("acoustic", np.zeros(0, np.uint16))
        row.setdefault("num_frames", 0)
        row["provenance_json"] = provenance
        row.pop("waveform", None)
    return rows


def _encode_one(codec: SemantiCodec, row: dict):
    try:
        return codec.encode([row["waveform"]], sample_rate=16000)[0]
    except Exception as error:  # recorded against this row
        log.warning("encode failed for %s: %s", row["id"], error)
        row.update(error_stage="encode", error_type=type(error).__name__, error_message=str(error))
        return None


class EncodeStage:
    """Ray Data callable class: `ds.map_batches(EncodeStage, fn_constructor_kwargs=..., num_gpus=1)`."""

    def __init__(self, codec_kwargs: dict, torch_threads: int | None = None) -> None:
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        kwargs = dict(codec_kwargs)
        if kwargs.get("device", "auto") == "auto":
            kwargs["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        self.codec = SemantiCodec.from_pretrained(**kwargs)

    def __call__(self, batch: dict) -> dict:
        rows = batch_to_rows(batch)
        return rows_to_batch(encode_rows(self.codec, rows))


def batch_to_rows(batch: dict) -> list[dict]:
    names = list(batch)
    count = len(batch[names[0]]) if names else 0
    return [{name: _plain(batch[name][i]) for name in names} for i in range(count)]


def rows_to_batch(rows: list[dict]) -> dict:
    if not rows:
        return {}
    batch = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if isinstance(values[0], np.ndarray):
            column = np.empty(len(values), dtype=object)
            column[:] = values
            batch[name] = column
        else:
            batch[name] = np.asarray(values)
    return batch


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value

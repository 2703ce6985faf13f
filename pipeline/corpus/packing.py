"""Concatenate-and-chunk packing with document boundaries recorded."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PackedSequence:
    input_ids: np.ndarray  # [L] (interleaved) or [2, L] (parallel); L = seq_len except maybe the last
    boundaries: list[dict] = field(default_factory=list)
    """One entry per document piece: id, chunk_index, shard, uri, source_start_s, source_end_s (the
    span of the source object), seq_start, doc_start, length."""


def pack(documents: Iterable[tuple[dict, np.ndarray]], seq_len: int,
         drop_last: bool = False) -> Iterator[PackedSequence]:
    """(document info, ids) pairs → sequences of `seq_len` ids along the last axis.

    A document longer than the space left continues in the next sequence; every piece is
    recorded, so documents (and shards) are never joined silently.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be ≥ 1, got {seq_len}")
    pieces: list[np.ndarray] = []
    boundaries: list[dict] = []
    filled = 0
    for info, ids in documents:
        offset, length = 0, ids.shape[-1]
        while offset < length:
            take = min(seq_len - filled, length - offset)
            pieces.append(ids[..., offset : offset + take])
            boundaries.append({**info, "seq_start": filled, "doc_start": offset, "length": take})
            filled += take
            offset += take
            if filled == seq_len:
                yield PackedSequence(np.concatenate(pieces, axis=-1), boundaries)
                pieces, boundaries, filled = [], [], 0
    if filled and not drop_last:
        yield PackedSequence(np.concatenate(pieces, axis=-1), boundaries)

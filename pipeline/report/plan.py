"""The plan of a spot check: which rows to decode (seeded, spread across shards and labels; see
picks.py) and what to decode of each (its first `max_decode_s` seconds, its own noise seed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import DecodeRequest
from .picks import choose_picks, index_rows, read_picked_rows


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """A picked token row (all its columns plus shard, shard_path, row) and its decode request."""

    row: dict
    request: DecodeRequest
    usable: int  # pairs usable as pairs: min(len(semantic), len(acoustic))
    seconds: float  # of audio compared: the row's duration, or what the decoded pairs cover when cut

    @property
    def truncated(self) -> bool:
        return len(self.request.tokens) < self.usable


def decode_tokens_of(row: dict, frame_rate: float, max_decode_s: float | None) -> tuple[np.ndarray, int]:
    """(tokens [limit, 2] to decode, pairs usable as pairs): a row decodes its first
    `max_decode_s` seconds at most (None or 0: all of it)."""
    semantic = np.asarray(row["semantic"], np.int64)
    acoustic = np.asarray(row["acoustic"], np.int64)
    usable = min(len(semantic), len(acoustic))
    limit = usable if not max_decode_s else min(usable, max(1, round(max_decode_s * frame_rate)))
    return np.stack([semantic[:limit], acoustic[:limit]], axis=1), usable


def plan_rows(rows: list[dict], frame_rate: float, max_decode_s: float | None, seed: int) -> list[PlannedRow]:
    """Pick k decodes with noise seed `seed + k`."""
    planned = []
    for k, row in enumerate(rows):
        tokens, usable = decode_tokens_of(row, frame_rate, max_decode_s)
        seconds = len(tokens) / frame_rate if len(tokens) < usable else float(row["duration_s"])
        planned.append(PlannedRow(row, DecodeRequest(k, tokens, seed + k), usable, seconds))
    return planned


def pick_rows(fs, shards: list[str], count: int, seed: int) -> list[dict]:
    """The full token rows of `count` seeded picks."""
    return read_picked_rows(fs, choose_picks(index_rows(fs, shards), count, seed))

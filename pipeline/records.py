"""The typed records that flow through a tokenize run (no Ray, no I/O).

    SourceItem ──read+decode──► AudioChunk ──encode──► EncodedChunk
         └────────────────────────┴──────────────────────┴──► Failure

Every source yields `SourceItem`s; an input that cannot be read, decoded or encoded becomes a
`Failure` carrying the stage and reason, so nothing is dropped. Records are plain dataclasses with
slots; the Ray adapters (`pipeline/tokenize/stages.py`) turn batches of them into columns and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The stages a failure is recorded at (read, decode, encode), with the errors each may admit.
from .content_errors import STAGE_DECODE, STAGE_ENCODE, STAGE_READ, admit_failure  # noqa: F401 (re-exported)


@dataclass(slots=True)
class Failure:
    """An input that produced no tokens, and why."""

    id: str
    uri: str
    stage: str
    error_type: str
    message: str
    retryable: bool = False  # transient (I/O, credentials, device): not final, a rerun retries it

    @classmethod
    def from_error(cls, id: str, uri: str, stage: str, error: BaseException | str,
                   error_type: str | None = None, retryable: bool = False) -> Failure:
        """The failure of an input, when `error` may write it off (`content_errors.admit_failure`:
        a content error, a reason of our own, or a retryable failure); else raises a `Fault`."""
        admit_failure(stage, error, retryable=retryable)
        message = str(error) or repr(error)
        kind = error_type or (type(error).__name__ if isinstance(error, BaseException) else "Error")
        return cls(id=id, uri=uri, stage=stage, error_type=kind, message=message, retryable=retryable)


@dataclass(slots=True)
class SourceItem:
    """One input as a source yields it: its bytes (or the failure that kept us from them)."""

    id: str
    uri: str
    data: bytes | None = None
    labels: list[str] | None = None
    human_labels: list[str] | None = None
    start_s: float | None = None
    end_s: float | None = None
    meta: dict[str, Any] | None = None  # extra scalar manifest columns, carried into the token rows
    failure: Failure | None = None


@dataclass(slots=True)
class ChunkInfo:
    """Where a chunk sits in its input, and what the input was."""

    id: str
    uri: str
    chunk_index: int = 0
    num_chunks: int = 1
    chunk_start_s: float = 0.0  # in the input (a manifest segment starts at 0)
    duration_s: float = 0.0
    source_start_s: float = 0.0  # the span of the source object the chunk covers, in the source's own time
    source_end_s: float = 0.0
    source_sample_rate: int = 0
    source_channels: int = 0
    labels: list[str] | None = None
    human_labels: list[str] | None = None
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class AudioChunk:
    """A decoded chunk: mono 16 kHz float32 samples, ready for the encoder.

    With `resample_from` set (resampling left to the encoder), `waveform` is instead the chunk's
    resampler input span at that source rate (`audio.SpanCutter`); the encoder resamples it to
    `info.duration_s` x 16 kHz samples."""

    info: ChunkInfo
    waveform: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    resample_from: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.info.id, self.info.chunk_index)


@dataclass(slots=True)
class EncodedChunk:
    """A chunk's tokens: one (semantic, acoustic) pair per step, uint16."""

    info: ChunkInfo
    semantic: np.ndarray
    acoustic: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(len(self.semantic))

    @property
    def key(self) -> tuple[str, int]:
        return (self.info.id, self.info.chunk_index)

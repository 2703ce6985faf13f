"""The narrow interface every codec of the pipeline offers (after AudioCraft's CompressionModel)."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Codec(Protocol):
    sample_rate: int
    """Sample rate (Hz) the codec works at; inputs at other rates are resampled."""
    frame_rate: float
    """Token frames (rows of the [T, num_codebooks] token array) per second of audio."""
    num_codebooks: int
    """Number of parallel token streams (columns of the token array)."""
    cardinalities: tuple[int, ...]
    """Vocabulary size of each stream."""

    def encode(
        self, waveforms: Sequence[np.ndarray], sample_rate: int | Sequence[int]
    ) -> list[np.ndarray]:
        """Waveforms (mono [N] or channels-first [C, N], float) → int64 token arrays [T, num_codebooks]."""
        ...

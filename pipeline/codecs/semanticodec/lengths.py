"""Length bookkeeping of the official encoder, reproduced operation for operation.

The official code rounds the duration up to a multiple of 0.16 s (one AudioMAE time patch)
with Python float `%`, then counts tokens from that. The float rounding is part of the
contract: a 1 s clip gives 57 tokens at rate 100, not 56, and cleaning the arithmetic up would
change token counts. Keep the expressions exactly as written.
"""

from __future__ import annotations

import math

from .variants import SAMPLE_RATE_HZ, SEGMENT_SAMPLES

PATCH_SECONDS = 0.16  # 16 fbank frames of 10 ms: one AudioMAE time patch
TOKENS_PER_PATCH_AT_RATE_100 = 8  # eight frequency patches per time patch


def kept_token_count(num_samples: int, stack_factor: float) -> int:
    """Number of token pairs `encode` returns for `num_samples` samples of 16 kHz audio."""
    duration = num_samples / SAMPLE_RATE_HZ
    rounded = duration + (PATCH_SECONDS - duration % PATCH_SECONDS)
    target = ((TOKENS_PER_PATCH_AT_RATE_100 * rounded) / PATCH_SECONDS) / stack_factor
    return math.ceil(target)


def padding_samples(num_samples: int) -> int:
    """Zeros appended after the audio. Always > 0: an exact multiple gains a whole silent segment."""
    return SEGMENT_SAMPLES - num_samples % SEGMENT_SAMPLES


def segment_count(num_samples: int) -> int:
    """Number of 10.24 s windows the padded audio is cut into."""
    return (num_samples + padding_samples(num_samples)) // SEGMENT_SAMPLES


def row_token_count(duration_s: float, chunk_index: int, num_chunks: int, token_rate: int) -> int:
    """Token pairs the pipeline keeps for one token row (a chunk of `duration_s` seconds).

    An inner chunk (not the last of its file) keeps exactly its whole windows' pairs,
    round(seconds x pairs per second); a last or only chunk follows the official trimming
    (`kept_token_count`, rounded up to the next 0.16 s patch: a 1.0 s clip has 57 pairs at rate 100).
    """
    samples = int(round(duration_s * SAMPLE_RATE_HZ))
    if chunk_index < num_chunks - 1:
        return round(samples / SAMPLE_RATE_HZ * token_rate / 2)
    if samples <= 0:
        return 0
    return kept_token_count(samples, 100 / token_rate)

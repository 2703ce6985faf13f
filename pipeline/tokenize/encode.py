"""Encode decoded chunks with a codec: AudioChunk → EncodedChunk, or a Failure pinned to one input.

Only the codec's validation of an input (`pipeline/content_errors.py`) makes a chunk a Failure.
Every other error propagates: a device error (a sticky CUDA error, out of memory after the codec
split the pass) ends the actor so that Ray restarts it and retries the batch (see
`stages.EncoderActor`); anything else (a library that cannot load, a bug) stops the run. Neither
says anything about the input, and a broken worker would otherwise write every later input off.
"""

from __future__ import annotations

import logging

import numpy as np

from ..audio.resample import resample_spans
from ..codecs.semanticodec.lengths import row_token_count, segment_count
from ..codecs.semanticodec.prepare import PreparedClip, prepare_clip
from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ
from ..content_errors import content_error_types
from ..records import STAGE_ENCODE, AudioChunk, EncodedChunk, Failure

log = logging.getLogger(__name__)


def prepared(chunk: AudioChunk, token_rate: int) -> PreparedClip:
    """The chunk's audio as the read+decode task prepared it (padded, centred: `prepare_clip`), with
    the pipeline's token count: an inner chunk of a long file keeps exactly its windows' tokens."""
    info = chunk.info
    samples = int(round(info.duration_s * SAMPLE_RATE_HZ))
    return PreparedClip(samples=chunk.waveform, num_windows=segment_count(samples),
                        kept_tokens=row_token_count(info.duration_s, info.chunk_index, info.num_chunks, token_rate))


def resample_spans_on_device(codec, chunks: list[AudioChunk]) -> list[AudioChunk]:
    """Chunks whose decode left the resampling to the encoder (`resample_from`): their spans are
    resampled on the codec's device (one convolution per source rate and span length), then
    prepared (pad, centre) there, as a decode task would have on the host; the audio stays on the
    device until the encoder's passes gather it. The others pass unchanged."""
    pending = [index for index, chunk in enumerate(chunks) if chunk.resample_from]
    if not pending:
        return chunks
    waves = resample_spans(
        [chunks[i].waveform for i in pending], [chunks[i].resample_from for i in pending],
        [round(chunks[i].info.duration_s * SAMPLE_RATE_HZ) for i in pending], SAMPLE_RATE_HZ, codec.device,
    )
    chunks = list(chunks)
    for index, wave in zip(pending, waves, strict=True):
        chunks[index] = AudioChunk(chunks[index].info, prepare_clip(wave, codec.variant).samples)
    return chunks


def encode_chunks(codec, chunks: list[AudioChunk]) -> list[EncodedChunk | Failure]:
    """All chunks in one packed call (the codec fills forward passes of `max_batch_windows`); when
    one chunk's content is refused, chunk by chunk, so the chunk at fault becomes a Failure and
    the others still get their tokens."""
    if not chunks:
        return []
    chunks = resample_spans_on_device(codec, chunks)
    rate = codec.variant.token_rate
    try:
        tokens = codec.encode_prepared([prepared(chunk, rate) for chunk in chunks])
    except content_error_types(STAGE_ENCODE) as error:
        log.warning("batch of %d chunks failed (%s: %s); encoding one by one", len(chunks), type(error).__name__, error)
        return [_encode_one(codec, chunk) for chunk in chunks]
    return [_encoded(codec, chunk, tok) for chunk, tok in zip(chunks, tokens, strict=True)]


def _encode_one(codec, chunk: AudioChunk) -> EncodedChunk | Failure:
    try:
        return _encoded(codec, chunk, codec.encode_prepared([prepared(chunk, codec.variant.token_rate)])[0])
    except content_error_types(STAGE_ENCODE) as error:
        log.warning("encode failed for %s chunk %d: %s", chunk.info.id, chunk.info.chunk_index, error)
        return Failure.from_error(chunk.info.id, chunk.info.uri, STAGE_ENCODE, error,
                                  retryable=chunk.info.num_chunks > 1)


def _encoded(codec, chunk: AudioChunk, tokens: np.ndarray) -> EncodedChunk:
    info = chunk.info
    tokens = tokens[: row_token_count(info.duration_s, info.chunk_index, info.num_chunks, codec.variant.token_rate)]
    return EncodedChunk(info=info, semantic=tokens[:, 0].astype(np.uint16), acoustic=tokens[:, 1].astype(np.uint16))

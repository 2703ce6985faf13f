"""Loading audio (the failure stage "decode"): an item's bytes → mono 16 kHz chunks for the encoder, or
the failure that stops it. ("Decode" elsewhere is the codec's tokens → audio.)

The codec's input rule (see `pipeline/codecs/semanticodec/input.py`): channel 0, resampled to 16 kHz by torchaudio's
resampler. Long inputs are cut into chunks of `chunk_windows` whole 10.24 s windows; each chunk is
encoded as a clip of its own.

Memory: an input with at most one chunk's worth of samples at its own rate (`chunk_windows` x
163,840: 307 s at 16 kHz, 111 s at 44.1 kHz, 102 s at 48 kHz) is decoded and resampled whole,
the exact official path. A longer one is streamed: blocks of `READ_BLOCK_FRAMES` source frames go through a
`StreamingResampler` and chunks are yielded as they fill, so a decode holds at most the chunk
being filled plus the one the caller holds, a block and the item's own bytes, whatever the
file's length. What a header claims never sizes a buffer: an input whose length is only an
estimate (MP3, FFmpeg's containers) is decoded whole only up to one chunk's worth + 1 frame, and
counted for the streamed path only up to `max_duration_s` (a Matroska that claims 1 s but holds
20 h stops decoding at the limit and fails there).

With `resample=False` (`--resample-on encoder`) a decode task does not resample: each chunk of
audio not at 16 kHz carries its resampler input span at the source rate (`resample.SpanCutter`,
streamed the same way), and the encoder turns it into the same 16 kHz samples on its device
(`tokenize.encode.resample_spans_on_device`). Chunk boundaries, lengths and every rule below are the same.

Rules a decode enforces (each breach is a `Failure` with stage "decode", never retryable):
- Lengths: WAV/FLAC/Ogg headers give exact frame counts and a file that decodes short of its
  header is truncated. MP3's count is libsndfile's estimate, so for MP3 the decoded samples are
  trusted; a mismatch over `LENGTH_MISMATCH_WARN` is logged and noted in the chunks' meta. Formats
  libsndfile does not read (AAC/M4A/MP4, WebM/Matroska, WMA, ...) are decoded with FFmpeg
  (`ffmpeg.FFmpegReader`, PyAV), their container durations treated as MP3's estimates. The bytes
  are opened by the first reader that takes them (`readers.open_audio`: soundfile, then FFmpeg).
- Segments: `end_s` may lie at most max(`SEGMENT_END_TOLERANCE_S`, `SEGMENT_END_TOLERANCE` x the
  segment) past the file's end (the segment then ends with the file); further out the manifest
  does not describe this file and the input fails ("segment 10-20 s requested, file is 12.3 s").
  A `start_s` at or past the end fails too.
- Inputs over `max_duration_s`, empty ones and NaN/inf samples fail.
- Float audio out of [-1, 1] (a float WAV peaking at 3.7e5) is tokenized as it is, with a warning
  in the log and in the chunks' meta (`meta["warning"]`).

Only errors about the input's own bytes become its Failure (`pipeline/content_errors.py`: the
decoders' errors on its bytes and the rules above); any other error (a library that cannot load,
a bug) propagates and stops the run, so that no valid input is written off.

A Failure yielded after chunks of the same input (a file found damaged part-way through a
streamed decode) supersedes them: the caller drops that input's chunks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np

from ..codecs.semanticodec.input import resampled_length, resampler
from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ, SEGMENT_SAMPLES
from ..content_errors import content_error_types
from ..errors import AudioInputError
from ..records import STAGE_DECODE, AudioChunk, ChunkInfo, Failure, SourceItem
from .ffmpeg import FFmpegReader
from .libsndfile import SoundfileReader
from .readers import READ_BLOCK_FRAMES, AudioDecodeError, AudioReader, open_audio
from .resample import SpanCutter, StreamingResampler

log = logging.getLogger(__name__)

READERS = (SoundfileReader, FFmpegReader)  # tried in this order (`readers.open_audio`)
ONE_READ_SAMPLES = 1 << 22  # a short input with at most this many samples (all channels) is read at once
LENGTH_MISMATCH_WARN = 0.01
SEGMENT_END_TOLERANCE_S = 0.5
SEGMENT_END_TOLERANCE = 0.01


def load_chunks(item: SourceItem, *, chunk_windows: int, max_duration_s: float,
               resample: bool = True) -> Iterator[AudioChunk | Failure]:
    """The item's chunks (AudioChunk, in order), or its Failure; see the module docstring.

    `resample=False` leaves the resampling to the encoder: a chunk of audio not at 16 kHz then
    carries its resampler input span (`AudioChunk.resample_from` = the source rate), see
    `resample.SpanCutter`."""
    if item.failure is not None:
        yield item.failure
        return
    try:
        source = open_audio(item.data, READERS)
        try:
            chunk_samples = chunk_windows * SEGMENT_SAMPLES
            spans = not resample and SpanCutter.supported(source.rate, SAMPLE_RATE_HZ, chunk_samples)
            yield from _chunks(item, source, chunk_samples, max_duration_s, spans)
        finally:
            source.close()
    except content_error_types(STAGE_DECODE) as error:  # the input's own bytes (pipeline/content_errors.py)
        yield Failure.from_error(item.id, item.uri, STAGE_DECODE, error)


def _chunks(item: SourceItem, source: AudioReader, chunk_samples: int, max_duration_s: float,
            spans: bool = False) -> Iterator[AudioChunk]:
    """`spans` (resampling left to the encoder): `_cut_spans` replaces both resampling paths."""
    warnings: list[str] = []
    whole_frames = chunk_samples  # up to one chunk's worth of samples at the source rate: decoded whole
    frames = source.frames
    if not source.exact_length:
        if 0 < frames <= whole_frames:  # short by its estimate: decode it (but never past one chunk's worth + 1)
            samples = _concatenate(source.blocks(0, whole_frames + 1))
            if len(samples) <= whole_frames:  # it is short: cut the segment from the true length
                _check_estimate(item, source, len(samples), warnings)
                first, last = _segment(item, source.rate, len(samples))
                _check_duration(source, first, last, max_duration_s)
                if spans:
                    yield from _cut_spans(item, source, [samples[first:last]], last - first, chunk_samples, warnings)
                    return
                yield from _resample_and_cut(item, source, samples[first:last], chunk_samples, warnings)
                return
            del samples  # longer than its estimate said: streamed like any long input
        frames = _count_frames(item, source, max_duration_s)  # the streamed path needs the exact length up front
        _check_estimate(item, source, frames, warnings)
    first, last = _segment(item, source.rate, frames)
    _check_duration(source, first, last, max_duration_s)
    if spans:
        yield from _cut_spans(item, source, source.blocks(first, last - first), last - first, chunk_samples, warnings)
        return
    if last - first > whole_frames:
        yield from _stream_chunks(item, source, first, last, chunk_samples, warnings)
        return
    one_read = (last - first) * source.channels <= ONE_READ_SAMPLES
    block = max(1, last - first) if one_read else READ_BLOCK_FRAMES
    samples = _concatenate(source.blocks(first, last - first, block=block))
    if len(samples) < last - first and source.exact_length:
        raise AudioDecodeError(f"truncated: header says {last - first} frames, only {len(samples)} decoded")
    yield from _resample_and_cut(item, source, samples, chunk_samples, warnings)


def _concatenate(blocks: Iterator[np.ndarray]) -> np.ndarray:
    blocks = list(blocks)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _count_frames(item: SourceItem, source, max_duration_s: float) -> int:
    """The decoded length of an input whose header only estimates it, counted block by block (no
    samples kept) and only as far as it matters: to the requested segment's end, or one frame past
    the duration limit. An input whose container claims 1 s but holds 20 h stops there."""
    first = round((item.start_s or 0.0) * source.rate)
    over = first + math.floor(max_duration_s * source.rate) + 1  # a frame here proves the limit is passed
    needed = over if item.end_s is None else min(over, max(first + 1, round(item.end_s * source.rate)))
    counted = sum(len(block) for block in source.blocks(0, needed))
    if counted >= over:
        raise AudioInputError(f"over the {max_duration_s:.0f} s limit: decoding stopped after {max_duration_s:.0f} s "
                              f"(the {source.format} header estimated {source.frames / source.rate:.0f} s)")
    return counted


def _check_duration(source: AudioReader, first: int, last: int, max_duration_s: float) -> None:
    if (last - first) / source.rate > max_duration_s:
        raise AudioInputError(f"{(last - first) / source.rate:.0f} s of audio is over the {max_duration_s:.0f} s limit")


def _segment(item: SourceItem, rate: int, frames: int) -> tuple[int, int]:
    """[first, last) frames of the requested segment, or AudioInputError when it is not in the file."""
    first = round((item.start_s or 0.0) * rate)
    last = frames if item.end_s is None else round(item.end_s * rate)
    if item.start_s is None and item.end_s is None:
        return first, last
    start_s, end_s = item.start_s or 0.0, item.end_s if item.end_s is not None else frames / rate
    tolerance = max(SEGMENT_END_TOLERANCE_S, SEGMENT_END_TOLERANCE * (end_s - start_s))
    if first >= frames or (last - frames) / rate > tolerance:
        raise AudioInputError(f"segment {start_s:g}-{end_s:g} s requested, file is {frames / rate:.1f} s")
    return first, min(last, frames)


def _check_estimate(item: SourceItem, source: AudioReader, decoded: int, warnings: list[str]) -> None:
    if source.frames and abs(decoded - source.frames) > LENGTH_MISMATCH_WARN * source.frames:
        warnings.append(f"{source.format} header says {source.frames} frames, {decoded} decoded "
                        "(estimated length; decoded samples kept)")
        log.warning("%s: %s", item.id, warnings[-1])


def _resample_and_cut(item, source: AudioReader, samples: np.ndarray, chunk_samples: int,
                      warnings: list[str]) -> Iterator[AudioChunk]:
    """The exact official path: the whole segment resampled at once, then cut into chunks."""
    import torch

    if samples.size == 0:
        segment = item.start_s is not None or item.end_s is not None
        raise AudioInputError("no samples (0-length audio" + (" in the requested segment)" if segment else ")"))
    if source.rate != SAMPLE_RATE_HZ:
        samples = resampler(source.rate, SAMPLE_RATE_HZ)(torch.from_numpy(samples)[None])[0].numpy()
    _check_peak(item, source, warnings)
    count = max(1, math.ceil(len(samples) / chunk_samples))
    for index in range(count):
        yield _chunk(item, source, samples[index * chunk_samples:(index + 1) * chunk_samples], index, count,
                     chunk_samples, warnings)


def _stream_chunks(item, source: AudioReader, first: int, last: int, chunk_samples: int,
                   warnings) -> Iterator[AudioChunk]:
    """Block by block through the streaming resampler; a chunk is yielded as soon as it is full."""
    total = resampled_length(source.rate, SAMPLE_RATE_HZ, last - first)
    count = max(1, math.ceil(total / chunk_samples))
    stream = StreamingResampler(source.rate, SAMPLE_RATE_HZ)
    chunk = np.empty(min(chunk_samples, total), np.float32)
    filled, index, decoded = 0, 0, 0

    def take(out: np.ndarray) -> Iterator[AudioChunk]:
        nonlocal chunk, filled, index
        while len(out):
            if index == count:
                raise RuntimeError("resampler gave more samples than its length rule")  # a bug, not the input
            used = min(len(chunk) - filled, len(out))
            chunk[filled:filled + used] = out[:used]
            filled, out = filled + used, out[used:]
            if filled == len(chunk):
                _check_peak(item, source, warnings)
                yield _chunk(item, source, chunk, index, count, chunk_samples, warnings)
                index += 1
                chunk, filled = np.empty(max(0, min(chunk_samples, total - index * chunk_samples)), np.float32), 0

    for block in source.blocks(first, last - first):
        decoded += len(block)
        yield from take(stream.push(block))
    if decoded < last - first:
        raise AudioDecodeError(f"truncated: header says {last - first} frames, only {decoded} decoded")
    yield from take(stream.finish())
    if index != count:
        raise RuntimeError(f"resampled length mismatch: {index} of {count} chunks")  # a bug, not the input


def _cut_spans(item, source: AudioReader, blocks, length: int, chunk_samples: int,
               warnings) -> Iterator[AudioChunk]:
    """Chunks holding resampler input spans at the source rate, for the encoder to resample."""
    if length == 0:
        raise AudioInputError("no samples (0-length audio)")
    cutter = SpanCutter(source.rate, SAMPLE_RATE_HZ, length, chunk_samples)
    count = len(cutter.spans)
    index, decoded = 0, 0

    def chunks(spans) -> Iterator[AudioChunk]:
        nonlocal index
        for span, output in spans:
            _check_peak(item, source, warnings)
            yield _chunk(item, source, span, index, count, chunk_samples, warnings, span_output=output)
            index += 1

    for block in blocks:
        decoded += len(block)
        yield from chunks(cutter.push(block))
    if decoded < length:
        if source.exact_length:
            raise AudioDecodeError(f"truncated: header says {length} frames, only {decoded} decoded")
        raise RuntimeError(f"decoded {decoded} frames of the {length} counted")  # a bug, not the input
    yield from chunks(cutter.finish())


def _check_peak(item: SourceItem, source: AudioReader, warnings: list[str]) -> None:
    if source.peak > 1.0 and not any(w.startswith("peak") for w in warnings):
        warnings.append(f"peak {source.peak:.2g} > 1.0: float audio not in [-1, 1]")
        log.warning("%s: peak %.3g > 1.0: float audio not in [-1, 1] (tokenized as it is)", item.id, source.peak)


def _chunk(item: SourceItem, source: AudioReader, samples: np.ndarray, index: int, count: int, chunk_samples: int,
           warnings: list[str], *, span_output: int | None = None) -> AudioChunk:
    """A chunk of 16 kHz `samples`, or (`span_output` given) a resampler input span at the source
    rate that the encoder turns into `span_output` 16 kHz samples."""
    meta = item.meta
    if warnings:
        meta = {**(item.meta or {}), "warning": "; ".join(warnings)}
    info = ChunkInfo(
        id=item.id, uri=item.uri, chunk_index=index, num_chunks=count,
        chunk_start_s=index * chunk_samples / SAMPLE_RATE_HZ,
        duration_s=(len(samples) if span_output is None else span_output) / SAMPLE_RATE_HZ,
        source_sample_rate=int(source.rate), source_channels=int(source.channels),
        labels=item.labels, human_labels=item.human_labels, meta=meta,
    )
    info.source_start_s = (item.start_s or 0.0) + info.chunk_start_s  # the span in the file's own time
    info.source_end_s = info.source_start_s + info.duration_s
    return AudioChunk(info=info, waveform=np.ascontiguousarray(samples, dtype=np.float32),
                      resample_from=0 if span_output is None else int(source.rate))

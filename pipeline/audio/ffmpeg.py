"""Reading the formats libsndfile cannot (AAC/M4A/MP4, WebM/Matroska, WMA, ...) with FFmpeg, via PyAV.

`audio.load` tries soundfile first (WAV, FLAC, MP3, Ogg Vorbis/Opus, AIFF, ...); only bytes it
refuses come here. FFmpeg is what torchaudio's own loader used for these formats, and PyAV's
wheels carry their own FFmpeg, so nothing needs installing beside pip.

`FFmpegReader` is an `AudioReader` (pipeline/audio/readers.py): rate, channels, an estimated
frame count (container durations are estimates: the decoded samples are trusted, as for MP3), and
`blocks(first, count)` of channel 0 as float32, decoded from the start each time (seeking in
compressed streams is not sample-exact).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np

from ..content_errors import ffmpeg_errors
from ..errors import AudioInputError
from .readers import READ_BLOCK_FRAMES, check_finite

# FFmpeg sample formats → the scale to float32 in [-1, 1] (planar variants end in "p").
_INTEGER_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


class FFmpegDecodeError(AudioInputError):
    """FFmpeg's refusal of the bytes, in its own words."""


class FFmpegReader:
    """One input's audio stream (the first one) through FFmpeg."""

    exact_length = False  # container durations are estimates
    float_audio = False  # lossy decoders overshoot ±1 a little: not a property of the input

    def __init__(self, data: bytes) -> None:
        import av

        self.data = data
        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                if not container.streams.audio:
                    raise FFmpegDecodeError(f"no audio stream in this {container.format.name} file")
                stream = container.streams.audio[0]
                context = stream.codec_context
                self.rate = int(context.sample_rate or 0)
                self.channels = int(context.channels or 0)
                self.format = f"{container.format.name}/{context.name}"
                self.frames = _estimated_frames(container, stream, self.rate)
        except ffmpeg_errors() as error:
            raise FFmpegDecodeError(f"FFmpeg cannot decode it: {_reason(error)}") from error
        self.peak = 0.0

    def close(self) -> None:
        pass  # every decode opens and closes its own container

    def blocks(self, first: int, count: int | None, block: int = READ_BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Channel 0 of frames [first, first + count) (to the end when None), float32, in blocks of
        at least `block` frames (the last may be shorter)."""
        position, remaining = 0, math.inf if count is None else count
        pending: list[np.ndarray] = []
        pending_frames = 0
        for samples in self._decoded():
            end = position + len(samples)
            if end <= first:
                position = end
                continue
            samples = samples[max(0, first - position):][: int(min(remaining, len(samples)))]
            position = end
            check_finite(samples)
            pending.append(samples)
            pending_frames += len(samples)
            remaining -= len(samples)
            if pending_frames >= block or remaining <= 0:
                yield np.concatenate(pending)
                pending, pending_frames = [], 0
            if remaining <= 0:
                return
        if pending:
            yield np.concatenate(pending)

    def _decoded(self) -> Iterator[np.ndarray]:
        import av

        try:
            with av.open(io.BytesIO(self.data), mode="r") as container:
                stream = container.streams.audio[0]
                for frame in container.decode(stream):
                    yield _channel0(frame)
        except ffmpeg_errors() as error:
            raise FFmpegDecodeError(f"FFmpeg cannot decode it: {_reason(error)}") from error


def _reason(error) -> str:
    """FFmpeg's own words ("Invalid data found when processing input"), without errno and file name."""
    return getattr(error, "strerror", None) or str(error)


def _channel0(frame) -> np.ndarray:
    """A decoded frame's first channel as float32."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: one row of interleaved samples
        array = array.reshape(-1, max(1, len(frame.layout.channels))).T
    samples = array[0]
    kind = frame.format.name.rstrip("p")
    if kind in _INTEGER_SCALE:
        offset = 128.0 if kind == "u8" else 0.0
        return ((samples.astype(np.float64) - offset) / _INTEGER_SCALE[kind]).astype(np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _estimated_frames(container, stream, rate: int) -> int:
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base) * rate)
    if container.duration:
        return round(container.duration / 1_000_000 * rate)
    return 0

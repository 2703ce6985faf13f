"""Reading the formats libsndfile knows (WAV, FLAC, MP3, Ogg Vorbis/Opus, AIFF, ...) with soundfile:
an `AudioReader` (pipeline/audio/readers.py), tried before FFmpeg."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np

from ..content_errors import libsndfile_errors
from .readers import READ_BLOCK_FRAMES, AudioDecodeError, check_finite

ESTIMATED_LENGTH_FORMATS = ("MP3",)  # libsndfile formats whose frame count is an estimate
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count of a stream whose header leaves it unknown (SF_COUNT_MAX)


class SoundfileReader:
    """The open file and what is known of it: rate, channels, exact or estimated length. A header
    with an invalid rate or no length is refused, so that FFmpeg, which counts frames, is tried."""

    def __init__(self, data: bytes) -> None:
        import soundfile as sf

        self.buffer = io.BytesIO(data)
        try:
            self.handle = sf.SoundFile(self.buffer)
        except libsndfile_errors() as error:
            raise self._cannot_decode(error) from error
        self.rate, self.channels = self.handle.samplerate, self.handle.channels
        self.frames, self.format = self.handle.frames, self.handle.format
        self.exact_length = self.handle.format not in ESTIMATED_LENGTH_FORMATS
        self.float_audio = self.handle.subtype in FLOAT_SUBTYPES
        self.peak = 0.0
        if self.rate <= 0:
            raise AudioDecodeError(f"invalid sample rate {self.rate}")
        if self.frames >= UNKNOWN_FRAMES:  # a FLAC stream that does not record its length: FFmpeg counts it
            self.close()
            raise AudioDecodeError(f"{self.format} header gives no length")

    def close(self) -> None:
        self.handle.close()

    def _cannot_decode(self, error: BaseException) -> AudioDecodeError:
        message = str(error).replace(f"Error opening {self.buffer!r}: ", "")
        return AudioDecodeError(f"soundfile cannot decode it: {message}")

    def blocks(self, first: int, count: int | None, block: int = READ_BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Channel 0 of frames [first, first + count) (to the end when None), float32, block by block."""
        try:
            self.handle.seek(first)
            remaining = math.inf if count is None else count
            while remaining > 0:
                frames = self.handle.read(int(min(block, remaining)), dtype="float32", always_2d=True)
                if len(frames) == 0:
                    return
                samples = np.ascontiguousarray(frames[:, 0])
                check_finite(samples)
                if self.float_audio and len(samples):
                    self.peak = max(self.peak, float(np.abs(samples).max()))
                remaining -= len(samples)
                yield samples
        except libsndfile_errors() as error:
            raise self._cannot_decode(error) from error

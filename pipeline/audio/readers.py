"""What reads an input's bytes: the `AudioReader` protocol, and `open_audio`, which tries readers
in turn and keeps each one's reason for refusing the bytes (as lhotse's `CompositeAudioBackend`
tries its backends).

A reader says what is known of the audio before it is decoded (rate, channels, a frame count,
exact or the container's estimate) and yields channel 0 as float32 blocks. Its constructor raises
an `AudioInputError` when the bytes are not for it; the message is its reason. The readers:
`libsndfile.SoundfileReader` (WAV, FLAC, MP3, Ogg, AIFF, ...) and `ffmpeg.FFmpegReader` (AAC/M4A,
WebM/Matroska, WMA, ...); `audio.load` tries them in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np

from ..errors import AudioInputError

READ_BLOCK_FRAMES = 1 << 18  # source frames per read


class AudioDecodeError(AudioInputError):
    """Bytes that no reader can decode (corrupt, truncated, not audio)."""


class AudioReader(Protocol):
    """One input's audio, opened from its bytes."""

    rate: int
    channels: int
    frames: int  # exact when `exact_length`, else the header's estimate (0: it gives none)
    format: str  # for messages: "WAV", "MP3", "mov,mp4,m4a,3gp,3g2,mj2/aac", ...
    exact_length: bool
    peak: float  # the largest |sample| of float audio read so far (stays 0.0 for other formats)

    def blocks(self, first: int, count: int | None, block: int = READ_BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Channel 0 of frames [first, first + count) (to the end when None), float32, block by block."""
        ...

    def close(self) -> None: ...


ReaderFactory = Callable[[bytes], AudioReader]


def open_audio(data: bytes | None, readers: Sequence[ReaderFactory]) -> AudioReader:
    """The first of `readers` that takes the bytes, or AudioDecodeError with every reader's reason
    ("soundfile cannot decode it: ...; FFmpeg cannot decode it: ..."). Only a reader's refusal
    (AudioInputError) moves on to the next; any other error (a library that cannot load) propagates."""
    if not data:
        raise AudioDecodeError("empty file (0 bytes)")
    reasons = []
    for open_reader in readers:
        try:
            reader = open_reader(data)
        except AudioInputError as refusal:
            reasons.append(str(refusal))
            continue
        if reader.rate <= 0:
            reader.close()
            raise AudioDecodeError(f"invalid sample rate {reader.rate}")
        return reader
    raise AudioDecodeError("; ".join([*(reason.rstrip(".") for reason in reasons[:-1]), *reasons[-1:]]))


def check_finite(samples: np.ndarray) -> None:
    if not np.isfinite(samples).all():
        raise AudioInputError(f"{int((~np.isfinite(samples)).sum())} NaN/inf samples")

"""The one audio synthesizer of the tests: chirps plus noise, different per seed, as arrays or files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def make_tone(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, float32 [channels, samples]; different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * seed + 400 * t) * t)
    waves = [chirp + 0.05 * rng.standard_normal(t.shape) for _ in range(channels)]
    return np.stack(waves).astype(np.float32)


def wav_bytes(seconds: float = 0.5, rate: int = 16000, fmt: str = "WAV") -> bytes:
    """A short constant (0.1) mono file in `fmt`: bytes for tests of sources, not of audio."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.full(int(seconds * rate), 0.1, np.float32), rate, format=fmt)
    return buffer.getvalue()


def flac_bytes(seconds: float, seed: int = 0, rate: int = 16000) -> bytes:
    """A mono FLAC file of `make_tone` audio."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, make_tone(seconds, rate, seed=seed)[0], rate, format="FLAC")
    return buffer.getvalue()


def write_flac_clips(folder: Path, count: int, seconds: float = 10.0, rate: int = 16000) -> list[str]:
    """`count` FLAC clips clip000.flac, clip001.flac, ... in `folder`; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"clip{i:03d}.flac" for i in range(count)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(flac_bytes(seconds, seed=i, rate=rate))
    return names


def ffmpeg_bytes(wave: np.ndarray, rate: int, container: str = "mp4", codec: str = "aac") -> bytes:
    """`wave` [channels, samples] encoded with FFmpeg through PyAV: AAC in MP4 (an .m4a), Opus in
    WebM, ... (formats libsndfile cannot read)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo" if wave.shape[0] == 2 else "mono"
        planar = stream.codec_context.format.is_planar
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, wave.shape[1], frame_size):
            block = np.ascontiguousarray(wave[:, start:start + frame_size], dtype=np.float32)
            data = block if planar else block.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format="fltp" if planar else "flt", layout=stream.layout.name)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def silent_matroska(seconds: float, rate: int = 16000, claimed_s: float | None = None) -> bytes:
    """`seconds` of FLAC silence in Matroska (about 270 bytes a second at 16 kHz: 20 h in 20 MB), whose
    container Duration says `claimed_s` instead when given: an input whose header lies about its length."""
    import struct

    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as out:
        stream = out.add_stream("flac", rate=rate)
        stream.layout = "mono"
        frame_size = 4608
        silence = np.zeros((1, frame_size), np.int16)
        for index in range(int(seconds * rate) // frame_size):
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, index * frame_size
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buffer.getvalue())
    if claimed_s is not None:
        duration = data.find(b"\x44\x89\x88")  # the Segment Info's Duration: an 8-byte float, in milliseconds
        assert duration > 0, "no Duration element to patch"
        data[duration + 3:duration + 11] = struct.pack(">d", claimed_s * 1000.0)
    return bytes(data)

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

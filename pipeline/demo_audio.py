"""Generated sample audio for the demo and the tests: varied formats, plus a few broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOOD_SAMPLES = {
    # name: (seconds, sample rate, channels, soundfile format, subtype)
    "speechlike_16k_mono.wav": (3.7, 16000, 1, "WAV", "PCM_16"),
    "music_44k1_stereo.flac": (12.0, 44100, 2, "FLAC", "PCM_24"),
    "tones_48k_24bit.flac": (5.0, 48000, 1, "FLAC", "PCM_24"),
    "noise_22k_vorbis.ogg": (4.0, 22050, 1, "OGG", "VORBIS"),
    "eight_channels_96k.wav": (1.5, 96000, 8, "WAV", "FLOAT"),
    "click_0p05s.wav": (0.05, 16000, 1, "WAV", "PCM_16"),
    "long_40s_16k.flac": (40.0, 16000, 1, "FLAC", "PCM_16"),
}
BAD_SAMPLES = ("zero_bytes.wav", "not_audio.wav", "truncated.flac", "no_samples.wav")


def synth(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """[samples, channels] float32: chirps, tones and noise, different per channel and seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    columns = []
    for ch in range(channels):
        f0 = 110 * (1 + ch) * (1 + seed % 5)
        sweep = 2 * np.pi * (300 + 800 * t / max(seconds, 1e-3)) * t * (1 + ch)
        tone = 0.25 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(sweep)
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t + ch)
        columns.append(tone * envelope + 0.03 * rng.standard_normal(t.size))
    return np.stack(columns, axis=1).astype(np.float32)


def write_samples(folder: str | Path, *, include_bad: bool = True) -> dict[str, Path]:
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for seed, (name, (seconds, rate, channels, fmt, subtype)) in enumerate(GOOD_SAMPLES.items()):
        path = folder / name
        sf.write(path, synth(seconds, rate, channels, seed), rate, format=fmt, subtype=subtype)
        paths[name] = path
    if include_bad:
        (folder / "zero_bytes.wav").write_bytes(b"")
        (folder / "not_audio.wav").write_text("this is a text file, not a RIFF/WAVE file\n")
        flac = (folder / "long_40s_16k.flac").read_bytes()
        (folder / "truncated.flac").write_bytes(flac[: len(flac) // 3])
        sf.write(folder / "no_samples.wav", np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
        paths.update({name: folder / name for name in BAD_SAMPLES})
    return paths

"""Shared fixtures: golden data location, generated audio, small synthetic checkpoints, embedded Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.codecs.semanticodec.synthetic import build_small_checkpoint, default_golden_dir

GOLDEN_CLIPS = {
    "a": "clip_a_3p7s_16k_mono.wav",
    "b": "clip_b_12s_44k1_stereo.wav",
    "c": "clip_c_10p24s_16k_tail_silence.wav",
    "d": "clip_d_21s_16k_mono.wav",
}


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = default_golden_dir()
    assert (path / "RECIPE.md").is_file(), f"golden vectors not found at {path} (set SEMANTICODEC_GOLDEN_DIR)"
    return path


def read_golden_clip(golden_dir: Path, clip: str) -> tuple[np.ndarray, int]:
    """A golden clip as float32 [channels, samples] (int16/32768, as torchaudio.load gives)."""
    import soundfile as sf

    data, rate = sf.read(golden_dir / GOLDEN_CLIPS[clip], dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


def make_tone(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, float32 [channels, samples]; different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * seed + 400 * t) * t)
    waves = [chirp + 0.05 * rng.standard_normal(t.shape) for _ in range(channels)]
    return np.stack(waves).astype(np.float32)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """Small synthetic encoders for every rate, codebooks for V = 4096 and 8192."""
    root = tmp_path_factory.mktemp("small-ckpt")
    return build_small_checkpoint(root, token_rates=(100, 50, 25), semantic_vocab_sizes=(4096, 8192))


@pytest.fixture(scope="session")
def ray_local():
    import os

    import ray

    from tests.pipeline.s3 import S3_ENV

    for key, value in S3_ENV.items():  # fake credentials for moto, inherited by Ray's workers
        os.environ.setdefault(key, value)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

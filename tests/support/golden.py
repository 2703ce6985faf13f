"""The golden reference clips (../shared/golden/semanticodec/), read as the official code reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN_CLIPS = {
    "a": "clip_a_3p7s_16k_mono.wav",
    "b": "clip_b_12s_44k1_stereo.wav",
    "c": "clip_c_10p24s_16k_tail_silence.wav",
    "d": "clip_d_21s_16k_mono.wav",
}


def read_golden_clip(golden_dir: Path, clip: str) -> tuple[np.ndarray, int]:
    """A golden clip as float32 [channels, samples] (int16/32768, as torchaudio.load gives)."""
    import soundfile as sf

    data, rate = sf.read(golden_dir / GOLDEN_CLIPS[clip], dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate

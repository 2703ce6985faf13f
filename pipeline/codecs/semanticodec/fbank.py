"""Normalised 128-bin Kaldi fbank features, one 10.24 s window at a time.

The official code computes one fbank over the whole padded clip. Kaldi frames are independent
of each other (dither 0, per-frame DC removal and pre-emphasis), so the rows of window `s` are
exactly the fbank of the samples `[163840 s, 163840 (s+1) + 240)`: the 240 extra samples let the
last frames of a window straddle into the next one as they do in the global fbank. Computing
window by window keeps memory bounded for hour-long clips and lets the fbank run on the
model's device.
"""

from __future__ import annotations

import torch

from .variants import MEL_BINS, SEGMENT_FRAMES, SEGMENT_SAMPLES

FRAME_LENGTH_SAMPLES = 400
FRAME_SHIFT_SAMPLES = 160
WINDOW_INPUT_SAMPLES = SEGMENT_SAMPLES + FRAME_LENGTH_SAMPLES - FRAME_SHIFT_SAMPLES
# AudioSet statistics the AudioMAE was trained with.
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974


def centre(padded_waveform: torch.Tensor) -> torch.Tensor:
    """Subtract the mean of the whole padded clip (padding included), as the official code does."""
    return padded_waveform - padded_waveform.mean()


def window_fbank(centred_waveform: torch.Tensor, segment_index: int) -> torch.Tensor:
    """Normalised fbank rows [1024, 128] of one window of a centred, padded mono clip [N]."""
    import torchaudio.compliance.kaldi as kaldi

    start = segment_index * SEGMENT_SAMPLES
    chunk = centred_waveform[start : start + WINDOW_INPUT_SAMPLES]
    fbank = kaldi.fbank(
        chunk.unsqueeze(0),
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=MEL_BINS,
        dither=0.0,
        frame_shift=10,
    )
    missing_rows = SEGMENT_FRAMES - fbank.shape[0]
    if missing_rows > 0:  # the clip's last window: its final frames would run past the audio
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, missing_rows))
    return (fbank - FBANK_MEAN) / (FBANK_STD * 2)

"""Normalised 128-bin Kaldi fbank features of a batch of 10.24 s windows, always in float32.

The official code computes one fbank over the whole padded clip (torchaudio's Kaldi-compatible
`fbank`). Kaldi frames are independent of each other (dither 0, per-frame DC removal and
pre-emphasis), so the rows of window `s` are exactly the fbank of the samples
`[163840 s, 163840 (s+1) + 240)`: the 240 extra samples let the last frames of a window straddle
into the next one as they do in the global fbank. The clip's last window has no such samples:
Kaldi yields 1022 frames there and the official code appends two zero rows.

`window_batch_fbank` reproduces torchaudio's arithmetic operation for operation, batched over
windows, with no host round trip: the Hann window and mel bank are built once per device and
cached, and no tensor is made from a Python number per call (torchaudio's version copies four
small tensors host→device and rebuilds the mel bank on every call). Autocast is switched off
inside: a bf16 mel matmul would change the features (the fbank is cheap; it stays fp32).
"""

from __future__ import annotations

import functools

import torch

from .variants import MEL_BINS, SAMPLE_RATE_HZ, SEGMENT_FRAMES, SEGMENT_SAMPLES

FRAME_LENGTH_SAMPLES = 400
FRAME_SHIFT_SAMPLES = 160
FFT_SIZE = 512
WINDOW_INPUT_SAMPLES = SEGMENT_SAMPLES + FRAME_LENGTH_SAMPLES - FRAME_SHIFT_SAMPLES
LAST_WINDOW_FRAMES = 1 + (SEGMENT_SAMPLES - FRAME_LENGTH_SAMPLES) // FRAME_SHIFT_SAMPLES  # 1022
PREEMPHASIS = 0.97
LOW_FREQ_HZ = 20.0
LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi's floor before the log
# AudioSet statistics the AudioMAE was trained with.
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974


def centre(padded_waveform: torch.Tensor) -> torch.Tensor:
    """Subtract the mean of the whole padded clip (padding included), as the official code does."""
    return padded_waveform - padded_waveform.mean()


@functools.lru_cache(maxsize=8)
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(Hann window [400], transposed mel bank [257, 128]) on `device`, float32, built once."""
    import torchaudio.compliance.kaldi as kaldi

    window = torch.hann_window(FRAME_LENGTH_SAMPLES, periodic=False, device=device, dtype=torch.float32)
    # high_freq 0 (Nyquist), VTLN off (warp 1.0; its low/high cut-offs are torchaudio's defaults)
    mel, _ = kaldi.get_mel_banks(MEL_BINS, FFT_SIZE, float(SAMPLE_RATE_HZ), LOW_FREQ_HZ, 0.0, 100.0, -500.0,
                                 1.0)
    mel = torch.nn.functional.pad(mel.to(device=device, dtype=torch.float32), (0, 1))  # Nyquist bin: weight 0
    return window, mel.T


def window_batch_fbank(window_audio: torch.Tensor, is_last_window: torch.Tensor) -> torch.Tensor:
    """Centred audio of B windows [B, WINDOW_INPUT_SAMPLES] float32 → normalised fbank [B, 1024, 128].

    A clip's last window has only its 163 840 samples (the rest of its row is ignored);
    `is_last_window` [B] bool marks those rows, on the same device as `window_audio`.
    """
    with torch.autocast(window_audio.device.type, enabled=False):
        window, mel_t = _constants(window_audio.device)
        audio = window_audio.float().contiguous()
        batch = audio.shape[0]
        frames = audio.as_strided(
            (batch, SEGMENT_FRAMES, FRAME_LENGTH_SAMPLES), (audio.stride(0), FRAME_SHIFT_SAMPLES, 1)
        )
        frames = frames - torch.mean(frames, dim=2).unsqueeze(2)
        previous = torch.nn.functional.pad(frames, (1, 0), mode="replicate")[..., :-1]
        frames = (frames - PREEMPHASIS * previous) * window
        frames = torch.nn.functional.pad(frames, (0, FFT_SIZE - FRAME_LENGTH_SAMPLES))
        power = torch.fft.rfft(frames).abs().pow(2.0)
        energies = torch.matmul(power, mel_t).clamp_min(LOG_FLOOR).log()
        rows = torch.arange(SEGMENT_FRAMES, device=audio.device)
        past_the_audio = is_last_window[:, None] & (rows >= LAST_WINDOW_FRAMES)[None, :]
        energies = energies.masked_fill(past_the_audio[..., None], 0.0)
        return (energies - FBANK_MEAN) / (FBANK_STD * 2)


def window_input(centred_waveform: torch.Tensor, segment_index: int) -> tuple[torch.Tensor, bool]:
    """The samples window `segment_index` reads [WINDOW_INPUT_SAMPLES] (zero-filled past the end)
    and whether it is the clip's last window."""
    start = segment_index * SEGMENT_SAMPLES
    chunk = centred_waveform[start : start + WINDOW_INPUT_SAMPLES]
    is_last = start + SEGMENT_SAMPLES >= centred_waveform.shape[-1]
    return torch.nn.functional.pad(chunk, (0, WINDOW_INPUT_SAMPLES - chunk.shape[-1])), is_last


def window_fbank(centred_waveform: torch.Tensor, segment_index: int) -> torch.Tensor:
    """Normalised fbank rows [1024, 128] of one window of a centred, padded mono clip [N]."""
    audio, is_last = window_input(centred_waveform, segment_index)
    flag = torch.tensor([is_last], device=audio.device)
    return window_batch_fbank(audio[None], flag)[0]

"""SemantiCodec's input rule: what a waveform must be, and how it becomes the encoder's input.

The rule (the official `SemantiCodec.encode`): resample to 16 kHz with torchaudio's default
band-limited resampler (Hann-windowed sinc, width 6, rolloff 0.99), then keep channel 0 (no
down-mix). Resampling is per channel, so resampling channel 0 alone gives the same samples as
resampling all of them and keeping the first, at a fraction of the cost for many-channel files.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ...errors import AudioInputError
from .variants import SAMPLE_RATE_HZ

MAX_CHANNELS = 256  # more than this is almost surely a [samples, channels] array


def validate_waveform(wave, sample_rate, index: int = 0):
    """Check one input and return it as a float32 torch tensor [C, N]; raise AudioInputError."""
    import torch

    where = f"waveform {index}"
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise AudioInputError(f"{where}: sample_rate must be an int, got {sample_rate!r}")
    if sample_rate <= 0:
        raise AudioInputError(f"{where}: sample_rate must be > 0, got {sample_rate}")
    if isinstance(wave, torch.Tensor):
        tensor = wave.detach().cpu()
    elif isinstance(wave, np.ndarray):
        if not np.issubdtype(wave.dtype, np.floating):
            raise AudioInputError(
                f"{where}: dtype must be floating point (float16/32/64 in [-1, 1]), got {wave.dtype}; "
                "convert integer PCM with soundfile.read(..., dtype='float32')"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(wave))
    else:
        raise AudioInputError(f"{where}: expected a numpy array or torch tensor, got {type(wave).__name__}")
    if not tensor.is_floating_point():
        raise AudioInputError(f"{where}: dtype must be floating point, got {tensor.dtype}")
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    elif tensor.ndim != 2:
        raise AudioInputError(f"{where}: expected shape [samples] or [channels, samples], got {tuple(tensor.shape)}")
    channels, samples = tensor.shape
    if channels == 0 or samples == 0:
        raise AudioInputError(f"{where}: empty audio (shape {tuple(tensor.shape)})")
    if channels > MAX_CHANNELS:
        raise AudioInputError(
            f"{where}: {channels} channels; pass channels first ([channels, samples]), "
            f"at most {MAX_CHANNELS} channels"
        )
    tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise AudioInputError(f"{where}: {bad} NaN/inf samples")
    return tensor


def to_mono_16k(wave, sample_rate: int):
    """[C, N] float32 tensor at `sample_rate` → channel 0 at 16 kHz, [N'] float32."""
    first = wave[0:1]
    if sample_rate != SAMPLE_RATE_HZ:
        first = resampler(int(sample_rate), SAMPLE_RATE_HZ)(first)
    return first[0].contiguous()


@lru_cache(maxsize=64)
def resampler(orig_rate: int, new_rate: int):
    """torchaudio's resampler for a rate pair, its sinc kernel built once per process.

    The kernel is computed in float32, as `torchaudio.functional.resample` does for float32
    input, so the output is bit-identical to it (tests/audio/test_resample.py) at a fraction of
    the cost for short clips (the kernel build dominates there). A rate pair whose kernel would
    exceed `MAX_KERNEL_TAPS` is refused (`AudioInputError`), see `resampler_kernel_taps`."""
    import torch
    import torchaudio.transforms as T

    taps = resampler_kernel_taps(orig_rate, new_rate)
    if taps > MAX_KERNEL_TAPS:
        raise AudioInputError(
            f"sample rate {orig_rate} Hz cannot be resampled to {new_rate} Hz: for this rate ratio the "
            f"resampler's kernel has {taps / 1e6:.0f} M taps ({taps * 4 / 2**30:.1f} GiB), over the "
            f"{MAX_KERNEL_TAPS // 2**20} Mi supported; resample the file to a standard rate first")
    return T.Resample(orig_rate, new_rate, dtype=torch.float32)


# torchaudio's kernel is [new/g, orig/g + 2 x width] for g = gcd(orig, new): tiny for the rates audio is
# recorded at (44.1 kHz: 160 x 475), huge for a ratio in lowest terms (44,101 Hz: 16,000 x 44,135 taps,
# 2.6 GiB, and as many multiply-adds per output sample). 16 Mi taps (64 MiB) admits every standard and
# pull-down rate (44,056 Hz, the largest of them: 11 M taps).
MAX_KERNEL_TAPS = 16 << 20
LOWPASS_FILTER_WIDTH, ROLLOFF = 6, 0.99  # torchaudio's defaults, the official rule's


def resampler_kernel_taps(orig_rate: int, new_rate: int) -> int:
    """Elements of torchaudio's sinc resampling kernel for a rate pair (its own size rule)."""
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = orig_rate // g, new_rate // g
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))
    return new * (orig + 2 * width)


def resampled_length(orig_rate: int, new_rate: int, length: int) -> int:
    """Samples out of the official resampler for `length` samples in (its own rounding rule)."""
    import torch

    if orig_rate == new_rate:
        return length
    g = math.gcd(orig_rate, new_rate)
    return int(torch.ceil(torch.as_tensor((new_rate // g) * length / (orig_rate // g))).item())

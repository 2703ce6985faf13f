"""Waveform checks and the official channel/resampling rule shared by every stage.

SemantiCodec's rule: resample to 16 kHz with torchaudio's default band-limited resampler
(Hann-windowed sinc, width 6, rolloff 0.99), then keep channel 0 (no down-mix). Resampling
is per channel, so resampling channel 0 alone gives the same samples as resampling all of
them and keeping the first, at a fraction of the cost for many-channel files.
"""

from __future__ import annotations

import numpy as np

from .errors import AudioInputError

TARGET_SAMPLE_RATE_HZ = 16000
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
    import torchaudio.functional as AF

    first = wave[0:1]
    if sample_rate != TARGET_SAMPLE_RATE_HZ:
        first = AF.resample(first, int(sample_rate), TARGET_SAMPLE_RATE_HZ)
    return first[0].contiguous()


class AudioDecodeError(AudioInputError):
    """Bytes that soundfile cannot decode (corrupt, truncated, not audio)."""


READ_BLOCK_FRAMES = 1 << 20


def decode_channel0(data: bytes, *, start_s: float | None = None, end_s: float | None = None,
                    max_duration_s: float | None = None) -> tuple[np.ndarray, int, int]:
    """Decode audio bytes with soundfile, keeping channel 0 only, block by block (memory ~ mono).

    Returns (float32 samples [N], sample rate, channel count). Raises AudioDecodeError or
    AudioInputError with a message naming the problem.
    """
    import io

    import soundfile as sf

    if not data:
        raise AudioDecodeError("empty file (0 bytes)")
    buffer = io.BytesIO(data)
    try:
        with sf.SoundFile(buffer) as handle:
            rate, channels, frames = handle.samplerate, handle.channels, handle.frames
            if rate <= 0:
                raise AudioDecodeError(f"invalid sample rate {rate}")
            first = int(round((start_s or 0.0) * rate))
            last = frames if end_s is None else min(frames, int(round(end_s * rate)))
            if max_duration_s is not None and (last - first) / rate > max_duration_s:
                raise AudioInputError(
                    f"{(last - first) / rate:.0f} s of audio is over the {max_duration_s:.0f} s limit"
                )
            if first:
                handle.seek(first)
            blocks = []
            remaining = last - first
            while remaining > 0:
                block = handle.read(min(READ_BLOCK_FRAMES, remaining), dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                blocks.append(block[:, 0].copy())
                remaining -= len(block)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        message = str(error).replace(f"Error opening {buffer!r}: ", "")
        raise AudioDecodeError(f"soundfile cannot decode it: {message}") from error
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if remaining > 0 and frames > 0:
        raise AudioDecodeError(f"truncated: header says {last - first} frames, only {len(samples)} decoded")
    if samples.size == 0:
        raise AudioInputError("no samples (0-length audio" + (" in the requested segment)" if start_s or end_s else ")"))
    if not np.isfinite(samples).all():
        raise AudioInputError(f"{int((~np.isfinite(samples)).sum())} NaN/inf samples")
    return samples, rate, channels

"""Host-side preparation of one clip for the encoder: pad, centre, count windows and tokens.

Pure CPU work that needs no model, so CPU decode tasks can do it and the encoder's process only
feeds the device. `gather_windows` then copies the windows of one forward pass into a single
(pinned, when the target is a GPU) host buffer, uploaded with one non-blocking copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .fbank import WINDOW_INPUT_SAMPLES, centre
from .lengths import kept_token_count, padding_samples, segment_count
from .variants import SEGMENT_SAMPLES, SemantiCodecVariant


@dataclass(frozen=True, slots=True)
class PreparedClip:
    """A clip ready for `SemantiCodec.encode_prepared`.

    `samples`: the zero-padded clip minus its mean (padding included), float32 [num_windows · 163840]:
    a numpy array, or a tensor on the device when the clip was resampled there.
    `kept_tokens`: the official trimming rule's token count for the unpadded clip (a pipeline that
    cuts long files into chunks trims inner chunks itself).
    """

    samples: np.ndarray | torch.Tensor
    num_windows: int
    kept_tokens: int


def prepare_clip(mono_16k: np.ndarray | torch.Tensor, variant: SemantiCodecVariant) -> PreparedClip:
    """Mono 16 kHz float audio [N] (already validated: finite, non-empty) → PreparedClip."""
    wave = torch.as_tensor(mono_16k)
    if wave.ndim != 1 or wave.shape[0] == 0 or not wave.is_floating_point():
        raise ValueError(
            f"prepare_clip expects non-empty mono float audio [N], got {wave.dtype} {tuple(wave.shape)}"
        )
    num_samples = int(wave.shape[0])
    # torch, as before this moved out of the encoder: the mean's summation order is part of the
    # numerics (numpy sums in another order). A clip already on an accelerator (resampled there)
    # is prepared there and stays there.
    on_host = wave.device.type == "cpu"
    padded = torch.nn.functional.pad(wave.detach().float(), (0, padding_samples(num_samples)))
    centred = centre(padded)
    return PreparedClip(
        samples=centred.numpy() if on_host else centred,
        num_windows=segment_count(num_samples),
        kept_tokens=kept_token_count(num_samples, variant.stack_factor),
    )


def gather_windows(
    clips: list[PreparedClip], windows: list[tuple[int, int]], *, pin_memory: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input samples of (clip index, window index) pairs → ([B, WINDOW_INPUT_SAMPLES] float32,
    [B] bool is-last-window), in host memory (pinned when asked); the audio is gathered on the
    device instead when a clip's samples are already there."""
    device = next((clips[c].samples.device for c, _ in windows if isinstance(clips[c].samples, torch.Tensor)
                   and clips[c].samples.device.type != "cpu"), None)
    if device is not None:
        return _gather_on(device, clips, windows, pin_memory)
    audio = torch.empty((len(windows), WINDOW_INPUT_SAMPLES), dtype=torch.float32, pin_memory=pin_memory)
    is_last = torch.empty(len(windows), dtype=torch.bool, pin_memory=pin_memory)
    out, last = audio.numpy(), is_last.numpy()
    for row, (clip_index, window) in enumerate(windows):
        samples = clips[clip_index].samples
        start = window * SEGMENT_SAMPLES
        piece = samples[start : start + WINDOW_INPUT_SAMPLES]
        out[row, : len(piece)] = piece
        out[row, len(piece) :] = 0.0
        last[row] = window == clips[clip_index].num_windows - 1
    return audio, is_last


def _gather_on(device: torch.device, clips: list[PreparedClip], windows: list[tuple[int, int]],
               pin_memory: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`gather_windows` for clips resampled on the device: the windows are sliced there (a host clip
    in the same pass is uploaded with its window); the last-window flags stay on the host."""
    rows = []
    for clip_index, window in windows:
        start = window * SEGMENT_SAMPLES
        piece = torch.as_tensor(clips[clip_index].samples[start : start + WINDOW_INPUT_SAMPLES]).to(device)
        rows.append(torch.nn.functional.pad(piece, (0, WINDOW_INPUT_SAMPLES - piece.shape[0])))
    is_last = torch.tensor([w == clips[c].num_windows - 1 for c, w in windows], dtype=torch.bool)
    return torch.stack(rows), is_last.pin_memory() if pin_memory else is_last

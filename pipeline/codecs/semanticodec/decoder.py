"""SemantiCodec decoding: tokens → windows → conditioning → DDIM (v-prediction, CFG) → VAE → vocoder
→ overlap-add → trim, as the official inference code does each step.

Windows of all clips are decoded together, and the unconditional and conditional passes of
each DDIM step share one UNet call. Noise is drawn per window in the official order (x_T, then
one draw per step) from a seeded generator, or injected, so results do not depend on batching.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .unet import UNetModel

NUM_TRAIN_STEPS = 1000
WINDOW_OVERLAP_FRACTION = 0.0625
CROSSFADE_SAMPLES = int(0.64 * 16000)  # 10 240
POSITION_DIM = 192
POSITION_TABLE_ROWS = 512
PAD_FEATURE = -1.0
LATENT_SHAPE = (8, 256, 16)  # channels, time, frequency of one window's latent


def ddim_timesteps(steps: int, num_train_steps: int = NUM_TRAIN_STEPS) -> np.ndarray:
    """The official 'uniform' grid `range(0, 1000, 1000 // S) + 1`, ascending.

    Where the official code works this is its grid (S = 6 even gives 7 steps, as there). Where it
    crashes (the last step would be 1000: S = 3, 9, ...) that out-of-range step is dropped.
    """
    if steps < 1 or steps > num_train_steps:
        raise ValueError(f"ddim_steps must be in 1..{num_train_steps}, got {steps}")
    grid = np.asarray(list(range(0, num_train_steps, num_train_steps // steps))) + 1
    return grid[grid < num_train_steps]


@functools.lru_cache(maxsize=8)
def positional_code(rows: int, dim: int = POSITION_DIM) -> torch.Tensor:
    """Sinusoidal code [rows, dim]: sin at even, cos at odd columns, from a 512-row table.
    Cached (one per window length); callers must not modify it in place."""
    position = torch.arange(0, POSITION_TABLE_ROWS, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(POSITION_TABLE_ROWS, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table[:rows]


def split_windows(num_tokens: int, window: int) -> list[tuple[int, int]]:
    """(start, end) token ranges of the decode windows: `window` tokens each, every `hop` = window
    less its 1/16 overlap, while a whole window ends before the last token; then the rest (one
    window for T <= window, two for T = window + 1)."""
    hop = window - int(window * WINDOW_OVERLAP_FRACTION)
    spans, start = [], 0
    while start + window < num_tokens:
        spans.append((start, start + window))
        start += hop
    if start < num_tokens:
        spans.append((start, num_tokens))
    return spans


def output_samples(num_tokens: int, stack_factor: float) -> int:
    """The official trim length, float expression kept as is (one sample short for some T)."""
    return int((num_tokens / 8) * 16 * 0.01 * stack_factor * 16000)


def overlap_add(windows: list[np.ndarray]) -> np.ndarray:
    """Consecutive window waveforms cross-faded linearly over their 10 240 overlapping samples
    (float32): the official merge, whose windows overlap 32 samples more than their tokens do."""
    fade_in = np.linspace(0, 1, CROSSFADE_SAMPLES)
    out = windows[0].astype(np.float32, copy=True)
    for window in windows[1:]:
        window = window.astype(np.float32, copy=True)
        window[:CROSSFADE_SAMPLES] *= fade_in
        out[-CROSSFADE_SAMPLES:] *= fade_in[::-1]
        out[-CROSSFADE_SAMPLES:] += window[:CROSSFADE_SAMPLES]
        out = np.concatenate([out, window[CROSSFADE_SAMPLES:]])
    return out


@dataclass
class DiffusionSchedule:
    alphas_cumprod: torch.Tensor  # [1000] float32, from decoder.ckpt
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor

    @classmethod
    def from_state_dict(cls, state: dict) -> DiffusionSchedule:
        return cls(*(state[k].float().clone() for k in
                     ("alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")))

    def ddim_coefficients(self, timesteps: np.ndarray, eta: float = 1.0):
        """Per-step a_t, a_prev, sigma as float32 (computed in double from the float32 table)."""
        alphas = self.alphas_cumprod.double().numpy()
        a_t = alphas[timesteps]
        a_prev = np.concatenate([[alphas[0]], alphas[timesteps[:-1]]])
        sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        as32 = lambda v: torch.from_numpy(np.asarray(v, np.float64)).float()  # noqa: E731
        return as32(a_t), as32(a_prev), as32(sigma)


class SemantiCodecDecoder(nn.Module):
    """Token windows → 16 kHz waveforms. Built from decoder.ckpt plus the two codebooks."""

    def __init__(self, unet: UNetModel, vae: nn.Module, vocoder: nn.Module, schedule: DiffusionSchedule,
                 scale_factor: float, semantic_codebook: torch.Tensor, acoustic_codebook: torch.Tensor) -> None:
        super().__init__()
        self.unet, self.vae, self.vocoder = unet, vae, vocoder
        self.schedule = schedule
        self.scale_factor = scale_factor
        self.register_buffer("semantic_codebook", semantic_codebook)
        self.register_buffer("acoustic_codebook", acoustic_codebook)
        self.eval()

    def conditioning(self, tokens: torch.Tensor, window: int) -> torch.Tensor:
        """One window's tokens [L, 2] → conditional context [window, 2D + 192] (−1 padded rows)."""
        features = torch.cat([self.acoustic_codebook[tokens[:, 1]], self.semantic_codebook[tokens[:, 0]]], dim=-1)
        padding = torch.full((window - len(tokens), features.shape[-1]), PAD_FEATURE, device=features.device)
        features = torch.cat([features, padding])
        return torch.cat([features, positional_code(window).to(features.device)], dim=-1)

    @torch.inference_mode()
    def sample(self, context: torch.Tensor, noise: torch.Tensor, timesteps: np.ndarray, cfg_scale: float):
        """DDIM with eta 1 and classifier-free guidance. context [B, W, C]; noise [B, S+1, 8, 256, 16]."""
        a_ts, a_prevs, sigmas = self.schedule.ddim_coefficients(timesteps)
        unconditional = context.clone()
        unconditional[..., : -POSITION_DIM] = unconditional[..., : -POSITION_DIM] * 0
        both_contexts = torch.cat([unconditional, context])
        x = noise[:, 0]
        device = context.device
        sqrt_a = self.schedule.sqrt_alphas_cumprod.to(device)
        sqrt_1ma = self.schedule.sqrt_one_minus_alphas_cumprod.to(device)
        for step, index in enumerate(reversed(range(len(timesteps)))):
            t = int(timesteps[index])
            t_batch = torch.full((2 * x.shape[0],), t, device=device, dtype=torch.long)
            v_uncond, v_cond = self.unet(torch.cat([x, x]), t_batch, both_contexts).chunk(2)
            v = v_uncond + cfg_scale * (v_cond - v_uncond)
            eps = sqrt_a[t] * v + sqrt_1ma[t] * x
            x0 = sqrt_a[t] * x - sqrt_1ma[t] * v
            a_prev, sigma = a_prevs[index].to(device), sigmas[index].to(device)
            direction = (1.0 - a_prev - sigma**2).sqrt() * eps
            x = a_prev.sqrt() * x0 + direction + sigma * noise[:, step + 1]
        return x

    @torch.inference_mode()
    def latent_to_waveform(self, latent: torch.Tensor) -> torch.Tensor:
        mel = self.vae.decode_latent(latent, self.scale_factor)
        return self.vocoder(mel)[:, 0]

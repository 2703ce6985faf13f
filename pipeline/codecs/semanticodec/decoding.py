"""Batch orchestration of decoding: windows of many clips, noise per window, overlap-add, trim."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import islice

import numpy as np
import torch

from .decoder import LATENT_SHAPE, ddim_timesteps, output_samples, overlap_add, split_windows


def _check_tokens(tokens, index: int, semantic_vocab: int, acoustic_vocab: int) -> torch.Tensor:
    array = np.asarray(tokens)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"tokens {index}: expected a non-empty [T, 2] array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"tokens {index}: expected integer ids, got {array.dtype}")
    for column, (name, vocab) in enumerate((("semantic", semantic_vocab), ("acoustic", acoustic_vocab))):
        low, high = int(array[:, column].min()), int(array[:, column].max())
        if low < 0 or high >= vocab:
            raise ValueError(f"tokens {index}: {name} ids must be in [0, {vocab}), got [{low}, {high}]")
    return torch.from_numpy(array.astype(np.int64))


def _window_noise(noise, seed, clip_windows: list[int], steps: int) -> list[torch.Tensor]:
    """One [steps + 1, 8, 256, 16] tensor per window, in clip then window order."""
    shape = (steps + 1, *LATENT_SHAPE)
    if noise is not None:
        if len(noise) != len(clip_windows):
            raise ValueError(f"noise has {len(noise)} entries for {len(clip_windows)} clips")
        out = []
        for clip, (per_clip, count) in enumerate(zip(noise, clip_windows, strict=True)):
            if len(per_clip) != count:
                raise ValueError(f"noise for clip {clip} has {len(per_clip)} windows, the tokens make {count}")
            for array in per_clip:
                if tuple(np.shape(array)) != shape:
                    raise ValueError(f"noise arrays must be {shape} for {steps} DDIM steps, got {np.shape(array)}")
                out.append(torch.as_tensor(np.asarray(array, np.float32)))
        return out
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    # x_T, then one draw per step, window after window: the official call order
    return [torch.stack([torch.randn((1, *LATENT_SHAPE), generator=generator)[0] for _ in range(steps + 1)])
            for _ in range(sum(clip_windows))]


def decode_tokens(codec, tokens_list, ddim_steps: int, cfg_scale: float, seed, noise, max_batch_windows: int,
                  progress: Callable[[int, int], None] | None = None):
    """`progress(done, total)` is called once before the first step (done 0), then after each DDIM
    step of each batch of windows and after each batch's VAE + vocoder pass (total: batches x
    (steps + 1))."""
    decoder = codec.load_decoder()
    semantic_vocab, acoustic_vocab = codec.cardinalities
    clips = [_check_tokens(t, i, semantic_vocab, acoustic_vocab) for i, t in enumerate(tokens_list)]
    window = codec.variant.tokens_per_segment
    timesteps = ddim_timesteps(ddim_steps)
    spans = [split_windows(len(clip), window) for clip in clips]
    noises = _window_noise(noise, seed, [len(s) for s in spans], len(timesteps))
    jobs = [(c, clip[a:b]) for c, (clip, clip_spans) in enumerate(zip(clips, spans, strict=True))
            for a, b in clip_spans]
    device = codec.device
    waveforms: list[np.ndarray] = []
    total = math.ceil(len(jobs) / max_batch_windows) * (len(timesteps) + 1)
    done = 0

    def tick(*_):
        nonlocal done
        done += 1
        progress(done, total)

    # one UNet call is one DDIM step of the batch: a forward hook counts them without the sampler
    # knowing about progress
    hook = None
    if progress is not None:
        progress(0, total)
        hook = decoder.unet.register_forward_hook(tick)
    try:
        queue = iter(zip(jobs, noises, strict=True))
        while batch := list(islice(queue, max_batch_windows)):
            context = torch.stack([decoder.conditioning(tokens.to(device), window) for (_, tokens), _ in batch])
            batch_noise = torch.stack([n for _, n in batch]).to(device)
            latent = decoder.sample(context, batch_noise, timesteps, cfg_scale)
            waveforms.extend(decoder.latent_to_waveform(latent.float()).float().cpu().numpy())
            if progress is not None:
                tick()
    finally:
        if hook is not None:
            hook.remove()
    out, position = [], 0
    for clip, clip_spans in zip(clips, spans, strict=True):
        joined = overlap_add(waveforms[position : position + len(clip_spans)])
        position += len(clip_spans)
        out.append(joined[: output_samples(len(clip), codec.variant.stack_factor)])
    return out

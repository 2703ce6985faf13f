"""A small synthetic decoder.ckpt in the official key layout: the decoder's own modules at small
widths, so the shape-derived loaders (UNet, VAE, vocoder) build it as they build the published one.

The window geometry is the official one (latent [8, 256, 16] → mel [1024, 64] → 163 840 samples)
because decoding, overlap-add and trimming depend on it; only the widths are small.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .decoder import LATENT_SHAPE, NUM_TRAIN_STEPS, POSITION_DIM
from .unet import Downsample, GroupNorm32, InputConv, ResBlock, SpatialTransformer, Upsample
from .vae import VAEDecoder, VAEDecoderConfig
from .vocoder import HifiGanConfig, HifiGanVocoder

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
VOCODER_PREFIX = "first_stage_model.vocoder."
SCALE_FACTOR = 1.0
# The official DDPM schedule: 1000 steps, sqrt(beta) linear from sqrt(0.0015) to sqrt(0.0195).
LINEAR_START, LINEAR_END = 0.0015, 0.0195


class _SmallUNet(nn.Module):
    """Three resolutions (256×16, 128×8, 64×4) with attention only at the lowest, arranged as in
    the official UNet: per attention level a self-attention transformer, then a cross-attention one."""

    def __init__(self, context_dim: int, width: int = 32, time_dim: int = 64) -> None:
        super().__init__()
        wide, emb = 2 * width, 2 * time_dim
        channels = LATENT_SHAPE[0]
        seq = lambda *layers: nn.ModuleList(layers)  # noqa: E731

        def attention(c: int) -> list[nn.Module]:
            return [SpatialTransformer(c, c, 4 * c, False), SpatialTransformer(c, context_dim, 4 * c, True)]

        self.time_embed = nn.Sequential(nn.Linear(time_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([
            seq(InputConv(channels, width, 3, padding=1)),
            seq(Downsample(width)),
            seq(Downsample(width)),
            seq(ResBlock(width, wide, emb), *attention(wide)),
        ])
        self.middle_block = seq(ResBlock(wide, wide, emb), *attention(wide), ResBlock(wide, wide, emb))
        self.output_blocks = nn.ModuleList([  # each takes the skip of the matching input block
            seq(ResBlock(2 * wide, wide, emb), *attention(wide)),
            seq(ResBlock(wide + width, wide, emb), Upsample(wide)),
            seq(ResBlock(wide + width, width, emb), Upsample(width)),
            seq(ResBlock(2 * width, width, emb)),
        ])
        self.out = nn.Sequential(GroupNorm32(32, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))


def _schedule() -> dict[str, np.ndarray]:
    betas = np.linspace(LINEAR_START**0.5, LINEAR_END**0.5, NUM_TRAIN_STEPS, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    tables = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
    }
    return {key: value.astype(np.float32) for key, value in tables.items()}


def small_decoder_shapes(context_dim: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of the learned tensors of a small decoder.ckpt (official key names)."""
    vae = VAEDecoder(VAEDecoderConfig(level_channels=(32, 32, 32), blocks_per_level=1))
    vocoder = HifiGanVocoder(HifiGanConfig(initial_channels=32, resblock_kernel_sizes=(3,)))
    shapes = {}
    modules = ((UNET_PREFIX, _SmallUNet(context_dim)), (VAE_PREFIX, vae), (VOCODER_PREFIX, vocoder))
    for prefix, module in modules:
        shapes |= {prefix + key: tuple(value.shape) for key, value in module.state_dict().items()}
    return shapes


def small_decoder_state(encoder_feature_dim: int, fill) -> dict:
    """A small decoder state dict for an encoder whose features are `encoder_feature_dim` wide;
    `fill(key, shape)` makes each learned tensor (float32 numpy)."""
    import torch

    context_dim = 2 * encoder_feature_dim + POSITION_DIM
    shapes = small_decoder_shapes(context_dim)
    state = {key: torch.from_numpy(fill(key, shape)) for key, shape in shapes.items()}
    state |= {key: torch.from_numpy(value) for key, value in _schedule().items()}
    state["scale_factor"] = torch.tensor(SCALE_FACTOR)
    return state

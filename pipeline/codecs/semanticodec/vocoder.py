"""SemantiCodec's HiFi-GAN vocoder (the "V1-style" generator of AudioLDM): 64-bin mel → 16 kHz audio.

Weight norm is already folded into the stored weights, so every layer is a plain Conv1d /
ConvTranspose1d whose attribute names match the keys under `first_stage_model.vocoder.`. Channel
widths, kernel sizes and the mel size come from tensor shapes; the strides and dilations cannot be
read from shapes and default to the official values. Runs in float32 whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .state import count_indexed

STATE_PREFIX = "first_stage_model.vocoder."
LRELU_SLOPE = 0.1
FINAL_LRELU_SLOPE = 0.01  # the reference calls F.leaky_relu with its default slope before conv_post
PRE_POST_KERNEL = 7
UPSAMPLE_RATES = (5, 4, 2, 2, 2)  # product 160 = hop length
RESBLOCK_DILATIONS = (1, 3, 5)


@dataclass(frozen=True, slots=True)
class HifiGanConfig:
    num_mels: int = 64
    initial_channels: int = 1024  # upsample_initial_channel; stage s outputs initial / 2^(s+1)
    upsample_rates: tuple[int, ...] = UPSAMPLE_RATES
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[int, ...] = RESBLOCK_DILATIONS

    def stage_channels(self, stage: int) -> int:
        return self.initial_channels // 2 ** (stage + 1)

    def output_length(self, frames: int) -> int:
        """Samples produced for `frames` mel frames (each transposed conv: (L−1)·u − 2·((k−u)//2) + k)."""
        length = frames
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            length = (length - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
        return length


class _ResBlock1(nn.Module):
    """Per dilation d: x += conv_{k,1}(lrelu(conv_{k,d}(lrelu(x)))); "same" padding throughout."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            t = conv1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + conv2(F.leaky_relu(t, LRELU_SLOPE))
        return x


class HifiGanVocoder(nn.Module):
    """Mel [B, 1, frames, num_mels] (VAE output layout) → waveform [B, 1, config.output_length(frames)]."""

    def __init__(self, config: HifiGanConfig) -> None:
        super().__init__()
        if len(config.upsample_rates) != len(config.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        self.config = config
        self.conv_pre = nn.Conv1d(
            config.num_mels, config.initial_channels, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(
                config.initial_channels // 2**stage,
                config.stage_channels(stage),
                kernel,
                stride=rate,
                padding=(kernel - rate) // 2,
            )
            for stage, (rate, kernel) in enumerate(
                zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True))
        )
        # Flat list: block 3·s + j belongs to stage s with kernel resblock_kernel_sizes[j].
        self.resblocks = nn.ModuleList(
            _ResBlock1(config.stage_channels(stage), kernel, config.resblock_dilations)
            for stage in range(len(self.ups))
            for kernel in config.resblock_kernel_sizes
        )
        last = config.stage_channels(len(self.ups) - 1)
        self.conv_post = nn.Conv1d(last, 1, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 1, frames, mels] or [B, mels, frames] → [B, 1, samples] in [−1, 1]."""
        if mel.dim() == 4:
            mel = mel.squeeze(1).transpose(1, 2)
        x = self.conv_pre(mel.float())
        kernels = len(self.config.resblock_kernel_sizes)
        for stage, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[stage * kernels : (stage + 1) * kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x, FINAL_LRELU_SLOPE)))

    @staticmethod
    def config_from_state_dict(
        state: dict[str, torch.Tensor],
        prefix: str = "",
        upsample_rates: tuple[int, ...] = UPSAMPLE_RATES,
        resblock_dilations: tuple[int, ...] = RESBLOCK_DILATIONS,
    ) -> HifiGanConfig:
        """Derive widths and kernels from tensor shapes (keys relative to `prefix`); strides and dilations
        are not visible in shapes and are passed in (official values by default)."""
        pre = state[f"{prefix}conv_pre.weight"]  # [initial, mels, 7]
        stages = count_indexed(state, f"{prefix}ups.{{}}.weight")
        blocks = count_indexed(state, f"{prefix}resblocks.{{}}.convs1.0.weight")
        if stages == 0 or blocks % stages:
            raise KeyError(f"inconsistent HiFi-GAN keys under {prefix!r}: {stages} ups, {blocks} resblocks")
        if len(upsample_rates) != stages:
            raise ValueError(f"{stages} upsampling stages in the state dict, {len(upsample_rates)} rates")
        return HifiGanConfig(
            num_mels=pre.shape[1],
            initial_channels=pre.shape[0],
            upsample_rates=tuple(upsample_rates),
            upsample_kernel_sizes=tuple(state[f"{prefix}ups.{s}.weight"].shape[-1] for s in range(stages)),
            resblock_kernel_sizes=tuple(
                state[f"{prefix}resblocks.{j}.convs1.0.weight"].shape[-1] for j in range(blocks // stages)
            ),
            resblock_dilations=tuple(resblock_dilations),
        )

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], prefix: str = STATE_PREFIX, **config_overrides
    ) -> HifiGanVocoder:
        """Build from a decoder.ckpt state dict (other keys are ignored) and load strictly, in eval mode.

        `config_overrides` go to `config_from_state_dict` (upsample_rates, resblock_dilations)."""
        config = cls.config_from_state_dict(state, prefix, **config_overrides)
        module = cls(config)
        own = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        module.load_state_dict(own, strict=True)
        return module.eval().requires_grad_(False)

"""The decoder half of SemantiCodec's VAE (AudioLDM's AutoencoderKL): diffusion latent → mel.

Only `post_quant_conv` and the convolutional `Decoder` are built; the VAE encoder and
`quant_conv` serve training only. Attribute names follow the official module, so the keys under
`first_stage_model.` load strictly. Widths, depth and latent size come from the checkpoint's tensor
shapes, so the official model (128/256/512 channels) and small test models share one code path.
Everything runs in float32 (GroupNorm included) whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .state import count_indexed

STATE_PREFIX = "first_stage_model."
GROUP_NORM_GROUPS = 32
GROUP_NORM_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class VAEDecoderConfig:
    latent_channels: int = 8  # embed_dim: channels of the diffusion latent and of post_quant_conv
    z_channels: int = 8  # input of decoder.conv_in
    level_channels: tuple[int, ...] = (128, 256, 512)  # ch * ch_mult, level 0 (output side) first
    blocks_per_level: int = 3  # num_res_blocks + 1
    out_channels: int = 1

    @property
    def upsampling(self) -> int:
        """Time and frequency growth from latent to mel (×2 per level above level 0)."""
        return 2 ** (len(self.level_channels) - 1)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class _GroupNorm(nn.GroupNorm):
    def __init__(self, channels: int) -> None:
        super().__init__(GROUP_NORM_GROUPS, channels, eps=GROUP_NORM_EPS, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float())


class _ResnetBlock(nn.Module):
    """Pre-activation residual block without time embedding; 1×1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _GroupNorm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _GroupNorm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class _AttnBlock(nn.Module):
    """Single-head self-attention over all (time, frequency) positions, 1×1 conv projections."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _GroupNorm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(batch, channels, height * width).transpose(1, 2)  # [B, N, C]
        k = self.k(h).reshape(batch, channels, height * width)  # [B, C, N]
        v = self.v(h).reshape(batch, channels, height * width)  # [B, C, N]
        weights = torch.softmax(torch.bmm(q, k) * channels**-0.5, dim=2)  # [B, N query, N key]
        h = torch.bmm(v, weights.transpose(1, 2)).reshape(batch, channels, height, width)
        return x + self.proj_out(h)


class _Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = _ResnetBlock(channels, channels)
        self.attn_1 = _AttnBlock(channels)
        self.block_2 = _ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _UpLevel(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blocks: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            _ResnetBlock(in_channels if index == 0 else out_channels, out_channels) for index in range(blocks)
        )
        self.upsample = _Upsample(out_channels) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class _Decoder(nn.Module):
    def __init__(self, config: VAEDecoderConfig) -> None:
        super().__init__()
        widths = config.level_channels
        self.conv_in = nn.Conv2d(config.z_channels, widths[-1], 3, padding=1)
        self.mid = _Mid(widths[-1])
        # Indexed by level (up.0 is the output side) but run from the deepest level down.
        inputs = widths[1:] + widths[-1:]  # each level is fed by the one above it (the top by mid)
        self.up = nn.ModuleList(
            _UpLevel(inputs[level], widths[level], config.blocks_per_level, upsample=level > 0)
            for level in range(len(widths))
        )
        self.norm_out = _GroupNorm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(_swish(self.norm_out(h)))


class VAEDecoder(nn.Module):
    """Diffusion latent [B, C_lat, T/4, 16] → mel [B, 1, T, 64] (official sizes: T = 1024 per window)."""

    def __init__(self, config: VAEDecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.z_channels, 1)
        self.decoder = _Decoder(config)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Already-unscaled latent [B, C_lat, H, W] → [B, out, H·up, W·up] with up = config.upsampling."""
        return self.decoder(self.post_quant_conv(z.float()))

    def decode_latent(self, z: torch.Tensor, scale_factor: float | torch.Tensor) -> torch.Tensor:
        """The official `decode_first_stage`: undo the latent scaling, then post_quant_conv → Decoder."""
        # The reference multiplies by the float32 reciprocal rather than dividing.
        inverse = 1.0 / torch.as_tensor(scale_factor, dtype=torch.float32, device=z.device)
        return self(inverse * z.float())

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor], prefix: str = "") -> VAEDecoderConfig:
        """Derive the architecture from tensor shapes (keys relative to `prefix`)."""
        post = state[f"{prefix}post_quant_conv.weight"]
        levels = count_indexed(state, f"{prefix}decoder.up.{{}}.block.0.conv1.weight")
        blocks = count_indexed(state, f"{prefix}decoder.up.0.block.{{}}.conv1.weight")
        if levels == 0 or blocks == 0:
            raise KeyError(f"no VAE decoder keys under {prefix!r}decoder.up")
        return VAEDecoderConfig(
            latent_channels=post.shape[1],
            z_channels=post.shape[0],
            level_channels=tuple(
                state[f"{prefix}decoder.up.{level}.block.0.conv1.weight"].shape[0] for level in range(levels)
            ),
            blocks_per_level=blocks,
            out_channels=state[f"{prefix}decoder.conv_out.weight"].shape[0],
        )

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = STATE_PREFIX) -> VAEDecoder:
        """Build from a decoder.ckpt state dict (other keys are ignored) and load strictly, in eval mode."""
        config = cls.config_from_state_dict(state, prefix)
        module = cls(config)
        own = {
            key[len(prefix):]: value
            for key, value in state.items()
            if key.startswith((f"{prefix}decoder.", f"{prefix}post_quant_conv."))
        }
        module.load_state_dict(own, strict=True)
        return module.eval().requires_grad_(False)

"""The AudioMAE ViT encoder SemantiCodec uses as its semantic backbone (inference path only).

Built from the checkpoint's tensor shapes (width, depth, MLP size, patch size), so the official
ViT-B and small synthetic test models share one code path. The ops mirror timm's `Block`
(pre-norm, fused qkv, scaled-dot-product attention, exact GELU) so float results match the
official module, not just its maths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .state import count_indexed

LAYER_NORM_EPS = 1e-6
HEAD_DIM = 64  # AudioMAE ViT-B: 768 / 12 heads
CONTEXT_BLOCKS = 3  # output = mean of the final norm applied after each of the last 3 blocks


@dataclass(frozen=True, slots=True)
class AudioMAEConfig:
    width: int = 768
    depth: int = 12
    mlp_hidden: int = 3072
    patch_size: int = 16
    grid: tuple[int, int] = (64, 8)  # patches along (time, frequency)

    @property
    def num_heads(self) -> int:
        return max(1, self.width // HEAD_DIM)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


class _Attention(nn.Module):
    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, width // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, length, width))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        self.attn = _Attention(config.width, config.num_heads)
        self.norm2 = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        self.mlp = _Mlp(config.width, config.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, config.width, config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class AudioMAEEncoder(nn.Module):
    """[B, 1024 frames, 128 mel] normalised fbank → patch features [B, 512, width] (time-major)."""

    def __init__(self, config: AudioMAEConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = _PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        # Stored in the checkpoint; AudioMAE's sin-cos table must not be recomputed.
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.width))
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(fbank.unsqueeze(1))
        x = x + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        first_context_block = self.config.depth - CONTEXT_BLOCKS
        context = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index >= first_context_block:
                context.append(self.norm(x))
        return torch.stack(context, dim=0).mean(dim=0)[:, 1:, :]

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor], prefix: str) -> AudioMAEConfig:
        """Derive the architecture from tensor shapes (keys are relative to `prefix`)."""
        from .variants import MEL_BINS, SEGMENT_FRAMES

        width = state[f"{prefix}cls_token"].shape[-1]
        patch = state[f"{prefix}patch_embed.proj.weight"].shape[-1]
        depth = count_indexed(state, f"{prefix}blocks.{{}}.norm1.weight")
        return AudioMAEConfig(
            width=width,
            depth=depth,
            mlp_hidden=state[f"{prefix}blocks.0.mlp.fc1.weight"].shape[0],
            patch_size=patch,
            grid=(SEGMENT_FRAMES // patch, MEL_BINS // patch),
        )

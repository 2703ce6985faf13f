"""The latent-diffusion UNet of the SemantiCodec decoder (AudioLDM-style `UNetModel`, inference only).

The block list is read from the checkpoint's keys (ResBlock, SpatialTransformer, Down/Upsample per
index) and every width from tensor shapes, so the module builds itself from any state dict in
the official layout. Keys match `model.diffusion_model.*` with that prefix removed.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn import functional as F

HEAD_CHANNELS = 32  # num_head_channels of every attention layer
NORM_GROUPS = 32


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32, as the reference does, whatever the activation dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[B] integer steps → [B, dim]: cosines first, then sines."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int, emb_channels: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(NORM_GROUPS, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(NORM_GROUPS, out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context=None) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, channels: int, context_dim: int) -> None:
        super().__init__()
        self.heads = channels // HEAD_CHANNELS
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(context_dim, channels, bias=False)
        self.to_v = nn.Linear(context_dim, channels, bias=False)
        self.to_out = nn.Sequential(nn.Linear(channels, channels), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        batch = x.shape[0]
        q, k, v = (t.reshape(batch, t.shape[1], self.heads, -1).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)  # the all-ones context mask masks nothing
        return self.to_out(out.transpose(1, 2).reshape(batch, x.shape[1], -1))


class GEGLU(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, hidden * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(channels, hidden), nn.Dropout(0.0), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, channels: int, context_dim: int, ff_hidden: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(channels, channels)
        self.ff = FeedForward(channels, ff_hidden)
        self.attn2 = CrossAttention(channels, context_dim)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(channels) for _ in range(3))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Tokens in (time, frequency) row-major order. `uses_context` False: attn2 is self-attention."""

    def __init__(self, channels: int, context_dim: int, ff_hidden: int, uses_context: bool) -> None:
        super().__init__()
        self.uses_context = uses_context
        self.norm = GroupNorm32(NORM_GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, context_dim, ff_hidden)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb=None, context: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            h = block(h, context if self.uses_context else None)
        h = h.transpose(1, 2).reshape(batch, channels, height, width)
        return self.proj_out(h) + x


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None, context=None):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None, context=None):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class InputConv(nn.Conv2d):
    def forward(self, x, emb=None, context=None):
        return super().forward(x)


class TimestepSequential(nn.ModuleList):
    def forward(self, x, emb, context):
        for layer in self:
            x = layer(x, emb, context)
        return x


def _build_layer(state: dict, prefix: str, first_transformer: bool) -> nn.Module:
    """One layer of a block, recognised from its keys and sized from its tensors."""
    if f"{prefix}op.weight" in state:
        return Downsample(state[f"{prefix}op.weight"].shape[0])
    if f"{prefix}conv.weight" in state and f"{prefix}in_layers.0.weight" not in state:
        return Upsample(state[f"{prefix}conv.weight"].shape[0])
    if f"{prefix}in_layers.0.weight" in state:
        conv = state[f"{prefix}in_layers.2.weight"]
        return ResBlock(conv.shape[1], conv.shape[0], state[f"{prefix}emb_layers.1.weight"].shape[1])
    if f"{prefix}proj_in.weight" in state:
        block = f"{prefix}transformer_blocks.0."
        channels = state[f"{prefix}proj_in.weight"].shape[0]
        return SpatialTransformer(channels, state[f"{block}attn2.to_k.weight"].shape[1],
                                  state[f"{block}ff.net.2.weight"].shape[1], uses_context=not first_transformer)
    if f"{prefix}weight" in state:
        weight = state[f"{prefix}weight"]
        return InputConv(weight.shape[1], weight.shape[0], weight.shape[-1], padding=weight.shape[-1] // 2)
    raise KeyError(f"unrecognised UNet layer at {prefix!r}")


def _build_block(state: dict, prefix: str) -> TimestepSequential:
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})
    layers, seen_transformer = [], False
    for index in indices:
        layer = _build_layer(state, f"{prefix}{index}.", first_transformer=not seen_transformer)
        seen_transformer |= isinstance(layer, SpatialTransformer)
        layers.append(layer)
    return TimestepSequential(layers)


def _count_blocks(state: dict, prefix: str) -> int:
    return len({int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})


class UNetModel(nn.Module):
    """x [B, 8, 256, 16], integer timesteps [B], context [B, W, ctx] → v-prediction [B, 8, 256, 16]."""

    def __init__(self, state: dict) -> None:
        super().__init__()
        time_in = state["time_embed.0.weight"].shape[1]
        time_out = state["time_embed.0.weight"].shape[0]
        self.time_channels = time_in
        self.time_embed = nn.Sequential(nn.Linear(time_in, time_out), nn.SiLU(),
                                        nn.Linear(time_out, state["time_embed.2.weight"].shape[0]))
        self.input_blocks = nn.ModuleList(_build_block(state, f"input_blocks.{i}.")
                                          for i in range(_count_blocks(state, "input_blocks.")))
        self.middle_block = _build_block(state, "middle_block.")
        self.output_blocks = nn.ModuleList(_build_block(state, f"output_blocks.{i}.")
                                           for i in range(_count_blocks(state, "output_blocks.")))
        channels = state["out.0.weight"].shape[0]
        out_conv = state["out.2.weight"]
        self.out = nn.Sequential(GroupNorm32(NORM_GROUPS, channels), nn.SiLU(),
                                 nn.Conv2d(channels, out_conv.shape[0], 3, padding=1))

    @property
    def context_dim(self) -> int:
        for module in self.modules():
            if isinstance(module, SpatialTransformer) and module.uses_context:
                return module.transformer_blocks[0].attn2.to_k.in_features
        raise ValueError("the UNet has no cross-attention layer")

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.time_channels))
        skips, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)

    @classmethod
    def from_state_dict(cls, state: dict, prefix: str = "model.diffusion_model.") -> UNetModel:
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        model = cls(own)
        model.load_state_dict(own, strict=True, assign=True)
        return model.eval()

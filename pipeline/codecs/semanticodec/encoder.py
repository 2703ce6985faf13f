"""SemantiCodec's dual encoder: fbank windows → (semantic, acoustic) token pairs.

One forward pass takes a batch of independent 10.24 s windows (from one clip or many) and
returns the untrimmed tokens of each. Everything that is per window in the official code
(padding detection, masking, the LSTM state) stays per batch element, so batching changes
the result only through the float accumulation order of the matrix kernels.

Distances are computed with the same expressions, in the same order, as the official code
(k-means: ‖a‖² + ‖c‖² − 2a·c; VQ: vector-quantize-pytorch's clamp-and-sqrt `cdist`), because
near-tied codewords are decided by float rounding. They always run in float32 with autocast off,
whatever the fast dtype of the other components.

Precision per component is explicit: `fast_dtype` (bf16) autocasts AudioMAE only; the LSTM runs
in the dtype its weights were cast to once (`cast_lstm`), with autocast off (CUDA autocast would
run cuDNN's LSTM in fp16 and re-cast its 208 M weights on every call); the output linear layer
and the distances are float32. Nothing in the forward pass waits for the host: padding
fractions and masks stay on the device.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import CheckpointError
from .audiomae import AudioMAEConfig, AudioMAEEncoder
from .state import count_indexed

AUDIOMAE_PREFIX = "audiomae.model."
LSTM_PREFIX = "encoder."
OUTPUT_LINEAR_KEY = "encoder_output_linear.weight"
VQ_CODEBOOK_KEY = "quantizer._codebook.embed"
EMPTY_ROW_STD = 1e-7  # an fbank row this flat is padding
MASK_VALUE = -1.0
# Rows of features whose distances to every codeword are computed at once (bounds memory
# at large vocabularies; each row's distances do not depend on the chunk).
DISTANCE_CHUNK_ROWS = 2048


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    audiomae: AudioMAEConfig
    patches_per_token: int  # 1, 2 or 4 (the stack factor K)
    lstm_layers: int
    lstm_hidden: int
    semantic_vocab_size: int
    acoustic_vocab_size: int

    @property
    def feature_dim(self) -> int:
        return self.audiomae.width * self.patches_per_token

    @property
    def tokens_per_window(self) -> int:
        return self.audiomae.num_patches // self.patches_per_token


def _in_float32(method):
    """Codeword distances are always computed in float32, autocast off (bf16 would flip near-ties)."""

    @functools.wraps(method)
    def wrapper(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return method(self, features.float())

    return wrapper


def padding_cutoff_fraction(fbank: torch.Tensor) -> torch.Tensor:
    """Fraction of each window [B, frames, mel] before its trailing padding, as float64 [B].

    Reproduces the official rule: rows whose unbiased std is ≤ 1e-7 are empty; the cutoff is
    one past the last non-empty row (only trailing empty rows count), 1.0 when no row is
    empty, and 0.0 when every row is empty or, by a quirk of the official code, when exactly
    one row is non-empty.
    """
    frames = fbank.shape[1]
    non_empty = fbank.std(dim=-1) > EMPTY_ROW_STD
    positions = torch.arange(1, frames + 1, device=fbank.device)
    last_plus_one = (non_empty * positions).amax(dim=1)
    count = non_empty.sum(dim=1)
    cutoff = torch.where(count == frames, frames, last_plus_one)
    cutoff = torch.where(count == 1, 0, cutoff)
    return cutoff.to(torch.float64) / frames  # stays on the device: no host sync


def mark_out(features: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Set positions from ceil(L · fraction) onwards to −1, per batch element. [B, L, C].

    `fractions` [B] float64 on the features' device; the product and ceil are the official
    double-precision ones, computed on the device."""
    length = features.shape[1]
    keep = torch.ceil(fractions * length)
    masked = torch.arange(length, device=features.device)[None, :] >= keep[:, None]
    return features.masked_fill(masked[..., None], MASK_VALUE)


def regroup_patches(patches: torch.Tensor, grid: tuple[int, int], patches_per_token: int) -> torch.Tensor:
    """AudioMAE patch features [B, T·F, W] (time-major) → token features [B, L, W·K].

    K=1 keeps patches as they are; K=2 joins frequency pairs; K=4 joins 2×2 (time, frequency)
    blocks, time sub-index major.
    """
    batch, _, width = patches.shape
    time, freq = grid
    g = patches.reshape(batch, time, freq, width)
    if patches_per_token == 1:
        return patches
    if patches_per_token == 2:
        return g.reshape(batch, time * freq // 2, 2 * width)
    if patches_per_token == 4:
        g = g.reshape(batch, time // 2, 2, freq // 2, 2, width).permute(0, 1, 3, 2, 4, 5)
        return g.reshape(batch, time * freq // 4, 4 * width)
    raise ValueError(f"patches_per_token must be 1, 2 or 4, got {patches_per_token}")


class SemantiCodecEncoder(nn.Module):
    """Normalised fbank windows [B, 1024, 128] → untrimmed tokens [B, L, 2] (semantic, acoustic)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.feature_dim
        self.audiomae = AudioMAEEncoder(config.audiomae)
        self.lstm = nn.LSTM(
            input_size=2 * dim,
            hidden_size=config.lstm_hidden,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=True,
        )
        self.output_linear = nn.Linear(2 * config.lstm_hidden, dim, bias=False)
        self.register_buffer("semantic_codebook", torch.zeros(config.semantic_vocab_size, dim))
        self.register_buffer("acoustic_codebook", torch.zeros(config.acoustic_vocab_size, dim))
        self.eval()

    @property
    def lstm_dtype(self) -> torch.dtype:
        return self.lstm.weight_ih_l0.dtype

    def cast_lstm(self, dtype: torch.dtype) -> None:
        """Cast the LSTM's weights once (e.g. to bf16); its forward then runs in that dtype."""
        if self.lstm_dtype != dtype:
            self.lstm.to(dtype)
            self.lstm.flatten_parameters()

    @torch.inference_mode()
    def forward(self, fbank: torch.Tensor, fast_dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.forward_with_intermediates(fbank, fast_dtype)["tokens"]

    @torch.inference_mode()
    def forward_with_intermediates(
        self, fbank: torch.Tensor, fast_dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """The whole encode of a window batch, keeping each stage's output (for parity checks).

        `fast_dtype` (e.g. torch.bfloat16) autocasts AudioMAE; None keeps everything float32."""
        device_type = fbank.device.type
        fractions = padding_cutoff_fraction(fbank)
        fast = torch.autocast(device_type, dtype=fast_dtype) if fast_dtype else contextlib.nullcontext()
        with fast:
            patches = self.audiomae(fbank)
        features = regroup_patches(patches.float(), self.config.audiomae.grid, self.config.patches_per_token)
        semantic_ids = self.nearest_centroid(features)
        lstm_input = torch.cat([features, self.semantic_codebook[semantic_ids]], dim=-1)
        lstm_input = mark_out(lstm_input, fractions)
        with torch.autocast(device_type, enabled=False):
            hidden, _ = self.lstm(lstm_input.to(self.lstm_dtype))
            vq_input = self.output_linear(hidden.float())
        acoustic_ids = self.nearest_vq_code(vq_input)
        return {
            "padding_fraction": fractions,
            "patches": patches,
            "features": features,
            "vq_input": vq_input,
            "tokens": torch.stack([semantic_ids, acoustic_ids], dim=-1),
        }

    @_in_float32
    def nearest_centroid(self, features: torch.Tensor) -> torch.Tensor:
        """k-means assignment [B, L, D] → [B, L]: argmin of ‖a‖² + ‖c‖² − 2a·c (first on ties)."""
        codebook = self.semantic_codebook
        codebook_sq = torch.sum(codebook**2, dim=-1)
        flat = features.reshape(-1, features.shape[-1])
        ids = []
        for rows in flat.split(DISTANCE_CHUNK_ROWS):
            rows = rows.float()
            dist = torch.sum(rows**2, dim=-1, keepdim=True) + codebook_sq - 2 * torch.matmul(rows, codebook.T)
            ids.append(dist.argmin(dim=-1))
        return torch.cat(ids).reshape(features.shape[:-1])

    @_in_float32
    def nearest_vq_code(self, features: torch.Tensor) -> torch.Tensor:
        """VQ assignment [B, L, D] → [B, L], as vector-quantize-pytorch's Euclidean codebook in eval."""
        codebook = self.acoustic_codebook[None]
        codebook_sq = torch.sum(codebook**2, dim=-1)
        flat = features.reshape(1, -1, features.shape[-1])
        ids = []
        for rows in flat.split(DISTANCE_CHUNK_ROWS, dim=1):
            rows = rows.float()
            cross = torch.einsum("bid,bjd->bij", rows, codebook) * -2
            dist = (torch.sum(rows**2, dim=-1)[..., None] + codebook_sq[:, None, :] + cross)
            score = -dist.clamp(min=1e-8).sqrt()
            ids.append(score.argmax(dim=-1))
        return torch.cat(ids, dim=1).reshape(features.shape[:-1])

    # --- building from a checkpoint's state dict ---
    @staticmethod
    def config_from_state_dict(
        state: dict[str, torch.Tensor], semantic_codebook: torch.Tensor
    ) -> EncoderConfig:
        """Derive every hyperparameter from tensor shapes."""
        audiomae = AudioMAEEncoder.config_from_state_dict(state, AUDIOMAE_PREFIX)
        acoustic = state[VQ_CODEBOOK_KEY]
        feature_dim = acoustic.shape[-1]
        layers = count_indexed(state, f"{LSTM_PREFIX}weight_ih_l{{}}")
        return EncoderConfig(
            audiomae=audiomae,
            patches_per_token=feature_dim // audiomae.width,
            lstm_layers=layers,
            lstm_hidden=state[f"{LSTM_PREFIX}weight_hh_l0"].shape[1],
            semantic_vocab_size=semantic_codebook.shape[0],
            acoustic_vocab_size=acoustic.shape[-2],
        )

    def load_official_state(self, state: dict[str, torch.Tensor], semantic_codebook: torch.Tensor) -> None:
        """Copy the used tensors of an official-layout state dict in (strict on what is used)."""
        own: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith(AUDIOMAE_PREFIX) and not _is_mae_decoder_key(key[len(AUDIOMAE_PREFIX):]):
                own["audiomae." + key[len(AUDIOMAE_PREFIX):]] = value
            elif key.startswith(LSTM_PREFIX):
                own["lstm." + key[len(LSTM_PREFIX):]] = value
        own["output_linear.weight"] = state[OUTPUT_LINEAR_KEY]
        own["acoustic_codebook"] = state[VQ_CODEBOOK_KEY].reshape(self.acoustic_codebook.shape)
        own["semantic_codebook"] = semantic_codebook
        missing = sorted(set(self.state_dict()) - set(own))
        if missing:
            raise CheckpointError(
                "checkpoint is missing encoder tensors " + ", ".join(_official_key(k) for k in missing[:5])
            )
        self.load_state_dict(own, strict=True, assign=True)
        self.lstm.flatten_parameters()


MAE_DECODER_PREFIXES = ("decoder_", "mask_token")


def _official_key(own_key: str) -> str:
    """Our module's state-dict name → the name in the official encoder.ckpt."""
    for own, official in (("audiomae.", AUDIOMAE_PREFIX), ("lstm.", LSTM_PREFIX)):
        if own_key.startswith(own):
            return official + own_key[len(own):]
    return {"output_linear.weight": OUTPUT_LINEAR_KEY, "acoustic_codebook": VQ_CODEBOOK_KEY}.get(own_key, own_key)


def _is_mae_decoder_key(key: str) -> bool:
    return key.startswith(MAE_DECODER_PREFIXES)

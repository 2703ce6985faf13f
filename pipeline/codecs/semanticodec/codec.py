"""The user-facing SemantiCodec: load a published variant, encode many waveforms in packed batches.

`encode` turns each waveform into mono 16 kHz audio (the official channel rule and resampler),
pads it to whole 10.24 s windows, and streams the windows of all clips through the encoder in
batches of at most `max_batch_windows`, so an hour-long clip costs bounded memory and short
clips share forward passes. Tokens are then regrouped per clip and trimmed exactly as the
official `encode` trims them.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterator, Sequence

import numpy as np

from ...audio import to_mono_16k, validate_waveform
from ...errors import CheckpointError
from .checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointSource,
    LoadedFile,
    describe_file,
    load_codebook,
    load_state_dict,
)
from .encoder import (
    AUDIOMAE_PREFIX,
    LSTM_PREFIX,
    OUTPUT_LINEAR_KEY,
    VQ_CODEBOOK_KEY,
    SemantiCodecEncoder,
)
from .fbank import centre, window_fbank
from .lengths import kept_token_count, padding_samples, segment_count
from .variants import ACOUSTIC_VOCAB_SIZE, SAMPLE_RATE_HZ, SemantiCodecVariant

log = logging.getLogger(__name__)

DTYPES = ("float32", "tf32", "bfloat16")
DEFAULT_MAX_BATCH_WINDOWS = 16
_UNUSED_ENCODER_KEYS = {
    "quantizer._codebook.embed_avg",
    "quantizer._codebook.cluster_size",
    "quantizer._codebook.initted",
}


@dataclass(frozen=True, slots=True)
class Provenance:
    """What produced a set of tokens: enough to refuse mixing incompatible corpora."""

    codec: str
    variant: str
    token_rate: int
    semantic_vocab_size: int
    acoustic_vocab_size: int
    checkpoint: str
    files: dict[str, LoadedFile] = field(default_factory=dict)
    synthetic_weights: bool = False
    device: str = "cpu"
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {
            "codec": self.codec,
            "variant": self.variant,
            "token_rate": self.token_rate,
            "semantic_vocab_size": self.semantic_vocab_size,
            "acoustic_vocab_size": self.acoustic_vocab_size,
            "checkpoint": self.checkpoint,
            "files": {name: {"path": f.path, "sha256": f.sha256} for name, f in self.files.items()},
            "synthetic_weights": self.synthetic_weights,
            "device": self.device,
            "dtype": self.dtype,
        }


@dataclass(slots=True)
class _ClipPlan:
    centred: object  # torch.Tensor [padded samples], on the model's device once first used
    num_windows: int
    kept_tokens: int


class SemantiCodec:
    """SemantiCodec encoder (decoder: see the decode-sampling issue)."""

    sample_rate = SAMPLE_RATE_HZ
    num_codebooks = 2

    def __init__(
        self,
        encoder: SemantiCodecEncoder,
        variant: SemantiCodecVariant,
        provenance: Provenance,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if max_batch_windows < 1:
            raise ValueError(f"max_batch_windows must be ≥ 1, got {max_batch_windows}")
        self.encoder = encoder
        self.variant = variant
        self.provenance = provenance
        self.device = device
        self.dtype = dtype
        self.max_batch_windows = max_batch_windows
        self.checkpoint_source: CheckpointSource | None = None
        self._decoder = None

    @property
    def frame_rate(self) -> float:
        return self.variant.frames_per_second

    @property
    def cardinalities(self) -> tuple[int, int]:
        return (self.variant.semantic_vocab_size, ACOUSTIC_VOCAB_SIZE)

    @property
    def is_synthetic(self) -> bool:
        return self.provenance.synthetic_weights

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str = DEFAULT_CHECKPOINT,
        token_rate: int = 100,
        semantic_vocab_size: int = 16384,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
        revision: str | None = None,
        cache_dir: str | None = None,
        storage_options: dict | None = None,
    ) -> "SemantiCodec":
        """Load a published variant's encoder from the hub, a local folder or an fsspec URL.

        `checkpoint` is `hf://owner/repo` (default `hf://haoheliu/SemantiCodec`), a folder, or a
        URL such as `s3://bucket/prefix`, each in the official layout. The decoder file is not
        read. Raises `CheckpointError` on a missing, corrupt or mismatched checkpoint.
        """
        import torch

        variant = SemantiCodecVariant(token_rate, semantic_vocab_size)
        source = CheckpointSource(checkpoint, revision, cache_dir, dict(storage_options or {}))
        encoder_path = source.fetch(variant.encoder_file)
        codebook_path = source.fetch(variant.codebook_file)
        state = load_state_dict(encoder_path)
        _check_encoder_keys(state, encoder_path)
        codebook = load_codebook(codebook_path, expected_rows=semantic_vocab_size)
        semantic = torch.from_numpy(codebook)
        try:
            config = SemantiCodecEncoder.config_from_state_dict(state, semantic)
        except (KeyError, IndexError) as error:
            raise CheckpointError(f"{encoder_path} lacks a tensor the encoder needs: {error}") from error
        _check_variant(config, variant, encoder_path, codebook_path)
        encoder = SemantiCodecEncoder(config)
        try:
            encoder.load_official_state(state, semantic)
        except (RuntimeError, CheckpointError) as error:
            raise CheckpointError(f"{encoder_path} does not fit the {variant.name} encoder: {error}") from error
        encoder.to(device)
        synthetic = source.is_synthetic()
        if synthetic:
            log.warning("SYNTHETIC WEIGHTS: %s is a test checkpoint; its tokens mean nothing", checkpoint)
        provenance = Provenance(
            codec="semanticodec",
            variant=variant.name,
            token_rate=token_rate,
            semantic_vocab_size=semantic_vocab_size,
            acoustic_vocab_size=config.acoustic_vocab_size,
            checkpoint=checkpoint,
            files={"encoder": describe_file(encoder_path), "semantic_codebook": describe_file(codebook_path)},
            synthetic_weights=synthetic,
            device=str(torch.device(device).type),
            dtype=dtype,
        )
        codec = cls(encoder, variant, provenance, device=device, dtype=dtype, max_batch_windows=max_batch_windows)
        codec.checkpoint_source = source
        return codec

    # --- encoding ---
    def encode(
        self,
        waveforms: Sequence[np.ndarray],
        sample_rate: int | Sequence[int],
        *,
        max_batch_windows: int | None = None,
    ) -> list[np.ndarray]:
        """Waveforms → int64 token arrays [T, 2] (semantic, acoustic), one per waveform.

        Each waveform is a float array, mono [N] or channels first [C, N], at `sample_rate`
        (one int, or one per waveform). Raises `ValueError` naming the problem for an unusable
        input. Windows of all clips are packed into forward passes of up to
        `max_batch_windows` windows (default: the codec's setting).
        """
        rates = _per_clip_rates(sample_rate, len(waveforms)) if _is_sequence(waveforms) else None
        if rates is None:
            raise ValueError(
                "waveforms must be a list of arrays (wrap a single waveform in a list), "
                f"got {type(waveforms).__name__}"
            )
        clips = [
            to_mono_16k(validate_waveform(wave, rate, index), rate)
            for index, (wave, rate) in enumerate(zip(waveforms, rates))
        ]
        return list(self.encode_mono_16k(clips, max_batch_windows=max_batch_windows))

    def encode_mono_16k(self, clips, *, max_batch_windows: int | None = None) -> Iterator[np.ndarray]:
        """Encode already mono 16 kHz float32 tensors [N]; yields token arrays in input order."""
        import torch

        limit = max_batch_windows or self.max_batch_windows
        plans = [self._plan(clip) for clip in clips]
        windows = ((c, w) for c, plan in enumerate(plans) for w in range(plan.num_windows))
        pieces: dict[int, list] = {}
        finished: dict[int, np.ndarray] = {}
        next_out = 0
        with self._precision():
            while batch := list(islice(windows, limit)):
                tokens = self._encode_windows([(plans[c], w) for c, w in batch])
                for (c, w), window_tokens in zip(batch, tokens):
                    pieces.setdefault(c, []).append(window_tokens)
                    if w == plans[c].num_windows - 1:
                        joined = torch.cat(pieces.pop(c))[: plans[c].kept_tokens]
                        finished[c] = joined.numpy().astype(np.int64)
                        plans[c].centred = None  # free the clip's audio as soon as it is done
                while next_out in finished:
                    yield finished.pop(next_out)
                    next_out += 1

    def _plan(self, clip) -> _ClipPlan:
        import torch

        num_samples = int(clip.shape[-1])
        padded = torch.nn.functional.pad(clip, (0, padding_samples(num_samples)))
        return _ClipPlan(
            centred=centre(padded),
            num_windows=segment_count(num_samples),
            kept_tokens=kept_token_count(num_samples, self.variant.stack_factor),
        )

    def _encode_windows(self, windows: list[tuple[_ClipPlan, int]]):
        import torch

        features = []
        for plan, index in windows:
            if plan.centred.device != torch.device(self.device):
                plan.centred = plan.centred.to(self.device)
            features.append(window_fbank(plan.centred, index))
        return self.encoder(torch.stack(features)).cpu()

    # --- decoding ---
    def load_decoder(self):
        """Load decoder.ckpt (once) from the checkpoint this codec came from."""
        if self._decoder is None:
            from .decoder_loading import load_decoder

            if self.checkpoint_source is None:
                raise CheckpointError("this codec was not loaded with from_pretrained: no decoder to load")
            self._decoder, description = load_decoder(self.checkpoint_source, self.variant, self.encoder, self.device)
            self.provenance.files["decoder"] = description
        return self._decoder

    def decode(self, tokens_list, ddim_steps: int = 50, cfg_scale: float = 2.0, seed: int | None = None,
               noise=None, *, max_batch_windows: int | None = None) -> list[np.ndarray]:
        """Token arrays [T, 2] (semantic, acoustic) → float32 16 kHz waveforms [N].

        `noise`, when given, holds per clip a list with one float32 array [steps + 1, 8, 256, 16] per
        window: x_T, then the draw of each DDIM step, in the official order. Otherwise noise comes
        from a generator seeded with `seed` (or from torch's global RNG when `seed` is None).
        """
        from .decoding import decode_tokens

        if max_batch_windows is None:
            # On CPU one window at a time is faster (the VAE and vocoder activations overflow the
            # caches when batched: 0.84x measured); GPUs batch windows.
            on_gpu = str(self.device).startswith("cuda")
            max_batch_windows = self.max_batch_windows if on_gpu else 1
        with self._precision():
            return decode_tokens(self, tokens_list, ddim_steps, cfg_scale, seed, noise, max_batch_windows)

    @contextlib.contextmanager
    def _precision(self):
        """fp32 is strict (TF32 off); `tf32` and `bfloat16` are opt-in CUDA fast paths."""
        import torch

        if not str(self.device).startswith("cuda"):
            yield
            return
        matmul = torch.backends.cuda.matmul.allow_tf32
        fast = self.dtype != "float32"
        torch.backends.cuda.matmul.allow_tf32 = fast
        try:
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=fast):
                if self.dtype == "bfloat16":
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        yield
                else:
                    yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple))


def _per_clip_rates(sample_rate, count: int) -> list:
    if _is_sequence(sample_rate) or isinstance(sample_rate, np.ndarray):
        rates = list(sample_rate)
        if len(rates) != count:
            raise ValueError(f"got {len(rates)} sample rates for {count} waveforms")
        return rates
    return [sample_rate] * count


def _check_encoder_keys(state: dict, path) -> None:
    """Refuse keys we do not know (a different model), and missing groups we need."""
    unexpected = []
    for key in state:
        if key.startswith(AUDIOMAE_PREFIX) or key.startswith(LSTM_PREFIX):
            continue
        if key in (OUTPUT_LINEAR_KEY, VQ_CODEBOOK_KEY) or key in _UNUSED_ENCODER_KEYS:
            continue
        unexpected.append(key)
    if unexpected:
        raise CheckpointError(
            f"{path} has {len(unexpected)} unexpected keys for a SemantiCodec encoder, "
            f"e.g. {sorted(unexpected)[:5]}"
        )
    needed = [f"{AUDIOMAE_PREFIX}cls_token", f"{LSTM_PREFIX}weight_ih_l0", OUTPUT_LINEAR_KEY, VQ_CODEBOOK_KEY]
    missing = [key for key in needed if key not in state]
    if missing:
        raise CheckpointError(f"{path} is missing required keys {missing}")


def _check_variant(config, variant: SemantiCodecVariant, encoder_path, codebook_path) -> None:
    problems = []
    if config.patches_per_token != variant.patches_per_token:
        rate = 100 // max(config.patches_per_token, 1)
        problems.append(f"its features stack {config.patches_per_token} patches (token rate {rate})")
    if config.lstm_layers != variant.lstm_layers:
        problems.append(f"its LSTM has {config.lstm_layers} layers, not {variant.lstm_layers}")
    if config.semantic_vocab_size != variant.semantic_vocab_size:
        problems.append(f"the codebook has {config.semantic_vocab_size} rows")
    if problems:
        raise CheckpointError(
            f"{encoder_path} / {codebook_path} are not the {variant.name} variant: " + "; ".join(problems)
        )

"""The user-facing SemantiCodec: load a published variant, encode many waveforms in packed batches,
decode token arrays back to audio (`decode`, the latent-diffusion decoder in `decoding.py`).

`encode` turns each waveform into mono 16 kHz audio (the official channel rule and resampler),
pads it to whole 10.24 s windows (`prepare_clip`, host work that CPU tasks can do ahead), and
streams the windows of all clips through the encoder in passes of at most `max_batch_windows`,
so an hour-long clip costs bounded memory and short clips share forward passes. Each pass is one
pinned host buffer, one non-blocking upload, a device-only forward (batched fbank, encoder) and
one download; the next pass is gathered on the host while the device runs. Tokens are then
regrouped per clip and trimmed exactly as the official `encode` trims them.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import CheckpointError
from .checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointSource,
    LoadedFile,
    describe_file,
    load_codebook,
    load_state_dict,
    resolve_checkpoint,
)
from .device_errors import is_out_of_memory
from .encoder import (
    AUDIOMAE_PREFIX,
    LSTM_PREFIX,
    OUTPUT_LINEAR_KEY,
    VQ_CODEBOOK_KEY,
    SemantiCodecEncoder,
)
from .fbank import window_batch_fbank
from .input import to_mono_16k, validate_waveform
from .precision import DTYPES, check_fp32_matmuls, precision_for
from .prepare import PreparedClip, gather_windows, prepare_clip
from .variants import ACOUSTIC_VOCAB_SIZE, SAMPLE_RATE_HZ, SemantiCodecVariant

log = logging.getLogger(__name__)

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
    revision: str | None = None  # the hub commit the files came from (None for folders and URLs)
    layout: str | None = None  # "repo" or "single-rate" (see checkpoint.py)

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
            "revision": self.revision,
            "layout": self.layout,
        }


@dataclass(slots=True)
class _PassCounts:
    forward_passes: int = 0
    windows: int = 0


class SemantiCodec:
    """A published SemantiCodec variant: `encode` (waveforms → token arrays) and, once
    `load_decoder` has read decoder.ckpt, `decode` (token arrays → 16 kHz waveforms)."""

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
        import torch

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
        self._device = torch.device(device)
        self.precision = precision_for(dtype, self._device.type)
        encoder.cast_lstm(self.precision.lstm)  # once, not per forward
        self._counts = _PassCounts()

    @property
    def stats(self) -> dict:
        """Encoder counters since creation or the last `take_stats()`, for the run record."""
        passes, windows = self._counts.forward_passes, self._counts.windows
        return {
            "forward_passes": passes,
            "windows": windows,
            "mean_windows_per_pass": windows / passes if passes else 0.0,
            "dtype_per_component": self.precision.components(),
        }

    def take_stats(self) -> dict:
        """`stats`, then reset the counters."""
        stats = self.stats
        self._counts = _PassCounts()
        return stats

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
    ) -> SemantiCodec:
        """Load a published variant's encoder from the hub, a local folder or an fsspec URL.

        `checkpoint` is `hf://owner/repo[@revision]` (default `hf://haoheliu/SemantiCodec`), a
        folder, or a URL such as `s3://bucket/prefix`, holding a snapshot of the published repo or
        one rate's folder (see `checkpoint.py`). The decoder file is not read. Raises
        `CheckpointError` on a missing, corrupt or mismatched checkpoint.
        """
        import torch

        variant = SemantiCodecVariant(token_rate, semantic_vocab_size)
        source = CheckpointSource(checkpoint, revision, cache_dir, dict(storage_options or {}))
        resolved = resolve_checkpoint(source, variant)
        encoder_path = source.fetch(resolved.files["encoder"])
        codebook_path = source.fetch(resolved.files["semantic_codebook"])
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
        synthetic = resolved.synthetic
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
            revision=source.commit,
            layout=resolved.layout,
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
            for index, (wave, rate) in enumerate(zip(waveforms, rates, strict=True))
        ]
        return list(self.encode_mono_16k(clips, max_batch_windows=max_batch_windows))

    def encode_mono_16k(self, clips, *, max_batch_windows: int | None = None) -> Iterator[np.ndarray]:
        """Encode already mono 16 kHz float32 arrays/tensors [N]; yields token arrays in input order.

        Each clip's audio is released as soon as its last window is encoded."""
        prepared: list[PreparedClip | None] = [prepare_clip(clip, self.variant) for clip in clips]
        yield from self._encode_stream(prepared, max_batch_windows, release=True)

    def encode_prepared(
        self, clips: Sequence[PreparedClip], *, max_batch_windows: int | None = None
    ) -> list[np.ndarray]:
        """Clips from `prepare_clip` → int64 token arrays [kept_tokens, 2], in input order.

        Only feeds the device: windows of all clips are packed into passes of up to
        `max_batch_windows` (default: the codec's setting). A pass that runs out of device memory
        is retried once as two halves; a second failure is raised. Device errors propagate
        (see `device_errors.is_device_error`)."""
        return list(self._encode_stream(list(clips), max_batch_windows, release=False))

    def _encode_stream(
        self, clips: list, max_batch_windows: int | None, release: bool
    ) -> Iterator[np.ndarray]:
        import torch

        limit = max_batch_windows or self.max_batch_windows
        if limit < 1:
            raise ValueError(f"max_batch_windows must be ≥ 1, got {limit}")
        windows = [(c, w) for c, clip in enumerate(clips) for w in range(clip.num_windows)]
        kept = [clip.kept_tokens for clip in clips]
        last_window = [clip.num_windows - 1 for clip in clips]
        pieces: dict[int, list] = {}
        finished: dict[int, np.ndarray] = {}
        next_out = 0
        in_flight: deque = deque()  # one pass runs on the device while the next is gathered

        def in_order() -> Iterator[np.ndarray]:
            nonlocal next_out
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1

        def collect(parts) -> None:
            for part_windows, host_tokens, done in parts:
                if done is not None:
                    done.synchronize()  # waits for this pass only; the next one keeps the device busy
                for (c, w), window_tokens in zip(part_windows, host_tokens, strict=True):
                    pieces.setdefault(c, []).append(window_tokens)
                    if w == last_window[c]:
                        finished[c] = torch.cat(pieces.pop(c))[: kept[c]].numpy().astype(np.int64)
                        if release:
                            clips[c] = None

        for start in range(0, len(windows), limit):
            in_flight.append(self._run_pass(clips, windows[start : start + limit]))
            if len(in_flight) > 1:
                collect(in_flight.popleft())
            yield from in_order()
        while in_flight:
            collect(in_flight.popleft())
        yield from in_order()

    def _run_pass(self, clips, windows: list[tuple[int, int]]) -> list:
        """Launch one forward pass; on out-of-memory, empty the cache and retry once in two halves."""
        try:
            return [self._launch(clips, windows)]
        except Exception as error:
            if not is_out_of_memory(error) or len(windows) < 2:
                raise
            half = len(windows) // 2
            log.warning("out of memory on a %d-window pass; retrying as %d + %d", len(windows), half,
                        len(windows) - half)
            self._release_cached_memory()
            return [self._launch(clips, windows[:half]), self._launch(clips, windows[half:])]

    def _launch(self, clips, windows: list[tuple[int, int]]):
        """(windows, host token tensor [B, L, 2], event or None). On CUDA the work is only queued:
        the tokens are valid once the event has completed."""
        import torch

        on_cuda = self._device.type == "cuda"
        audio, is_last = gather_windows(clips, windows, pin_memory=on_cuda)
        tokens = self._tokens_on_device(audio, is_last)
        self._counts.forward_passes += 1
        self._counts.windows += len(windows)
        if not on_cuda:
            return windows, tokens, None
        host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
        host.copy_(tokens, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return windows, host, done

    def _tokens_on_device(self, audio, is_last):
        """Host window audio [B, samples] + last-window flags [B] → tokens [B, L, 2] on the device.

        Two non-blocking uploads, then device work only: no host sync until the tokens are read."""
        check_fp32_matmuls(self._device.type)
        audio = audio.to(self._device, non_blocking=True)
        is_last = is_last.to(self._device, non_blocking=True)
        fbank = window_batch_fbank(audio, is_last)
        return self.encoder(fbank, self.precision.audiomae_autocast)

    def _release_cached_memory(self) -> None:
        import torch

        if self._device.type == "cuda":
            torch.cuda.empty_cache()

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
               noise=None, *, max_batch_windows: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Token arrays [T, 2] (semantic, acoustic) → float32 16 kHz waveforms [N].

        `progress(done, total)`, when given, is called after every DDIM step and VAE + vocoder
        pass (a decode of ~46 s on CPU would otherwise be silent).

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
        with self._decode_autocast():
            return decode_tokens(self, tokens_list, ddim_steps, cfg_scale, seed, noise, max_batch_windows,
                                 progress)

    def _decode_autocast(self):
        """bf16 autocast for decoding on CUDA with dtype bfloat16; no global precision flags."""
        import torch

        if self.dtype == "bfloat16" and self._device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


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

"""Token decode for the spot check: picked token rows → waveforms.

The spot check does not choose how rows are decoded: it takes a *decode function*
(`DecodeFn`): `decode_in_process` here (CPU or one GPU, in this process), or the Ray one
(`pipeline.report.ray_decode.decode_with_ray`, decoder actors on every GPU), passed in by the caller.
Both load the codec with `load_codec` and decode a row with `decode_one`, so they give the same
audio for the same request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class DecoderSpec:
    """Which decoder to load and how to run it (from the corpus provenance, or --checkpoint)."""

    checkpoint: str | None
    token_rate: int
    semantic_vocab_size: int
    ddim_steps: int = 50
    cfg_scale: float = 2.0
    device: str = "cpu"
    storage_options: dict | None = None


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One picked row to decode: `tokens` [T, 2] (semantic, acoustic) and its noise seed."""

    index: int
    tokens: np.ndarray
    seed: int


@dataclass(slots=True)
class DecodeResult:
    """`status`: ok, bad_tokens (ids out of the vocabulary, malformed row), decode_failed or
    not_decoded (no codec); `waveform` is set only when ok."""

    waveform: np.ndarray | None
    status: str
    error: str | None
    seconds: float


@dataclass(slots=True)
class DecodeOutcome:
    """Results by request index; `codec_error` when the decoder could not be loaded at all."""

    results: dict[int, DecodeResult]
    codec_error: str | None = None
    synthetic_weights: bool | None = None  # what the loaded checkpoint says, when one was loaded
    in_process: bool = True


class DecodeProgress(Protocol):
    def step(self, index: int, done: int, total: int) -> None:
        """Inside the decode of request `index`: `done` of `total` DDIM steps / vocoder passes."""

    def pick_done(self, index: int) -> None:
        """Request `index` is decoded (or failed)."""


DecodeFn = Callable[[DecoderSpec, list[DecodeRequest], DecodeProgress | None], DecodeOutcome]


def load_codec(spec: DecoderSpec, device: str | None = None):
    """(codec with its decoder loaded, None) or (None, error text)."""
    from ..codecs.semanticodec import SemantiCodec

    if not spec.checkpoint:
        return None, "no checkpoint recorded in the corpus and none given (--checkpoint)"
    try:
        checkpoint = checkpoint_location(spec)
        codec = SemantiCodec.from_pretrained(
            checkpoint, token_rate=int(spec.token_rate), semantic_vocab_size=int(spec.semantic_vocab_size),
            device=device or spec.device, storage_options=spec.storage_options,
        )
        codec.load_decoder()
        return codec, None
    except Exception as error:  # noqa: BLE001 - reported in the report: missing decoder.ckpt, wrong variant, ...
        return None, f"{type(error).__name__}: {error}"


def checkpoint_location(spec: DecoderSpec) -> str:
    """The checkpoint value as SemantiCodec.from_pretrained takes it (synthetic:* built on first use)."""
    from ..codecs.semanticodec.synthetic import resolve_checkpoint_location

    return str(resolve_checkpoint_location(spec.checkpoint, spec.token_rate, spec.semantic_vocab_size,
                                           with_decoder=True))


def decode_one(codec, request: DecodeRequest, spec: DecoderSpec,
               on_step: Callable[[int, int], None] | None = None) -> DecodeResult:
    """One row through the codec, errors classified (a bad row never stops the spot check)."""
    started = time.perf_counter()
    try:
        wave = codec.decode([request.tokens], ddim_steps=spec.ddim_steps, cfg_scale=spec.cfg_scale,
                            seed=request.seed, progress=on_step)[0]
        return DecodeResult(np.asarray(wave, np.float32), "ok", None, time.perf_counter() - started)
    except ValueError as error:  # ids out of the vocabulary, malformed rows
        return DecodeResult(None, "bad_tokens", str(error), time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - the pick's status in the report, flagged as an error
        return DecodeResult(None, "decode_failed", f"{type(error).__name__}: {error}", time.perf_counter() - started)


def not_decoded(codec_error: str) -> DecodeResult:
    return DecodeResult(None, "not_decoded", f"codec unavailable: {codec_error}", 0.0)


def decode_in_process(spec: DecoderSpec, requests: list[DecodeRequest],
                      progress: DecodeProgress | None = None) -> DecodeOutcome:
    """The default decode function: one codec in this process, rows one after another."""
    if not requests:
        return DecodeOutcome({})
    log.info("loading the decoder (%s)", spec.checkpoint)
    codec, codec_error = load_codec(spec)
    results = {}
    for request in requests:
        if codec is None:
            results[request.index] = not_decoded(codec_error)
        else:
            on_step = (lambda done, total, k=request.index: progress.step(k, done, total)) if progress else None
            results[request.index] = decode_one(codec, request, spec, on_step)
        if progress is not None:
            progress.pick_done(request.index)
    return DecodeOutcome(results, codec_error, synthetic_weights=codec.is_synthetic if codec is not None else None)

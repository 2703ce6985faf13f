"""Encoder numerics and robustness on CPU: fp32 fbank bit for bit, bf16 mode per component,
prepared clips, device-error classification, the out-of-memory retry and the pass counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.codecs.semanticodec.codec import DTYPES
from pipeline.codecs.semanticodec.device_errors import is_device_error, is_out_of_memory
from pipeline.codecs.semanticodec.fbank import (
    FBANK_MEAN,
    FBANK_STD,
    WINDOW_INPUT_SAMPLES,
    centre,
    window_batch_fbank,
    window_input,
)
from pipeline.codecs.semanticodec.lengths import kept_token_count, padding_samples, segment_count
from pipeline.codecs.semanticodec.prepare import PreparedClip, prepare_clip
from tests.support.audio import make_tone


def load(small_checkpoint, dtype="float32"):
    return SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096, dtype=dtype)


class MatmulTrace(TorchDispatchMode):
    """Every matmul-like op with its operand shapes and dtypes; every dtype cast of a tensor."""

    MATMULS = {"aten.mm.default", "aten.bmm.default", "aten.addmm.default", "aten.matmul.default",
               "aten.einsum.default", "aten.linear.default"}

    def __init__(self) -> None:
        super().__init__()
        self.matmuls: list[tuple[list, list]] = []
        self.casts: list[tuple[tuple, torch.dtype, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten(args)[0] if isinstance(a, torch.Tensor)]
        if str(func) in self.MATMULS:
            self.matmuls.append(([tuple(t.shape) for t in tensors], [t.dtype for t in tensors]))
        if str(func) == "aten._to_copy.default" and "dtype" in kwargs and tensors:
            self.casts.append((tuple(tensors[0].shape), tensors[0].dtype, kwargs["dtype"]))
        return func(*args, **kwargs)

    def with_dim(self, size: int) -> list[list]:
        return [dtypes for shapes, dtypes in self.matmuls if any(size in shape for shape in shapes)]


def kaldi_window_fbank(centred: torch.Tensor, window: int) -> torch.Tensor:
    """The encoder's fbank before batching: torchaudio's Kaldi fbank of one window."""
    import torchaudio.compliance.kaldi as kaldi

    chunk = centred[window * 163840 : window * 163840 + WINDOW_INPUT_SAMPLES]
    fbank = kaldi.fbank(chunk[None], htk_compat=True, sample_frequency=16000, use_energy=False,
                        window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    fbank = torch.nn.functional.pad(fbank, (0, 0, 0, 1024 - fbank.shape[0]))
    return (fbank - FBANK_MEAN) / (FBANK_STD * 2)


def test_batched_fbank_is_bit_identical_to_torchaudio_kaldi():
    wave = torch.from_numpy(make_tone(21.0, seed=3)[0])
    wave[:8000] = 0  # digital silence hits the log floor
    centred = centre(torch.nn.functional.pad(wave, (0, padding_samples(len(wave)))))
    inputs = [window_input(centred, w) for w in range(segment_count(len(wave)))]
    batch = window_batch_fbank(torch.stack([a for a, _ in inputs]), torch.tensor([last for _, last in inputs]))
    assert [last for _, last in inputs] == [False, False, True]
    for window in range(len(inputs)):
        assert torch.equal(batch[window], kaldi_window_fbank(centred, window)), window


def test_fbank_stays_float32_under_bf16_autocast():
    """Defect 3: under an enclosing bf16 autocast the mel matmul used to run in bf16."""
    audio, is_last = window_input(centre(torch.from_numpy(make_tone(10.0)[0])), 0)
    with torch.autocast("cpu", dtype=torch.bfloat16), MatmulTrace() as trace:
        fbank = window_batch_fbank(audio[None], torch.tensor([is_last]))
    assert fbank.dtype == torch.float32
    mel_matmuls = trace.with_dim(257)
    assert mel_matmuls and all(d == torch.float32 for dtypes in mel_matmuls for d in dtypes)


def test_tf32_is_not_an_option_any_more():
    """TF32 needs process-global flags (they race between threads); only fp32 and bf16 remain."""
    assert DTYPES == ("float32", "bfloat16")


def test_bf16_mode_precision_per_component(small_checkpoint):
    """Defects 1-3 on CPU: AudioMAE in bf16, the LSTM's weights cast once to bf16 (no per-call
    re-cast), fbank, output linear and both distance searches in float32."""
    codec = load(small_checkpoint, "bfloat16")
    lstm = codec.encoder.lstm
    assert lstm.weight_ih_l0.dtype == torch.bfloat16
    pointer = lstm.weight_hh_l0.data_ptr()
    waves = [make_tone(3.0, seed=1)[0], make_tone(12.0, seed=2)[0]]
    with MatmulTrace() as trace:
        tokens = codec.encode(waves, 16000)
    assert lstm.weight_hh_l0.data_ptr() == pointer  # not re-cast
    lstm_shapes = {tuple(p.shape) for p in lstm.parameters()}
    assert not [c for c in trace.casts if c[0] in lstm_shapes and c[1] != c[2]], "LSTM weights re-cast per call"
    config = codec.encoder.config
    for vocab in (config.semantic_vocab_size, config.acoustic_vocab_size):  # distances: a codebook operand
        found = trace.with_dim(vocab)
        assert found and all(d == torch.float32 for dtypes in found for d in dtypes), vocab
    assert all(d == torch.float32 for dtypes in trace.with_dim(257) for d in dtypes)  # fbank
    width = codec.encoder.config.audiomae.width
    assert any(torch.bfloat16 in dtypes for dtypes in trace.with_dim(3 * width))  # AudioMAE's qkv
    assert codec.stats["dtype_per_component"] == {
        "fbank": "float32", "audiomae": "bfloat16", "lstm": "bfloat16", "output_linear": "float32",
        "distances": "float32",
    }
    assert [len(t) for t in tokens] == [kept_token_count(len(w), 1.0) for w in waves]


def test_float32_mode_is_float32_everywhere(small_checkpoint):
    codec = load(small_checkpoint)
    with MatmulTrace() as trace:
        codec.encode([make_tone(2.0)[0]], 16000)
    assert trace.matmuls and all(d == torch.float32 for _, dtypes in trace.matmuls for d in dtypes)
    assert set(codec.stats["dtype_per_component"].values()) == {"float32"}


def test_bf16_tokens_mostly_agree_with_fp32(small_checkpoint):
    waves = [make_tone(5.0, seed=s)[0] for s in range(3)]
    exact = load(small_checkpoint).encode(waves, 16000)
    fast = load(small_checkpoint, "bfloat16").encode(waves, 16000)
    for a, b in zip(exact, fast, strict=True):
        assert a.shape == b.shape
        assert (a[:, 0] == b[:, 0]).mean() > 0.5  # random small weights: only a sanity bound


def test_prepared_clips_give_the_tokens_of_encode(small_checkpoint):
    codec = load(small_checkpoint)
    waves = [make_tone(s, seed=i)[0] for i, s in enumerate([3.7, 21.0, 0.3, 10.24])]
    expected = codec.encode(waves, 16000, max_batch_windows=3)
    prepared = [prepare_clip(wave, codec.variant) for wave in waves]  # no model needed
    assert all(isinstance(p, PreparedClip) and p.samples.dtype == np.float32 for p in prepared)
    assert [p.num_windows for p in prepared] == [1, 3, 1, 2]
    assert [p.kept_tokens for p in prepared] == [kept_token_count(len(w), 1.0) for w in waves]
    assert abs(float(prepared[1].samples.mean(dtype=np.float64))) < 1e-6  # centred over the padding
    for limit in (1, 64):
        for got, want in zip(codec.encode_prepared(prepared, max_batch_windows=limit), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    assert codec.encode_prepared([]) == []


def test_prepare_clip_rejects_what_is_not_mono_audio(small_checkpoint):
    variant = load(small_checkpoint).variant
    for bad in (np.zeros((2, 100), np.float32), np.zeros(0, np.float32), np.zeros(10, np.int16)):
        with pytest.raises(ValueError, match="mono"):
            prepare_clip(bad, variant)


def test_stats_count_passes_and_windows_and_reset(small_checkpoint):
    codec = load(small_checkpoint)
    assert codec.stats["forward_passes"] == 0 and codec.stats["mean_windows_per_pass"] == 0.0
    waves = [make_tone(10.0, seed=i)[0] for i in range(5)]  # one window each
    codec.encode(waves, 16000, max_batch_windows=2)
    codec.encode(waves[:1], 16000)
    taken = codec.take_stats()
    assert (taken["forward_passes"], taken["windows"]) == (4, 6)
    assert taken["mean_windows_per_pass"] == 1.5
    assert codec.stats["forward_passes"] == 0 and codec.stats["windows"] == 0


@pytest.mark.parametrize(
    "error, device",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), True),
        (RuntimeError("CUDA error: unspecified launch failure"), True),
        (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm`"), True),
        (ValueError("waveform 0: 3 NaN/inf samples"), False),
        (RuntimeError("shape '[1, 512]' is invalid for input of size 7"), False),
        (KeyError("cuda error"), False),
    ],
)
def test_device_errors_are_told_apart_from_input_errors(error, device):
    """Defect 4: the pipeline re-raises device errors (the actor dies, Ray retries the batch)."""
    assert is_device_error(error) is device


def _fail_when_more_than(codec, monkeypatch, limit: int, error_type=torch.cuda.OutOfMemoryError):
    sizes = []
    forward = codec.encoder.forward

    def forward_with_small_memory(fbank, *args):
        sizes.append(fbank.shape[0])
        if fbank.shape[0] > limit:
            raise error_type("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(fbank, *args)

    monkeypatch.setattr(codec.encoder, "forward", forward_with_small_memory)
    return sizes


def test_out_of_memory_retries_once_with_the_pass_halved(small_checkpoint, monkeypatch):
    codec = load(small_checkpoint)
    waves = [make_tone(10.0, seed=i)[0] for i in range(6)]
    expected = codec.encode(waves, 16000, max_batch_windows=1)
    sizes = _fail_when_more_than(codec, monkeypatch, 3)
    got = codec.encode(waves, 16000, max_batch_windows=6)
    assert sizes == [6, 3, 3]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not from torch's allocator


def test_out_of_memory_after_halving_is_raised(small_checkpoint, monkeypatch):
    codec = load(small_checkpoint)
    sizes = _fail_when_more_than(codec, monkeypatch, 1)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        codec.encode([make_tone(10.0, seed=i)[0] for i in range(4)], 16000, max_batch_windows=4)
    assert sizes == [4, 2]


def test_other_errors_are_not_retried(small_checkpoint, monkeypatch):
    codec = load(small_checkpoint)
    sizes = _fail_when_more_than(codec, monkeypatch, 0, error_type=ValueError)
    with pytest.raises(ValueError):
        codec.encode([make_tone(10.0, seed=i)[0] for i in range(4)], 16000, max_batch_windows=4)
    assert sizes == [4]


def test_precision_plans_and_the_tf32_guard(monkeypatch):
    from pipeline.codecs.semanticodec.precision import check_fp32_matmuls, precision_for
    from pipeline.errors import ConfigError

    assert precision_for("bfloat16", "cuda").lstm == torch.bfloat16
    assert precision_for("float32", "cuda").audiomae_autocast is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert precision_for("bfloat16", "cpu").lstm == torch.float32  # no native bf16: fp32 is faster
    with pytest.raises(ValueError, match="dtype"):
        precision_for("tf32", "cuda")
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # someone else's process-wide TF32
        with pytest.raises(ConfigError, match="IEEE"):
            check_fp32_matmuls("cuda")
        check_fp32_matmuls("cpu")  # CPU matmuls ignore the flag
    finally:
        torch.set_float32_matmul_precision(previous)

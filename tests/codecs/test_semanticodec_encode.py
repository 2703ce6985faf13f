"""SemantiCodec.encode behaviour on small synthetic checkpoints: shapes, batching, bad input, memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.codecs.semanticodec.lengths import kept_token_count, segment_count
from pipeline.codecs.semanticodec.synthetic import build_small_checkpoint
from tests.support.audio import make_tone


@pytest.fixture(scope="module")
def codec(small_checkpoint):
    return SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=100, semantic_vocab_size=4096)


@pytest.mark.parametrize("rate", [100, 50, 25])
def test_token_shapes_ranges_and_lengths(small_checkpoint, rate):
    codec = SemantiCodec.from_pretrained(str(small_checkpoint), token_rate=rate, semantic_vocab_size=8192)
    waves = [make_tone(1.0), make_tone(10.24, seed=1), make_tone(0.05, seed=2)]
    tokens = codec.encode(waves, sample_rate=16000)
    for wave, tok in zip(waves, tokens, strict=True):
        assert tok.dtype == np.int64 and tok.ndim == 2 and tok.shape[1] == 2
        assert len(tok) == kept_token_count(wave.shape[1], 100 / rate)
        assert tok[:, 0].min() >= 0 and tok[:, 0].max() < 8192
        assert tok[:, 1].min() >= 0 and tok[:, 1].max() < 8192
    assert len(tokens[0]) == {100: 57, 50: 29, 25: 15}[rate]  # the official 1 s rounding quirk
    assert codec.frame_rate == rate / 2 and codec.cardinalities == (8192, 8192)


def test_batched_equals_single_and_order_is_kept(codec):
    waves = [make_tone(s, seed=i) for i, s in enumerate([3.7, 12.0, 0.3, 21.0, 10.24])]
    single = codec.encode(waves, sample_rate=16000, max_batch_windows=1)
    for limit in (3, 16):
        batched = codec.encode(waves, sample_rate=16000, max_batch_windows=limit)
        for one, many in zip(single, batched, strict=True):
            np.testing.assert_array_equal(one, many)
    # one clip alone gives what it gives among others
    np.testing.assert_array_equal(codec.encode([waves[3]], 16000)[0], single[3])


def test_windows_are_packed_across_clips_up_to_the_limit(codec, monkeypatch):
    sizes = []
    forward = codec.encoder.forward

    def spy(fbank, *args):
        sizes.append(fbank.shape[0])
        return forward(fbank, *args)

    monkeypatch.setattr(codec.encoder, "forward", spy)
    waves = [make_tone(s, seed=i) for i, s in enumerate([3.0, 25.0, 1.0, 12.0])]
    codec.encode(waves, sample_rate=16000, max_batch_windows=4)
    assert sum(sizes) == sum(segment_count(w.shape[1]) for w in waves) == 7
    assert sizes == [4, 3]


def test_channels_and_resampling_follow_the_official_rule(codec):
    stereo_48k = make_tone(2.0, rate=48000, channels=2, seed=3)
    stereo_48k[1] = make_tone(2.0, rate=48000, seed=9)[0]  # a different right channel
    left_only = stereo_48k[0]
    both, left = codec.encode([stereo_48k, left_only], sample_rate=[48000, 48000])
    np.testing.assert_array_equal(both, left)  # channel 0 only, no down-mix
    eight_channels_96k = make_tone(0.5, rate=96000, channels=8, seed=4)
    (tokens,) = codec.encode([eight_channels_96k], sample_rate=96000)
    assert len(tokens) == kept_token_count(8000, 1.0)


def test_torch_tensors_and_float64_are_accepted(codec):
    import torch

    wave = make_tone(1.5, seed=5)[0]
    as_numpy, as_torch, as_f64 = codec.encode(
        [wave, torch.from_numpy(wave), wave.astype(np.float64)], sample_rate=16000
    )
    np.testing.assert_array_equal(as_numpy, as_torch)
    np.testing.assert_array_equal(as_numpy, as_f64)


@pytest.mark.parametrize(
    "wave, rate, message",
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros((2, 0), np.float32), 16000, "empty"),
        (np.array([0.1, np.nan, 0.2], np.float32), 16000, "NaN/inf"),
        (np.array([0.1, np.inf], np.float32), 16000, "NaN/inf"),
        (np.zeros(1600, np.int16), 16000, "dtype"),
        (np.zeros((1, 2, 1600), np.float32), 16000, "shape"),
        (np.zeros((48000, 2), np.float32), 16000, "channels first"),
        (np.zeros(1600, np.float32), 0, "sample_rate"),
        (np.zeros(1600, np.float32), -16000, "sample_rate"),
        (np.zeros(1600, np.float32), 16000.0, "sample_rate"),
        ("not audio", 16000, "numpy array"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(codec, wave, rate, message):
    with pytest.raises(ValueError, match=message):
        codec.encode([wave], sample_rate=rate)


def test_bad_call_shapes(codec):
    with pytest.raises(ValueError, match="list"):
        codec.encode(np.zeros(1600, np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="2 sample rates for 1"):
        codec.encode([np.zeros(1600, np.float32)], sample_rate=[16000, 16000])
    assert codec.encode([], sample_rate=16000) == []


def test_one_hour_clip_encodes_in_bounded_memory(tmp_path):
    """An hour of audio is streamed window by window: peak RSS grows by far less than the
    ~6 GB a whole-clip fbank (frames, spectra) plus one giant batch would take."""
    tiny = build_small_checkpoint(tmp_path / "tiny", token_rates=(25,), semantic_vocab_sizes=(4096,), width=16, depth=3)
    script = textwrap.dedent(
        f"""
        import json, resource, numpy as np, torch
        from pipeline.codecs.semanticodec import SemantiCodec
        torch.set_num_threads(2)
        codec = SemantiCodec.from_pretrained({str(tiny)!r}, token_rate=25, semantic_vocab_size=4096)
        codec.encode([np.zeros(16000, np.float32)], 16000)  # warm up allocators
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wave = (0.1 * np.sin(np.arange(3600 * 16000, dtype=np.float32) * 0.05)).astype(np.float32)
        batches = []
        forward = codec.encoder.forward
        codec.encoder.forward = lambda x, *a: (batches.append(x.shape[0]), forward(x, *a))[1]
        (tokens,) = codec.encode([wave], 16000, max_batch_windows=8)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"tokens": len(tokens), "max_batch": max(batches), "calls": len(batches),
                          "growth_mb": (peak - before) / 1024, "input_mb": wave.nbytes / 2**20}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tokens"] == kept_token_count(3600 * 16000, 4.0)
    assert report["max_batch"] == 8 and report["calls"] == 44  # 352 windows, 8 at a time
    # the input itself (220 MB) plus its padded and centred copies; nothing proportional to frames
    assert report["growth_mb"] < 4 * report["input_mb"] + 300, report

"""The codec's channel/resampling rule against the official resampler output, and the streamed and
span-wise resampling built on it."""

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from pipeline.audio import resample as audio
from pipeline.audio.resample import GROUP_INPUT_SAMPLES, StreamingResampler
from pipeline.codecs.semanticodec.input import resampled_length, resampler, to_mono_16k, validate_waveform
from tests.support.golden import read_golden_clip


def test_resampled_channel0_matches_official(golden_dir):
    wave, rate = read_golden_clip(golden_dir, "b")
    assert (wave.shape[0], rate) == (2, 44100)
    mono = to_mono_16k(validate_waveform(wave, rate), rate)
    expected = np.load(golden_dir / "interm_clip_b_resampled_16k_ch0.npy")[0]
    np.testing.assert_allclose(mono.numpy(), expected, rtol=0, atol=1e-6)
    print("max |Δ| resample:", float(np.abs(mono.numpy() - expected).max()))


def test_16k_input_is_passed_through_unchanged():
    wave = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    np.testing.assert_array_equal(to_mono_16k(validate_waveform(wave, 16000), 16000).numpy(), wave[0])


RATES = (8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000)


@pytest.mark.parametrize("rate", RATES)
def test_cached_resampler_is_bit_identical_to_torchaudio_functional(rate):
    """Tokens must not change: the per-rate cached kernel gives exactly functional.resample's samples."""
    wave = torch.from_numpy(np.random.default_rng(rate).uniform(-1, 1, (1, rate * 3 + 17)).astype(np.float32))
    expected = AF.resample(wave, rate, 16000)
    assert torch.equal(resampler(rate, 16000)(wave), expected)
    assert torch.equal(to_mono_16k(wave, rate), expected[0])
    assert resampled_length(rate, 16000, wave.shape[1]) == expected.shape[1]


@pytest.mark.parametrize("group", [GROUP_INPUT_SAMPLES, 1 << 16])
@pytest.mark.parametrize("rate", RATES + (16000,))
def test_streaming_resampler_matches_whole_signal_resampling(rate, group, monkeypatch):
    """Block-wise resampling (the long-file path) against the whole signal at once: same length,
    max |Δ| within float rounding (printed: the measured figure). Small convolution groups make
    a 40 s signal span many groups, as a long file does."""
    monkeypatch.setattr(audio, "GROUP_INPUT_SAMPLES", group)
    samples = np.random.default_rng(1).uniform(-1, 1, rate * 40 + 5).astype(np.float32)
    expected = AF.resample(torch.from_numpy(samples)[None], rate, 16000)[0].numpy()
    stream = StreamingResampler(rate, 16000)
    got = np.concatenate([stream.push(samples[i:i + 262144]) for i in range(0, len(samples), 262144)]
                         + [stream.finish()])
    assert got.shape == expected.shape
    delta = float(np.abs(got - expected).max())
    print(f"streaming resample {rate} Hz -> 16 kHz, groups of {group} samples: max |Δ| = {delta:.3g}")
    assert delta <= 1e-6


# --- resampling deferred to the encoder: spans -----------------------------------------------------

@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("samples_at_16k", [1, 7, 3 * 16000 + 11, 40 * 16000 + 5])
def test_span_cutter_spans_resample_to_the_whole_signal_resample(rate, samples_at_16k):
    """Chunks cut as resampler input spans, pushed in odd-sized blocks and resampled span by span,
    give the whole-signal resample's samples: same count, max |Δ| within float rounding."""
    length = samples_at_16k * rate // 16000 or 1  # the same durations at every rate
    samples = np.random.default_rng(length).uniform(-1, 1, length).astype(np.float32)
    expected = AF.resample(torch.from_numpy(samples)[None], rate, 16000)[0]
    chunk_out = 163840
    cutter = audio.SpanCutter(rate, 16000, length, chunk_out)
    spans = [pair for start in range(0, length, 30011) for pair in cutter.push(samples[start:start + 30011])]
    spans += cutter.finish()
    assert len(spans) == max(1, -(-len(expected) // chunk_out))
    assert [count for _, count in spans[:-1]] == [chunk_out] * (len(spans) - 1)
    got = torch.cat(audio.resample_spans([s for s, _ in spans], [rate] * len(spans), [c for _, c in spans]))
    assert got.shape == expected.shape
    delta = float((got - expected).abs().max())
    print(f"spans {rate} Hz, {length} samples -> {len(spans)} chunks: max |Δ| = {delta:.3g}")
    assert delta <= 1e-6


def test_span_cutter_refuses_chunks_that_split_a_resampler_frame_and_short_input():
    # 44.1 kHz -> 16 kHz: resampler frames of 160 output samples; a chunk of 16,001 splits one
    assert audio.SpanCutter.supported(44100, 16000, 163840) and not audio.SpanCutter.supported(44100, 16000, 16001)
    assert not audio.SpanCutter.supported(16000, 16000, 163840)  # nothing to resample
    with pytest.raises(ValueError, match="not a whole number"):
        audio.SpanCutter(44100, 16000, 1000, 16001)
    cutter = audio.SpanCutter(48000, 16000, 480000, 163840)
    cutter.push(np.zeros(100000, np.float32))
    with pytest.raises(ValueError, match="fewer samples than announced"):
        cutter.finish()

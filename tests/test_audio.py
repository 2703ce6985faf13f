"""The shared channel/resampling rule against the official resampler output."""

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from pipeline import audio
from pipeline.audio import (
    GROUP_INPUT_SAMPLES,
    StreamingResampler,
    resampled_length,
    resampler,
    to_mono_16k,
    validate_waveform,
)
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

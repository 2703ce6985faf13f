"""The shared channel/resampling rule against the official resampler output."""

import numpy as np

from pipeline.audio import to_mono_16k, validate_waveform
from tests.conftest import read_golden_clip


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

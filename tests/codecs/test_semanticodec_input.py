"""The codec's input rule at odd sample rates: torchaudio's exact resampler needs a kernel of
new/g x (orig/g + 2 width) taps for g = gcd(orig, new), tiny at the rates audio is recorded at and
gigabytes for a ratio in lowest terms (44,101 Hz), so such rates are a recorded failure of their
input, refused before the kernel is built."""

from __future__ import annotations

import io
import resource

import numpy as np
import pytest
import soundfile as sf
import torchaudio.transforms as T

from pipeline.audio.load import load_chunks
from pipeline.codecs.semanticodec.input import MAX_KERNEL_TAPS, resampler, resampler_kernel_taps
from pipeline.errors import AudioInputError
from pipeline.records import AudioChunk, Failure, SourceItem

STANDARD_RATES = (8000, 11025, 12000, 22050, 24000, 32000, 37800, 44056, 44100, 47952, 48000, 88200, 96000,
                  176400, 192000, 384000)


@pytest.mark.parametrize("rate", STANDARD_RATES)
def test_the_kernel_size_rule_is_torchaudios_and_every_standard_rate_is_admitted(rate):
    assert resampler_kernel_taps(rate, 16000) == T.Resample(rate, 16000).kernel.numel() <= MAX_KERNEL_TAPS
    assert resampler(rate, 16000) is not None


@pytest.mark.parametrize("rate", (44101, 96001, 8001))
def test_a_rate_whose_kernel_would_take_gigabytes_is_refused_before_it_is_built(rate):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(AudioInputError, match=f"sample rate {rate} Hz cannot be resampled to 16000 Hz"):
        resampler(rate, 16000)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing was built


def test_a_file_at_such_a_rate_is_its_own_failure_row_and_a_standard_one_is_not():
    def wav(rate: int) -> bytes:
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(rate // 2, np.float32), rate, format="WAV")
        return buffer.getvalue()

    (failure,) = load_chunks(SourceItem("odd", "odd.wav", data=wav(44101)), chunk_windows=30, max_duration_s=60)
    assert isinstance(failure, Failure) and failure.stage == "decode" and not failure.retryable
    assert failure.error_type == "AudioInputError" and "44101 Hz cannot be resampled" in failure.message
    (chunk,) = load_chunks(SourceItem("cd", "cd.wav", data=wav(44100)), chunk_windows=30, max_duration_s=60)
    assert isinstance(chunk, AudioChunk) and len(chunk.waveform) == 8000

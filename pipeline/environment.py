"""The environment check: the libraries a run decodes and encodes with load and work, run by the
driver's pre-flight before Ray starts and by every worker process before its first input, so a
broken install fails its own start instead of writing inputs off."""

from __future__ import annotations

from .faults import Fault


def check_libraries() -> None:
    """The libraries a run decodes and encodes with load and work: libsndfile writes and reads a
    WAV, FFmpeg decodes it, torchaudio resamples and computes a filterbank (the kernels the codec
    uses). Raises a `Fault` in one line naming the library, the error and its likely cause. The
    driver runs it before Ray starts, every worker before its first input."""
    for what, check in LIBRARY_CHECKS:
        try:
            check()
        except Exception as error:  # whatever a library raises here, the environment is at fault
            raise Fault.from_error(f"the environment check of {what}", error) from error


def _tiny_wav() -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(CHECK_FRAMES, np.float32), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _check_soundfile() -> None:
    import io

    import soundfile as sf

    samples, _ = sf.read(io.BytesIO(_tiny_wav()), dtype="float32")
    if len(samples) != CHECK_FRAMES:
        raise RuntimeError(f"libsndfile read back {len(samples)} of {CHECK_FRAMES} frames")


def _check_ffmpeg() -> None:
    from .audio.ffmpeg import FFmpegReader

    frames = sum(len(block) for block in FFmpegReader(_tiny_wav()).blocks(0, None))
    if frames != CHECK_FRAMES:
        raise RuntimeError(f"FFmpeg decoded {frames} of {CHECK_FRAMES} frames")


def _check_torchaudio() -> None:
    import torch
    from torchaudio.compliance import kaldi

    from .codecs.semanticodec.input import resampler

    resampler(44100, 16000)(torch.zeros(1, 4410))
    kaldi.fbank(torch.zeros(1, 16000), num_mel_bins=128)


CHECK_FRAMES = 1600
LIBRARY_CHECKS = (("libsndfile (soundfile)", _check_soundfile), ("FFmpeg (PyAV)", _check_ffmpeg),
                  ("torchaudio (resampler, filterbank)", _check_torchaudio))

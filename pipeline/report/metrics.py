"""Reconstruction metrics between an original and a decoded 16 kHz mono waveform.

* `log_mel_distance`: mean absolute difference of natural-log mel spectrograms (80 mels,
  1024-point FFT, hop 256, floor 1e-5), the L1 log-mel distance vocoder papers report.
* `mrstft_distance`: multi-resolution STFT distance (FFT 512/1024/2048, hop = FFT/4, Hann
  window): per resolution spectral convergence + mean |log magnitude difference|, averaged.
* `pesq_score` / `stoi_score`: only when the optional `pesq` / `pystoi` packages are importable
  (they are not dependencies of this project); meant for speech rows.
* ViSQOL is not computed: no maintained pip package of it is used here.

A diffusion decoder does not reproduce the waveform's phase, so sample-wise measures (SNR) are
meaningless here; every metric above compares magnitudes. Both signals are cut to the shorter one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ as SAMPLE_RATE

MEL_FFT, MEL_HOP, MEL_BINS, LOG_FLOOR = 1024, 256, 80, 1e-5
MRSTFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
VISQOL_NOTE = "ViSQOL not computed: no maintained pip package of ViSQOL is used by this report."

SPEECH_MIDS = {"/m/09x0r", "/m/05zppz", "/m/02zsn", "/m/0ytgt", "/m/01h8n0", "/m/02qldy", "/m/0l5r", "/m/02rtxlg"}
SPEECH_WORDS = ("speech", "speaking", "speaker", "conversation", "narration", "monologue", "whispering", "talk")


def _tensor(wave):
    import torch

    return torch.as_tensor(np.ascontiguousarray(wave, dtype=np.float32))


def align(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both cut to the shorter length (float32, 1-D)."""
    n = min(len(reference), len(degraded))
    return np.asarray(reference[:n], np.float32), np.asarray(degraded[:n], np.float32)


@lru_cache(maxsize=4)
def _mel_filters(n_fft: int, n_mels: int, sample_rate: int):
    import torchaudio.functional as AF

    return AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney",
                              mel_scale="slaney")


def _magnitude(wave, n_fft: int, hop: int):
    import torch

    x = _tensor(wave)
    if x.numel() < n_fft:  # very short clip: pad so one frame exists
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, hop, n_fft, torch.hann_window(n_fft), center=True, return_complex=True)
    return spec.abs()  # [freq, frames]


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Natural-log mel spectrogram [mels, frames] (the one plotted and compared)."""
    import torch

    mag = _magnitude(wave, MEL_FFT, MEL_HOP)
    mel = _mel_filters(MEL_FFT, MEL_BINS, sample_rate).T @ mag
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).numpy()


def log_mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    ref, deg = align(reference, degraded)
    if len(ref) == 0:
        return math.nan
    return float(np.mean(np.abs(log_mel(ref, sample_rate) - log_mel(deg, sample_rate))))


def mrstft_distance(reference: np.ndarray, degraded: np.ndarray) -> float:
    import torch

    ref, deg = align(reference, degraded)
    if len(ref) == 0:
        return math.nan
    total = 0.0
    for n_fft, hop in MRSTFT_RESOLUTIONS:
        a, b = _magnitude(ref, n_fft, hop), _magnitude(deg, n_fft, hop)
        convergence = torch.linalg.norm(a - b) / torch.clamp(torch.linalg.norm(a), min=1e-7)
        log_mag = torch.mean(torch.abs(torch.log(torch.clamp(a, min=1e-7)) - torch.log(torch.clamp(b, min=1e-7))))
        total += float(convergence) + float(log_mag)
    return total / len(MRSTFT_RESOLUTIONS)


def optional_metric_packages() -> dict[str, bool]:
    """Which optional metric packages can be imported here."""
    found = {}
    for name in ("pesq", "pystoi"):
        try:
            __import__(name)
            found[name] = True
        except Exception:  # noqa: BLE001 - not installed, or a broken native build: the metric is left out
            found[name] = False
    return found


def pesq_score(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Wide-band PESQ (MOS-LQO), or None when `pesq` is missing or refuses the signal."""
    try:
        from pesq import pesq
    except Exception:  # noqa: BLE001 - an optional metric: missing or broken, it is left out
        return None
    ref, deg = align(reference, degraded)
    try:
        return float(pesq(sample_rate, ref.astype(np.float64), deg.astype(np.float64), "wb"))
    except Exception:  # noqa: BLE001 - the metric refuses the signal ("No utterances detected", too short)
        return None


def stoi_score(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    try:
        from pystoi import stoi
    except Exception:  # noqa: BLE001 - an optional metric: missing or broken, it is left out
        return None
    ref, deg = align(reference, degraded)
    try:
        value = float(stoi(ref.astype(np.float64), deg.astype(np.float64), sample_rate, extended=False))
    except Exception:  # noqa: BLE001 - the metric refuses the signal
        return None
    return value if math.isfinite(value) else None


def is_speech(labels, human_labels) -> bool:
    """A row counts as speech when one of its labels is an AudioSet speech class or says so."""
    if any(label in SPEECH_MIDS for label in labels or ()):
        return True
    return any(word in (name or "").lower() for name in (human_labels or ()) for word in SPEECH_WORDS)


def reconstruction_metrics(reference: np.ndarray, degraded: np.ndarray, *, speech: bool) -> dict:
    """All metrics of one pair; PESQ/STOI stay None unless the row is speech and the package is there."""
    ref, deg = align(reference, degraded)
    out = {
        "log_mel_distance": log_mel_distance(ref, deg),
        "mrstft_distance": mrstft_distance(ref, deg),
        "pesq": None,
        "stoi": None,
        "compared_s": len(ref) / SAMPLE_RATE,
    }
    if speech:
        out["pesq"] = pesq_score(ref, deg)
        out["stoi"] = stoi_score(ref, deg)
    return out

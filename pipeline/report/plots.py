"""PNG figures of the report (matplotlib, Agg backend: no display needed).

Text from data (a picked row's id in a title) is drawn as it is: mathtext and TeX are off for every
figure, so `a $x^$ b.wav` is a file name, not a formula matplotlib fails to parse."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ

STREAM_COLOURS = {"semantic": "#3b6ea5", "acoustic": "#c0603a"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["text.parse_math"] = False
    matplotlib.rcParams["text.usetex"] = False
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return str(path)


def spectrogram_pair(original: np.ndarray | None, decoded: np.ndarray | None, path: Path, title: str,
                     hop_s: float = 256 / SAMPLE_RATE_HZ) -> str:
    """Log-mel spectrograms [mels, frames] side by side on one colour scale."""
    plt = _pyplot()
    panels = [("original", original), ("decoded", decoded)]
    present = [p for _, p in panels if p is not None]
    low = min(float(p.min()) for p in present) if present else 0.0
    high = max(float(p.max()) for p in present) if present else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
    image = None
    for ax, (name, spec) in zip(axes, panels, strict=True):
        if spec is None:
            ax.text(0.5, 0.5, f"{name} unavailable", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
        else:
            image = ax.imshow(spec, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma",
                              extent=(0, spec.shape[1] * hop_s, 0, spec.shape[0]))
            ax.set_xlabel("seconds")
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel("mel bin")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="log mel", pad=0.01)
    fig.text(0.01, 0.01, title, fontsize=7, color="#666", parse_math=False, usetex=False)
    return _save(fig, path)


def token_histograms(counts: dict[str, np.ndarray], vocab: dict[str, int], path: Path, bins: int = 256) -> str:
    """Per stream: how often each id range is used (linear ids), and rank-frequency (log-log)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(counts), 2, figsize=(11, 3.0 * len(counts)), squeeze=False)
    for (stream, values), (left, right) in zip(counts.items(), axes, strict=True):
        size = vocab[stream]
        top = max(size, int(np.nonzero(values)[0].max()) + 1 if values.any() else size)
        used = values[:top].astype(np.float64)
        width = max(1, math.ceil(top / bins))
        padded = np.pad(used, (0, (-len(used)) % width)).reshape(-1, width).sum(axis=1)
        left.bar(np.arange(len(padded)) * width, padded, width=width, align="edge",
                 color=STREAM_COLOURS.get(stream, "grey"))
        left.axvline(size, color="red", linestyle="--", linewidth=1, label=f"vocab {size}")
        left.set_title(f"{stream}: token id histogram ({width} ids per bar)", fontsize=10)
        left.set_xlabel("token id")
        left.set_ylabel("count")
        left.legend(fontsize=8)
        ranked = np.sort(values[values > 0])[::-1]
        if ranked.size:
            right.loglog(np.arange(1, ranked.size + 1), ranked / ranked.sum(), color=STREAM_COLOURS.get(stream, "grey"))
        right.set_title(f"{stream}: rank-frequency ({ranked.size} of {size} ids used)", fontsize=10)
        right.set_xlabel("rank")
        right.set_ylabel("frequency")
    fig.tight_layout()
    return _save(fig, path)


def utilisation(streams: dict[str, dict], path: Path) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(streams)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [streams[n]["utilisation"] for n in names], 0.4, label="codebook utilisation")
    ax.bar(x + 0.2, [streams[n]["normalised_entropy"] for n in names], 0.4, label="entropy / log2(vocab)")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("codebook utilisation and normalised entropy", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def tokens_per_second(edges: list[float], counts: list[int], expected: float, path: Path) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    edges_a = np.asarray(edges)
    ax.bar(edges_a[:-1], counts, width=np.diff(edges_a), align="edge", color="#6a8f4e")
    ax.axvline(expected, color="red", linestyle="--", label=f"expected {expected:g}/s")
    ax.set_xlabel("token pairs per second (per row; last bin includes everything above)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    ax.set_title("token pairs per second of audio", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def metric_distributions(values: dict[str, list[float]], path: Path) -> str | None:
    """One histogram per metric that has at least one finite value."""
    present = {k: [v for v in vs if v is not None and math.isfinite(v)] for k, vs in values.items()}
    present = {k: vs for k, vs in present.items() if vs}
    if not present:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present), 3), squeeze=False)
    for ax, (name, vs) in zip(axes[0], present.items(), strict=True):
        ax.hist(vs, bins=min(20, max(3, len(vs))), color="#7a5aa6")
        ax.set_title(f"{name} (n={len(vs)})", fontsize=10)
        ax.set_xlabel(name)
    fig.tight_layout()
    return _save(fig, path)

"""Everything the report folder holds, written from evaluated data: each pick's WAV pair and
spectrogram pair, the summary figures, report.json (schemas/qa_report.v1.json) and index.html."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ
from ..redaction import redact, redact_all
from . import metrics as M
from . import plots
from .evaluate import METRIC_NAMES, PickEvaluation
from .html import write_html
from .token_stats import STREAMS, TokenStats

log = logging.getLogger(__name__)


def write_wav(path: Path, wave: np.ndarray) -> None:
    """16-bit PCM at 16 kHz; samples beyond [-1, 1] are clipped (evaluate notes it)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(wave, -1.0, 1.0), SAMPLE_RATE_HZ, subtype="PCM_16")


def write_pick_media(pick: PickEvaluation, report_dir: Path) -> None:
    """The files the pick's entry names (audio/NNN_*.wav, img/NNN_logmel.png). One pick's file
    that cannot be made is left out of its entry with a note (one bad pick never loses the
    report); an I/O error (a full disk, a read-only folder) stops the report."""
    entry = pick.entry
    for key, wave in (("original", pick.original), ("decoded", pick.decoded)):
        if entry["audio"][key]:
            path = report_dir / entry["audio"][key]
            _or_note(entry, ("audio", key), lambda path=path, wave=wave: write_wav(path, wave))
    if entry["spectrogram"]:
        title = redact(f"{entry['id']} (chunk {entry['chunk_index']})")
        _or_note(entry, ("spectrogram",), lambda: plots.spectrogram_pair(
            M.log_mel(pick.original) if pick.original is not None else None,
            M.log_mel(pick.decoded) if pick.decoded is not None else None,
            report_dir / entry["spectrogram"], title))


def _or_note(entry: dict, where: tuple[str, ...], make) -> None:
    """`make()`, or (it failed on this pick's data) the entry's file at `where` set to None and a note."""
    try:
        make()
    except (OSError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - this pick's data: the report goes on without the file
        holder = entry
        for key in where[:-1]:
            holder = holder[key]
        what = " ".join(reversed(where)) if where[0] == "audio" else "spectrogram"
        entry["notes"].append(f"{what} not written: {type(error).__name__}: {error}")
        log.warning("sample %s: %s", entry["index"], entry["notes"][-1])
        holder[where[-1]] = None


def write_figures(stats: TokenStats, stats_dict: dict, picks: list[dict], frame_rate: float,
                  report_dir: Path) -> dict:
    """The summary figures; {name: path relative to the report folder, or None when not drawn}."""
    per_row = stats_dict["tokens_per_second"]["per_row_histogram"]
    figures = {
        "token_histograms": plots.token_histograms(
            stats.counts, {s: stats.vocab(s) for s in STREAMS}, report_dir / "img" / "token_histograms.png"),
        "utilisation": plots.utilisation(stats_dict["streams"], report_dir / "img" / "utilisation.png"),
        "tokens_per_second": plots.tokens_per_second(
            per_row["edges"], per_row["counts"], frame_rate, report_dir / "img" / "tokens_per_second.png"),
        "metric_distributions": plots.metric_distributions(
            {name: [s["metrics"][name] for s in picks if s["metrics"]] for name in METRIC_NAMES},
            report_dir / "img" / "metric_distributions.png"),
    }
    return {k: (str(Path(v).relative_to(report_dir)) if v else None) for k, v in figures.items()}


def json_safe(value):
    """NaN/inf become None, numpy scalars Python numbers, tuples lists, keys strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(report: dict, report_dir: Path) -> dict:
    """report.json and index.html; returns the JSON-safe report that was written, its credentials
    redacted (uris, ids, reasons: `pipeline.redaction`)."""
    report = json_safe(redact_all(report))
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_html(report, report_dir)
    return report

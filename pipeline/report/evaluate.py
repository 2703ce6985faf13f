"""Evaluation of a spot check, without I/O: each picked row's entry of report.json (status,
notes, reconstruction metrics, the names of its media files) from its decode result and its
original audio, and the aggregate over the picks."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ
from . import metrics as M
from .decode import DecodeResult, not_decoded
from .plan import PlannedRow

METRIC_NAMES = ("log_mel_distance", "mrstft_distance", "pesq", "stoi")
DURATION_TOLERANCE_S = 0.05


@dataclass(slots=True)
class PickEvaluation:
    """The pick's report entry and the two waveforms its media are made of (None when absent)."""

    entry: dict
    original: np.ndarray | None
    decoded: np.ndarray | None


def evaluate_pick(planned: PlannedRow, result: DecodeResult | None, fetched: tuple, *,
                  unknown_uris: dict[str, str], codec_error: str | None = None) -> PickEvaluation:
    """`result`: the decode of the row (None when it was not decoded: an empty row, no codec);
    `fetched`: `fetch_original`'s (wave, reason, file seconds)."""
    row, k = planned.row, planned.request.index
    limit = len(planned.request.tokens)
    want_s = planned.seconds
    speech = M.is_speech(row.get("labels"), row.get("human_labels"))
    entry = {
        "index": k, "id": row["id"], "chunk_index": row["chunk_index"], "num_chunks": row["num_chunks"],
        "shard": row["shard"], "row": row["row"], "uri": row["uri"], "labels": row.get("labels") or [],
        "human_labels": row.get("human_labels") or [], "speech": speech, "duration_s": float(row["duration_s"]),
        "chunk_start_s": float(row["chunk_start_s"]), "source_start_s": row.get("source_start_s"),
        "source_end_s": row.get("source_end_s"), "num_frames": int(row["num_frames"]),
        "decoded_frames": limit, "decoded_s": want_s, "seed": planned.request.seed, "status": "ok", "error": None,
        "original": {"available": False, "reason": None}, "audio": {"original": None, "decoded": None},
        "spectrogram": None, "metrics": None, "decode_s": None, "notes": [],
    }
    notes = entry["notes"]
    if row["uri"] in unknown_uris:
        notes.append(f"unknown uri ({unknown_uris[row['uri']]})")
    lengths = (len(row["semantic"]), len(row["acoustic"]))
    if lengths[0] != lengths[1] or lengths[0] != entry["num_frames"]:
        notes.append(f"length mismatch: {lengths[0]} semantic, {lengths[1]} acoustic, "
                     f"num_frames {entry['num_frames']}; decoding the first {planned.usable} pairs")
    if planned.truncated:
        notes.append(f"decoded the first {limit} of {planned.usable} pairs ({want_s:.2f} s, --max-decode-s)")

    original, reason, file_s = fetched
    entry["original"] = {"available": original is not None, "reason": reason}
    span_known = row.get("source_start_s") is not None  # the original is the row's own span
    if original is not None and not span_known and row["num_chunks"] == 1 and file_s is not None \
            and abs(file_s - entry["duration_s"]) > DURATION_TOLERANCE_S:
        notes.append(f"the file is {file_s:.2f} s but the row encodes {entry['duration_s']:.2f} s "
                     "(a start/end offset in the source?); compared from the file's start")

    decoded = None
    if planned.usable == 0:
        entry["status"], entry["error"] = "no_tokens", "the row has no tokens"
    else:
        if result is None:
            result = not_decoded(codec_error or "the decode function returned no result for this row")
        entry["decode_s"] = result.seconds if result.status != "not_decoded" else None
        if result.status != "ok":
            entry["status"], entry["error"] = result.status, result.error
        else:
            decoded = np.asarray(result.waveform, np.float32)[: max(1, round(want_s * SAMPLE_RATE_HZ))]
            if not np.isfinite(decoded).all():
                entry["status"], entry["error"] = "decode_failed", "decoded audio has NaN/inf samples"
                decoded = None

    if original is not None:
        entry["audio"]["original"] = f"audio/{k:03d}_original.wav"
    if decoded is not None:
        entry["audio"]["decoded"] = f"audio/{k:03d}_decoded.wav"
        if np.abs(decoded).max(initial=0.0) > 1.0:
            notes.append("decoded audio exceeds [-1, 1]; clipped in the WAV file")
        if original is not None:
            entry["metrics"] = M.reconstruction_metrics(original, decoded, speech=speech)
        else:
            entry["status"] = "original_unavailable"
    if original is not None or decoded is not None:
        entry["spectrogram"] = f"img/{k:03d}_logmel.png"
    return PickEvaluation(entry, original, decoded)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _summary(values) -> dict:
    values = [v for v in values if _finite(v)]
    if not values:
        return {"count": 0, "mean": None, "median": None, "min": None, "max": None}
    return {"count": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values)}


def aggregate(picks: list[dict]) -> dict:
    """Counts by status, metric summaries overall and per primary label, decode time."""
    with_metrics = [s for s in picks if s["metrics"]]
    by_label: dict[str, list[dict]] = {}
    for pick in with_metrics:
        label = (pick["human_labels"] or pick["labels"] or ["(unlabelled)"])[0]
        by_label.setdefault(label, []).append(pick)
    statuses: dict[str, int] = {}
    for pick in picks:
        statuses[pick["status"]] = statuses.get(pick["status"], 0) + 1
    return {
        "samples": len(picks),  # report.json's key (schemas/qa_report.v1.json)
        "decoded": sum(1 for s in picks if s["audio"]["decoded"]),
        "with_metrics": len(with_metrics),
        "original_unavailable": sum(1 for s in picks if not s["original"]["available"]),
        "by_status": statuses,
        "metrics": {name: _summary([s["metrics"][name] for s in with_metrics]) for name in METRIC_NAMES},
        "by_label": {label: {"count": len(group),
                             "log_mel_distance_mean": statistics.fmean(s["metrics"]["log_mel_distance"] for s in group),
                             "mrstft_distance_mean": statistics.fmean(s["metrics"]["mrstft_distance"] for s in group)}
                     for label, group in sorted(by_label.items())},
        "decode_seconds_total": sum(s["decode_s"] or 0.0 for s in picks),
    }

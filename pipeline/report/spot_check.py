"""The decode-sampling QA stage: `run_spot_check` reads a token output folder, decodes a seeded
sample of rows back to audio, compares them with the original audio, computes whole-corpus token
statistics and writes `index.html`, `report.json`, WAV files and PNG figures into a report folder.

Decoding runs in this process (CPU or one GPU): a spot check decodes tens of rows, so Ray actors
would add start-up cost and nothing else. Bad rows never stop the run: a row whose tokens are out
of range is reported with the codec's error, a uri that cannot be read is reported as "original
unavailable" (uris with a `#` suffix from tar or Parquet sources cannot be fetched directly), and
the report is written in every case.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import REPORT_SCHEMA, REPORT_SCHEMA_VERSION
from . import metrics as M
from . import plots
from .sampling import index_rows, pick_samples, read_picked_rows
from .token_stats import STREAMS, check_uris, classify_uri, failure_stats, read_provenance, scan_tokens, shard_name

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DEFAULT_MAX_DECODE_S = 20.48  # two 10.24 s decoder windows per sampled row
CODEC_KEYS = ("codec", "variant", "token_rate", "semantic_vocab_size", "acoustic_vocab_size", "checkpoint",
              "synthetic_weights", "device", "dtype", "pipeline_version")
ACOUSTIC_VOCAB_SIZE = 8192


# --- codec settings -------------------------------------------------------------------------

def codec_settings(provenances: list[dict], manifest: dict | None, checkpoint: str | None) -> dict:
    """Token rate, vocab sizes and checkpoint from shard metadata (first shard), else manifest.json."""
    source, settings = None, {}
    for provenance in provenances:
        if provenance.get("token_rate"):
            source, settings = "parquet metadata (pipeline.provenance)", provenance
            break
    if not settings and manifest and (manifest.get("codec") or {}).get("token_rate"):
        source, settings = "manifest.json codec", manifest["codec"]
    out = {k: settings.get(k) for k in CODEC_KEYS if settings.get(k) is not None}
    out["settings_source"] = source or "none found: assumed"
    out.setdefault("token_rate", 100)
    out.setdefault("semantic_vocab_size", 32768)
    out.setdefault("acoustic_vocab_size", ACOUSTIC_VOCAB_SIZE)
    out["synthetic_weights"] = bool(settings.get("synthetic_weights", False))
    out["frame_rate"] = out["token_rate"] / 2
    out["recorded_checkpoint"] = settings.get("checkpoint")
    out["checkpoint"] = checkpoint or settings.get("checkpoint")
    out["checkpoint_overridden"] = checkpoint is not None
    return out


def _resolve_checkpoint(value: str, token_rate: int) -> str:
    if value == "synthetic:golden":
        from ..codecs.semanticodec.synthetic import ensure_golden_checkpoint

        return str(ensure_golden_checkpoint(token_rate, include_decoder=True))
    return value


def load_codec(settings: dict, device: str, storage_options: dict | None):
    """(codec with its decoder loaded, None) or (None, error text)."""
    from ..codecs.semanticodec import SemantiCodec

    if not settings.get("checkpoint"):
        return None, "no checkpoint recorded in the corpus and none given (--checkpoint)"
    try:
        checkpoint = _resolve_checkpoint(settings["checkpoint"], settings["token_rate"])
        codec = SemantiCodec.from_pretrained(
            checkpoint, token_rate=int(settings["token_rate"]), semantic_vocab_size=int(settings["semantic_vocab_size"]),
            device=device, storage_options=storage_options,
        )
        codec.load_decoder()
        return codec, None
    except Exception as error:  # missing decoder.ckpt, wrong variant, unreachable hub ...
        return None, f"{type(error).__name__}: {error}"


# --- original audio -------------------------------------------------------------------------

def fetch_original(uri: str, start_s: float, seconds: float, storage_options: dict | None):
    """(mono 16 kHz float32 of [start_s, start_s + seconds) of the file, None, file seconds) or
    (None, reason it is unavailable, None)."""
    import soundfile as sf
    import torch

    from ..audio import to_mono_16k
    from ..fsutil import url_to_fs

    kind = classify_uri(uri)
    if kind == "archive_member":
        return None, "original unavailable: archive member uri (tar/Parquet source) cannot be fetched directly", None
    if kind is not None:
        return None, f"original unavailable: unknown uri ({kind})", None
    try:
        fs, path = url_to_fs(uri, storage_options)
        with fs.open(path, "rb") as handle, sf.SoundFile(handle) as audio:
            rate = audio.samplerate
            file_s = audio.frames / rate
            first = int(round(start_s * rate))
            if first:
                audio.seek(first)
            data = audio.read(int(round(seconds * rate)), dtype="float32", always_2d=True)[:, 0]
    except FileNotFoundError:
        return None, "original unavailable: unknown uri (not found)", None
    except Exception as error:
        return None, f"original unavailable: {type(error).__name__}: {error}", None
    if data.size == 0:
        return None, "original unavailable: no samples at the row's position", file_s
    mono = to_mono_16k(torch.from_numpy(np.ascontiguousarray(data))[None], int(rate)).numpy()
    return mono.astype(np.float32), None, file_s


# --- one sample -----------------------------------------------------------------------------

def _write_wav(path: Path, wave: np.ndarray) -> tuple[str, bool]:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = bool(np.abs(wave).max(initial=0.0) > 1.0)
    sf.write(path, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return path.name, clipped


def decode_request(row: dict, frame_rate: float, max_decode_s: float | None) -> tuple[np.ndarray, int, int]:
    """(tokens [limit, 2] to decode, pairs in the row usable as pairs, limit): a row decodes its
    first `max_decode_s` seconds at most."""
    semantic = np.asarray(row["semantic"], np.int64)
    acoustic = np.asarray(row["acoustic"], np.int64)
    usable = min(len(semantic), len(acoustic))
    limit = usable if not max_decode_s else min(usable, max(1, int(round(max_decode_s * frame_rate))))
    return np.stack([semantic[:limit], acoustic[:limit]], axis=1), usable, limit


def decode_one(codec, tokens: np.ndarray, *, ddim_steps: int, cfg_scale: float, seed: int):
    """(waveform or None, status, error, seconds): one row through the codec, errors classified."""
    started = time.perf_counter()
    try:
        wave = codec.decode([tokens], ddim_steps=ddim_steps, cfg_scale=cfg_scale, seed=seed)[0]
        return wave, "ok", None, time.perf_counter() - started
    except ValueError as error:  # ids out of the vocabulary, malformed rows
        return None, "bad_tokens", str(error), time.perf_counter() - started
    except Exception as error:
        return None, "decode_failed", f"{type(error).__name__}: {error}", time.perf_counter() - started


def process_sample(k: int, row: dict, codec, codec_error: str | None, settings: dict, report_dir: Path, *,
                   ddim_steps: int, cfg_scale: float, seed: int, max_decode_s: float | None,
                   storage_options: dict | None, unknown_uris: dict, decoded_result=None) -> dict:
    """One sampled row: fetch the original, decode (or take `decoded_result` from the Ray pool),
    compare, write WAVs and the spectrogram pair."""
    frame_rate = settings["frame_rate"]
    semantic = np.asarray(row["semantic"], np.int64)
    acoustic = np.asarray(row["acoustic"], np.int64)
    tokens, usable, limit = decode_request(row, frame_rate, max_decode_s)
    truncated = limit < usable
    want_s = float(row["duration_s"]) if not truncated else limit / frame_rate
    speech = M.is_speech(row.get("labels"), row.get("human_labels"))
    entry = {
        "index": k, "id": row["id"], "chunk_index": row["chunk_index"], "num_chunks": row["num_chunks"],
        "shard": row["shard"], "row": row["row"], "uri": row["uri"], "labels": row.get("labels") or [],
        "human_labels": row.get("human_labels") or [], "speech": speech, "duration_s": float(row["duration_s"]),
        "chunk_start_s": float(row["chunk_start_s"]), "num_frames": int(row["num_frames"]),
        "decoded_frames": limit, "decoded_s": want_s, "seed": seed, "status": "ok", "error": None,
        "original": {"available": False, "reason": None}, "audio": {"original": None, "decoded": None},
        "spectrogram": None, "metrics": None, "decode_s": None, "notes": [],
    }
    if row["uri"] in unknown_uris:
        entry["notes"].append(f"unknown uri ({unknown_uris[row['uri']]})")
    if len(semantic) != len(acoustic) or len(semantic) != entry["num_frames"]:
        entry["notes"].append(f"length mismatch: {len(semantic)} semantic, {len(acoustic)} acoustic, "
                              f"num_frames {entry['num_frames']}; decoding the first {usable} pairs")
    if truncated:
        entry["notes"].append(f"decoded the first {limit} of {usable} pairs ({want_s:.2f} s, --max-decode-s)")
    original, reason, file_s = fetch_original(row["uri"], entry["chunk_start_s"], want_s, storage_options)
    entry["original"] = {"available": original is not None, "reason": reason}
    if original is not None:
        entry["audio"]["original"], clipped = _write_wav(report_dir / "audio" / f"{k:03d}_original.wav", original)
        if row["num_chunks"] == 1 and file_s is not None and abs(file_s - entry["duration_s"]) > 0.05:
            entry["notes"].append(f"the file is {file_s:.2f} s but the row encodes {entry['duration_s']:.2f} s "
                                  "(a start/end offset in the source?); compared from the file's start")
    decoded = None
    if usable == 0:
        entry["status"], entry["error"] = "no_tokens", "the row has no tokens"
    elif decoded_result is not None:
        decoded, status, error, entry["decode_s"] = decoded_result
        if status != "ok":
            entry["status"], entry["error"] = status, error
    elif codec is None:
        entry["status"], entry["error"] = "not_decoded", f"codec unavailable: {codec_error}"
    else:
        decoded, status, error, entry["decode_s"] = decode_one(codec, tokens, ddim_steps=ddim_steps,
                                                               cfg_scale=cfg_scale, seed=seed)
        if status != "ok":
            entry["status"], entry["error"] = status, error
    if decoded is not None:
        decoded = np.asarray(decoded, np.float32)[: max(1, int(round(want_s * SAMPLE_RATE)))]
        if not np.isfinite(decoded).all():
            entry["status"], entry["error"] = "decode_failed", "decoded audio has NaN/inf samples"
            decoded = None
    if decoded is not None:
        entry["audio"]["decoded"], clipped = _write_wav(report_dir / "audio" / f"{k:03d}_decoded.wav", decoded)
        if clipped:
            entry["notes"].append("decoded audio exceeds [-1, 1]; clipped in the WAV file")
        if original is not None:
            entry["metrics"] = M.reconstruction_metrics(original, decoded, speech=speech)
        else:
            entry["status"] = "original_unavailable"
    if original is not None or decoded is not None:
        title = f"{entry['id']} (chunk {entry['chunk_index']})"
        plots.spectrogram_pair(M.log_mel(original) if original is not None else None,
                               M.log_mel(decoded) if decoded is not None else None,
                               report_dir / "img" / f"{k:03d}_logmel.png", title)
        entry["spectrogram"] = f"img/{k:03d}_logmel.png"
    if entry["audio"]["original"]:
        entry["audio"]["original"] = f"audio/{entry['audio']['original']}"
    if entry["audio"]["decoded"]:
        entry["audio"]["decoded"] = f"audio/{entry['audio']['decoded']}"
    return entry


# --- aggregation and flags ------------------------------------------------------------------

METRIC_NAMES = ("log_mel_distance", "mrstft_distance", "pesq", "stoi")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def aggregate(samples: list[dict]) -> dict:
    def summary(values):
        values = [v for v in values if _finite(v)]
        if not values:
            return {"count": 0, "mean": None, "median": None, "min": None, "max": None}
        return {"count": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
                "min": min(values), "max": max(values)}

    with_metrics = [s for s in samples if s["metrics"]]
    by_label: dict[str, list[dict]] = {}
    for sample in with_metrics:
        label = (sample["human_labels"] or sample["labels"] or ["(unlabelled)"])[0]
        by_label.setdefault(label, []).append(sample)
    statuses: dict[str, int] = {}
    for sample in samples:
        statuses[sample["status"]] = statuses.get(sample["status"], 0) + 1
    return {
        "samples": len(samples),
        "decoded": sum(1 for s in samples if s["audio"]["decoded"]),
        "with_metrics": len(with_metrics),
        "original_unavailable": sum(1 for s in samples if not s["original"]["available"]),
        "by_status": statuses,
        "metrics": {name: summary([s["metrics"][name] for s in with_metrics]) for name in METRIC_NAMES},
        "by_label": {label: {"count": len(group),
                             "log_mel_distance_mean": statistics.fmean(s["metrics"]["log_mel_distance"] for s in group),
                             "mrstft_distance_mean": statistics.fmean(s["metrics"]["mrstft_distance"] for s in group)}
                     for label, group in sorted(by_label.items())},
        "decode_seconds_total": sum(s["decode_s"] or 0.0 for s in samples),
    }


def build_flags(settings, stats: dict, uris: dict, failures: dict, samples: list[dict], *, shards: int,
                mixed: list, codec_error: str | None, unreadable: list) -> list[dict]:
    flags = []

    def add(kind, severity, count, message):
        flags.append({"kind": kind, "severity": severity, "count": int(count), "message": message})

    if shards == 0:
        add("no_token_shards", "error", 1, "no committed token shards under tokens/")
    if settings["synthetic_weights"]:
        add("synthetic_weights", "warning", 1, "the tokens were made with SYNTHETIC (random) weights: they and "
            "the decoded audio mean nothing")
    if settings["settings_source"].startswith("none"):
        add("unknown_codec", "error", 1, "no codec provenance in the shards nor in manifest.json; assumed "
            f"token rate {settings['token_rate']}, semantic vocabulary {settings['semantic_vocab_size']}")
    if mixed:
        add("mixed_provenance", "error", len(mixed), f"{len(mixed)} shard(s) were made with another codec or "
            "checkpoint than the first one: " + ", ".join(m["shard"] for m in mixed[:5]))
    if unreadable:
        add("unreadable_shards", "error", len(unreadable), "unreadable shard(s): " +
            "; ".join(f"{u['shard']}: {u['error']}" for u in unreadable[:3]))
    if codec_error:
        add("codec_unavailable", "error", 1, f"could not load the decoder, nothing was decoded: {codec_error}")
    degenerate = stats["degenerate_rows"]
    if degenerate["count"]:
        add("degenerate_rows", "warning", degenerate["count"], f"{degenerate['count']} row(s) repeat one token id over "
            "the whole row: " + ", ".join(f"{r['id']}#{r['chunk_index']} ({'/'.join(r['streams'])})"
                                          for r in degenerate["rows"][:5]))
    mismatches = stats["length_mismatches"]
    if mismatches["count"]:
        add("length_mismatch", "error", mismatches["count"], f"{mismatches['count']} row(s) with inconsistent "
            "lengths: " + "; ".join(f"{r['id']}#{r['chunk_index']}: {r['reasons'][0]}" for r in mismatches["rows"][:5]))
    oov = stats["out_of_vocab_rows"]
    if oov["count"]:
        add("out_of_vocab", "error", oov["count"], f"{oov['count']} row(s) hold token ids outside the vocabulary "
            f"({oov['tokens']['semantic']} semantic, {oov['tokens']['acoustic']} acoustic tokens): " +
            ", ".join(f"{r['id']}#{r['chunk_index']} max {r['max_ids']}" for r in oov["rows"][:5]))
    if uris["count"]:
        add("unknown_uri", "error", uris["count"], f"{uris['count']} row(s) point at audio that does not exist or "
            "cannot be addressed: " + ", ".join(f"{r['id']} ({r['status']}: {r['uri']})" for r in uris["rows"][:5]))
    if uris["unchecked_rows"]:
        add("uris_unchecked", "info", uris["unchecked_rows"], f"{uris['unchecked_rows']} row(s) whose uri was not "
            "checked (listing limit or error)")
    if failures["count"]:
        add("failures", "warning", failures["count"], f"{failures['count']} input(s) failed to tokenize: " +
            ", ".join(f"{k} {v}" for k, v in failures["by_type"].items()))
    bad = [s for s in samples if s["status"] in ("bad_tokens", "decode_failed", "no_tokens")]
    if bad:
        add("decode_errors", "error", len(bad), f"{len(bad)} sampled row(s) could not be decoded: " +
            "; ".join(f"{s['id']}: {s['error']}" for s in bad[:5]))
    unavailable = [s for s in samples if not s["original"]["available"]]
    if unavailable:
        add("original_unavailable", "info", len(unavailable), f"{len(unavailable)} sampled row(s) have no original "
            "audio to compare with: " + "; ".join(f"{s['id']}: {s['original']['reason']}" for s in unavailable[:5]))
    rate = stats["tokens_per_second"]["ratio_to_trim_aware_expected"]
    if rate is not None and abs(rate - 1) > 0.02:
        add("tokens_per_second", "warning", 1, f"the corpus holds {rate:.3f}x the token pairs its durations give "
            f"at {settings['frame_rate']:g} pairs/s (official trim included)")
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(flags, key=lambda flag: order[flag["severity"]])


def _clean(value):
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the stage --------------------------------------------------------------------------------

def run_spot_check(tokens_url: str, report_dir, samples: int, checkpoint: str | None = None, ddim_steps: int = 50,
                   seed: int = 0, storage_options: dict | None = None, device: str = "cpu", *,
                   cfg_scale: float = 2.0, max_decode_s: float | None = DEFAULT_MAX_DECODE_S,
                   max_listed: int = 200, use_ray: bool = False) -> dict:
    """Run the whole QA stage; returns the report dict (also written as report.json).

    `use_ray`: decode the sampled rows on Ray actors (one per GPU, or one CPU actor when the
    cluster has none) instead of in this process; needs a running Ray (ray.init)."""
    from ..output import FAILURES_DIR, TOKENS_DIR, OutputFolder
    from .html import write_html

    started = time.perf_counter()
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    output = OutputFolder(tokens_url, storage_options)
    fs, _ = output.filesystem()
    shards = output.committed_files(TOKENS_DIR)
    failure_shards = output.committed_files(FAILURES_DIR)
    manifest = output.read_manifest()

    provenances, unreadable, mixed, reference = [], [], [], None
    for path in shards:
        provenance, error = read_provenance(fs, path)
        if error:
            unreadable.append({"shard": shard_name(path), "error": error})
            continue
        provenances.append(provenance)
        identity = {k: provenance.get(k) for k in ("variant", "token_rate", "semantic_vocab_size")}
        identity["files"] = {n: f.get("sha256") for n, f in (provenance.get("files") or {}).items() if n != "decoder"}
        if reference is None:
            reference = identity
        elif identity != reference:
            mixed.append({"shard": shard_name(path), "identity": identity})
    settings = codec_settings(provenances, manifest, checkpoint)

    scan_started = time.perf_counter()
    stats = scan_tokens(fs, shards, semantic_vocab_size=int(settings["semantic_vocab_size"]),
                        acoustic_vocab_size=int(settings["acoustic_vocab_size"]),
                        token_rate=int(settings["token_rate"]), max_listed=max_listed)
    uris = check_uris(stats.uris, storage_options, max_listed=max_listed)
    failures = failure_stats(fs, failure_shards)
    scan_s = time.perf_counter() - scan_started
    unreadable += [u for u in stats.unreadable_shards if u["shard"] not in {x["shard"] for x in unreadable}]

    picks = pick_samples(index_rows(fs, shards), samples, seed)
    rows = read_picked_rows(fs, picks)
    predecoded: dict = {}
    if use_ray and rows:
        from ..stages.qa_decode import decode_with_ray

        requests = [(k, decode_request(row, settings["frame_rate"], max_decode_s)[0], seed + k)
                    for k, row in enumerate(rows)]
        predecoded, codec_error = decode_with_ray(requests, settings, storage_options, ddim_steps, cfg_scale)
        codec = None
    else:
        codec, codec_error = (load_codec(settings, device, storage_options) if rows else (None, None))
        if codec is not None and codec.is_synthetic:
            settings["synthetic_weights"] = True
    unknown = {r["uri"]: r["status"] for r in uris["rows"]}
    sample_entries = []
    for k, row in enumerate(rows):
        log.info("sample %d/%d: %s (chunk %s)", k + 1, len(rows), row["id"], row["chunk_index"])
        sample_entries.append(process_sample(
            k, row, codec, codec_error, settings, report_dir, ddim_steps=ddim_steps, cfg_scale=cfg_scale,
            seed=seed + k, max_decode_s=max_decode_s, storage_options=storage_options, unknown_uris=unknown,
            decoded_result=predecoded.get(k)))

    stats_dict = stats.to_dict()
    figures = {
        "token_histograms": plots.token_histograms(
            stats.counts, {s: stats.vocab(s) for s in STREAMS}, report_dir / "img" / "token_histograms.png"),
        "utilisation": plots.utilisation(stats_dict["streams"], report_dir / "img" / "utilisation.png"),
        "tokens_per_second": plots.tokens_per_second(
            stats_dict["tokens_per_second"]["per_row_histogram"]["edges"],
            stats_dict["tokens_per_second"]["per_row_histogram"]["counts"], settings["frame_rate"],
            report_dir / "img" / "tokens_per_second.png"),
        "metric_distributions": plots.metric_distributions(
            {name: [s["metrics"][name] for s in sample_entries if s["metrics"]] for name in METRIC_NAMES},
            report_dir / "img" / "metric_distributions.png"),
    }
    figures = {k: (str(Path(v).relative_to(report_dir)) if v else None) for k, v in figures.items()}
    optional = M.optional_metric_packages()
    flags = build_flags(settings, stats_dict, uris, failures, sample_entries, shards=len(shards), mixed=mixed,
                        codec_error=codec_error, unreadable=unreadable)
    report = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tokens_url": tokens_url,
        "codec": settings,
        "decode": {"ddim_steps": ddim_steps, "cfg_scale": cfg_scale, "seed": seed, "device": device,
                   "max_decode_s": max_decode_s, "samples_requested": samples, "samples_picked": len(rows),
                   "per_sample_seed": "seed + sample index", "in_process": not use_ray},
        "corpus": {"token_shards": len(shards), "failure_shards": len(failure_shards),
                   "manifest": manifest is not None, "mixed_provenance": mixed, "unreadable_shards": unreadable},
        "flags": flags,
        "token_stats": stats_dict,
        "uris": uris,
        "failures": failures,
        "samples": sample_entries,
        "aggregate": aggregate(sample_entries),
        "metric_notes": {
            "log_mel_distance": "mean |ln mel(original) - ln mel(decoded)|, 80 mels, FFT 1024, hop 256 (lower is better)",
            "mrstft_distance": "multi-resolution STFT (512/1024/2048): spectral convergence + log-magnitude L1, "
                               "averaged (lower is better)",
            "pesq": "wide-band PESQ on speech rows" + ("" if optional["pesq"] else ": not computed, the optional "
                                                       "`pesq` package is not installed"),
            "stoi": "STOI on speech rows" + ("" if optional["pystoi"] else ": not computed, the optional `pystoi` "
                                             "package is not installed"),
            "visqol": M.VISQOL_NOTE,
            "optional_packages": optional,
        },
        "files": {"index_html": "index.html", "report_json": "report.json", "figures": figures},
        "timings": {"scan_s": scan_s, "decode_s": sum(s["decode_s"] or 0.0 for s in sample_entries),
                    "total_s": 0.0},
    }
    report["timings"]["total_s"] = time.perf_counter() - started
    report = _clean(report)
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_html(report, report_dir)
    return report

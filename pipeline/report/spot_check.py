"""The QA spot check: `run_spot_check` reads a token output folder, decodes seeded picks of its
rows back to audio, compares them with the original audio, computes whole-corpus token
statistics and writes `index.html`, `report.json`, WAV files and PNG figures into a report folder.

It only wires the steps, each a module with one job:
inventory (what the folder holds) → token_stats (whole corpus) → plan (pick rows) →
decode (an injected `DecodeFn`: in this process by default, or `pipeline.report.ray_decode.decode_with_ray`)
→ evaluate (entries, metrics, aggregate) → flags → render (media, figures, JSON, HTML).

Bad rows never stop the run: a row whose tokens are out of range is reported with the codec's
error, a uri that cannot be read is reported as "original unavailable", and the report is written
in every case. A folder that is not a token output folder is a `SourceError` (one line).

A corpus reaches only itself: its `uri` column and recorded checkpoint are URIs from data, used
under the URI rule (`pipeline/sources/uri_rule.py`): originals are read, and uris checked, only
under the corpus folder or an --allow-uri-prefix (the tokenize job's own QA stage allows its
source's folder); the decoder is the --checkpoint given, or the corpus's after the checks of
`inventory.decoder_checkpoint`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError, OutputError
from ..sources.uri_rule import UriRule
from . import REPORT_SCHEMA, REPORT_SCHEMA_VERSION
from . import metrics as M
from .config import SpotCheckConfig
from .decode import DecodeFn, DecodeOutcome, DecoderSpec, decode_in_process
from .evaluate import aggregate, evaluate_pick
from .flags import build_flags, report_exit_code
from .inventory import codec_settings, decoder_checkpoint, take_inventory
from .originals import fetch_original, row_span_start
from .plan import pick_rows, plan_rows
from .progress import PickProgress
from .render import write_figures, write_pick_media, write_report
from .token_stats import check_uris, classify_uri, failure_stats, scan_tokens

log = logging.getLogger(__name__)

MAX_LISTED = 200  # anomalous rows listed per kind in report.json (counts are always exact)
METRIC_NOTES = {
    "log_mel_distance": "mean |ln mel(original) - ln mel(decoded)|, 80 mels, FFT 1024, hop 256 (lower is better)",
    "mrstft_distance": "multi-resolution STFT (512/1024/2048): spectral convergence + log-magnitude L1, "
                       "averaged (lower is better)",
}

__all__ = ["SpotCheckConfig", "report_exit_code", "run_spot_check"]


def prepare_report_dir(value: str) -> Path:
    report_dir = Path(value)
    if report_dir.exists() and not report_dir.is_dir():
        raise OutputError(f"--report {value} is a file: give a folder for index.html, report.json and the media")
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the report folder {value}: {error.strerror or error}") from error
    return report_dir


def _check_uris(uris: dict[str, dict], rule: UriRule, storage_options: dict | None) -> dict:
    """`check_uris` for the uris the rule allows; the others are counted, never listed or requested."""
    inside = {uri: key for uri, key in uris.items() if rule.allows(uri) or classify_uri(uri) is not None}
    checked = check_uris(inside, storage_options, max_listed=MAX_LISTED)
    outside = sum(key["rows"] for uri, key in uris.items() if uri not in inside)
    checked["outside_rule_rows"] = outside
    checked["unchecked_rows"] += outside
    return checked


def run_spot_check(config: SpotCheckConfig, decode_fn: DecodeFn | None = None, progress: bool = True) -> dict:
    """Run the whole QA stage; returns the report dict (also written as report.json).

    `decode_fn` decodes the picked rows (default `decode_in_process`); with `config.ray` the caller
    passes `pipeline.report.ray_decode.decode_with_ray` (and has started Ray). `progress`: tqdm bars on
    stderr over the rows and over the DDIM steps of each row (none with `config.quiet`)."""
    if decode_fn is None:
        if config.ray:
            raise ConfigError("ray=True needs the Ray decode function: pass decode_fn=pipeline.report.ray_decode."
                              "decode_with_ray (jobs/spot_check.py --ray does)")
        decode_fn = decode_in_process
    started = time.perf_counter()
    storage_options = config.storage_options() or None
    rule = UriRule(config.tokens, allowed_prefixes=tuple(config.allow_uri_prefix or ()), what="the corpus folder")
    inventory = take_inventory(config.tokens, storage_options)
    report_dir = prepare_report_dir(config.report)  # after the corpus check: a mistake leaves no empty folder
    settings = codec_settings(inventory.provenances, inventory.run_record, config.checkpoint)
    checkpoint, checkpoint_refused = decoder_checkpoint(settings, (inventory.provenances or [None])[0], rule,
                                                        storage_options)
    settings["checkpoint"] = checkpoint

    scan_started = time.perf_counter()
    stats = scan_tokens(inventory.fs, inventory.shards, semantic_vocab_size=int(settings["semantic_vocab_size"]),
                        acoustic_vocab_size=int(settings["acoustic_vocab_size"]),
                        token_rate=int(settings["token_rate"]), max_listed=MAX_LISTED)
    uris = _check_uris(stats.uris, rule, storage_options)
    failures = failure_stats(inventory.fs, inventory.failure_shards)
    scan_s = time.perf_counter() - scan_started
    listed = {u["shard"] for u in inventory.unreadable}
    unreadable = inventory.unreadable + [u for u in stats.unreadable_shards if u["shard"] not in listed]

    frame_rate = settings["frame_rate"]
    planned = plan_rows(pick_rows(inventory.fs, inventory.shards, config.samples, config.seed), frame_rate,
                        config.max_decode_s or None, config.seed)
    spec = DecoderSpec(settings["checkpoint"], int(settings["token_rate"]), int(settings["semantic_vocab_size"]),
                       config.ddim_steps, config.cfg_scale, config.device, storage_options)
    requests = [p.request for p in planned if p.usable]
    outcome = DecodeOutcome({}, codec_error=checkpoint_refused, in_process=decode_fn is decode_in_process)
    if requests and not checkpoint_refused:
        log.info("decoding %d sampled rows (%d DDIM steps)", len(requests), config.ddim_steps)
        with PickProgress(len(requests), disable=not progress or config.quiet) as bar:
            outcome = decode_fn(spec, requests, bar)
    if outcome.synthetic_weights:
        settings["synthetic_weights"] = True

    unknown = {r["uri"]: r["status"] for r in uris["rows"]}
    picks = []
    for plan in planned:
        row = plan.row
        fetched = fetch_original(row["uri"], row_span_start(row), plan.seconds, storage_options, rule=rule)
        evaluation = evaluate_pick(plan, outcome.results.get(plan.request.index), fetched, unknown_uris=unknown,
                                   codec_error=outcome.codec_error)
        write_pick_media(evaluation, report_dir)
        picks.append(evaluation.entry)

    stats_dict = stats.to_dict()
    figures = write_figures(stats, stats_dict, picks, frame_rate, report_dir)
    optional = M.optional_metric_packages()
    flags = build_flags(settings, stats_dict, uris, failures, picks, mixed=inventory.mixed,
                        codec_error=outcome.codec_error, unreadable=unreadable)
    report = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tokens_url": config.tokens,
        "codec": settings,
        "decode": {"ddim_steps": config.ddim_steps, "cfg_scale": config.cfg_scale, "seed": config.seed,
                   "device": config.device, "max_decode_s": config.max_decode_s or None,
                   "samples_requested": config.samples, "samples_picked": len(planned),
                   "per_sample_seed": "seed + sample index", "in_process": outcome.in_process},
        "corpus": {"token_shards": len(inventory.shards), "failure_shards": len(inventory.failure_shards),
                   "manifest": inventory.run_record is not None,  # the key is the report's contract
                   "mixed_provenance": inventory.mixed,
                   "unreadable_shards": unreadable},
        "flags": flags,
        "token_stats": stats_dict,
        "uris": uris,
        "failures": failures,
        "samples": picks,  # the key is the report's contract
        "aggregate": aggregate(picks),
        "metric_notes": {
            **METRIC_NOTES,
            "pesq": "wide-band PESQ on speech rows" + ("" if optional["pesq"] else ": not computed, the optional "
                                                       "`pesq` package is not installed"),
            "stoi": "STOI on speech rows" + ("" if optional["pystoi"] else ": not computed, the optional `pystoi` "
                                             "package is not installed"),
            "visqol": M.VISQOL_NOTE,
            "optional_packages": optional,
        },
        "files": {"index_html": "index.html", "report_json": "report.json", "figures": figures},
        "timings": {"scan_s": scan_s, "decode_s": sum(s["decode_s"] or 0.0 for s in picks), "total_s": 0.0},
    }
    report["timings"]["total_s"] = time.perf_counter() - started
    return write_report(report, report_dir)

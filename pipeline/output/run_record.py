"""The run record (`manifest.json`, schemas/manifest.v1.json) from counts: what the output held when
the run started plus what this run's write tasks reported. No shard is read again.

`runs` keeps the entry of every run of the output, oldest first (`run` is the last one): a resumed
run adds its own to the earlier ones', and a rerun with nothing to do writes no run record at all."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from .. import __version__
from ..codecs.semanticodec.variants import ACOUSTIC_VOCAB_SIZE, SAMPLE_RATE_HZ, SEGMENT_SAMPLES, SemantiCodecVariant
from ..redaction import redact_all
from .folder import CommittedKeys
from .schema import RUN_RECORD_SCHEMA_VERSION
from .summary import ShardSummary

# Not the codec's: the writer's version and the encoder's device, which the run record has elsewhere, and
# the run settings footers carried before they were kept out of them (outputs written then still resume).
_NOT_CODEC_KEYS = ("pipeline_version", "device", "batch_size", "max_batch_windows")


def run_record_from_counts(*, config, source_kind: str, keys: CommittedKeys, run: ShardSummary, encoder: dict,
                         wall_time_s: float, resumed: bool, earlier: dict | None = None) -> dict:
    """`keys`: the output's committed keys at the end of the run (those read at the start, plus this
    run's write summaries folded in by the driver); `run`: the sum of this run's write summaries;
    `earlier`: the run record the output held before this run (its runs are kept)."""
    codec = {k: v for k, v in (keys.provenance or {}).items() if k not in _NOT_CODEC_KEYS}
    if not codec:  # nothing tokenized yet: what the run was asked for
        variant = SemantiCodecVariant(config.token_rate, config.semantic_vocab_size)
        codec = {"codec": "semanticodec", "variant": variant.name,
                 "token_rate": config.token_rate, "semantic_vocab_size": config.semantic_vocab_size,
                 "acoustic_vocab_size": ACOUSTIC_VOCAB_SIZE, "checkpoint": config.checkpoint, "files": {},
                 "synthetic_weights": config.checkpoint.startswith("synthetic:"), "dtype": config.dtype}
    passes, windows = run.encoder_passes, run.encoder_windows
    this_run_rows = run.rows
    this_run = {
        "finished_at": datetime.now(UTC).isoformat(), "pipeline_version": __version__,
        "batch_size": encoder["batch_rows"], "max_batch_windows": config.max_batch_windows,
        "num_encoders": encoder["num_encoders"], "encoder_device": encoder["device"],
        "chunk_s": config.chunk_windows * SEGMENT_SAMPLES / SAMPLE_RATE_HZ, "rows_per_file": config.rows_per_file,
        "wall_time_s": wall_time_s, "resumed": resumed, "rows_this_run": this_run_rows,
        "encoder": {
            "forward_passes": passes, "windows": windows,
            "mean_windows_per_pass": windows / passes if passes else 0.0,
            "dtype_per_component": run.dtype_per_component,
        },
        "retryable_types": dict(run.retryable_types),
        "config": {k: v for k, v in asdict(config).items()
                   if k not in ("aws_profile", "s3_endpoint_url", "s3_region", "s3_anon")},
    }
    return redact_all({  # --source, --output and the checkpoint may be URLs with credentials
        "schema": "manifest",  # the schema's name (schemas/manifest.v1.json): output contract
        "schema_version": RUN_RECORD_SCHEMA_VERSION,
        "pipeline_version": __version__,
        "created_at": datetime.now(UTC).isoformat(),
        "source": {"url": config.source, "kind": source_kind},
        "codec": codec,
        "run": this_run,
        "runs": [*earlier_runs(earlier), this_run],
        "counts": output_counts(keys),
        "totals": {
            "audio_hours": keys.audio_s / 3600, "token_pairs": keys.token_pairs, "tokens": 2 * keys.token_pairs,
            "audio_seconds_per_second": run.audio_s / wall_time_s if wall_time_s else 0.0,
            "clips_per_second": this_run_rows / wall_time_s if wall_time_s else 0.0,
        },
    })


def output_counts(keys: CommittedKeys) -> dict:
    """The run record's `counts`: the output's inputs by outcome, its rows and files."""
    return {
        **keys.outcome_counts(),
        "token_rows": keys.token_rows, "token_files": keys.token_files, "failure_files": keys.failure_files,
        "failures_by_type": dict(keys.failure_types),
    }


def earlier_runs(run_record: dict | None) -> list[dict]:
    """The runs a run record holds (one written before `runs` existed holds only its `run`)."""
    if not run_record:
        return []
    return list(run_record.get("runs") or ([run_record["run"]] if run_record.get("run") else []))

"""The settings of a tokenize run: one dataclass, the single source of defaults, help text and
choices. `pipeline/cli/common.py` generates the command line from these fields (their types, a
`Literal` giving the choices; `help`, `flag`, `metavar` in each field's metadata), so nothing is
restated by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..codecs.semanticodec.checkpoint import DEFAULT_CHECKPOINT
from ..codecs.semanticodec.variants import Dtype, SemanticVocabSize, TokenRate
from ..sources.base import DedupePolicy, MissingInputs

DEFAULT_SOURCE = "hf://datasets/agkphysics/AudioSet"
DEFAULT_CHUNK_WINDOWS = 30  # long files are cut into chunks of 30 x 10.24 s = 307.2 s
DEFAULT_MAX_DURATION_S = 6 * 3600.0
ResampleOn = Literal["decode", "encoder"]  # where audio not at 16 kHz is resampled


def option(default, help: str, **extra):
    """A config field with its command-line help (and optional `metavar`, `flag`, `required`, `nargs`,
    `const`); the choices come from the field's `Literal` type."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class S3Config:
    """S3 settings. Credentials come only from the environment or a profile, never from flags."""

    s3_endpoint_url: str | None = option(None, "S3 endpoint (default: $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL)")
    s3_region: str | None = option(None, "S3 region")
    aws_profile: str | None = option(None, "AWS profile from ~/.aws for S3 credentials")
    s3_anon: bool = option(False, "anonymous S3 access (public buckets)")

    def storage_options(self) -> dict:
        """Per-protocol fsspec options ({"s3": {...}}), empty when nothing is set."""
        from ..fsutil import s3_options_from_env

        s3 = s3_options_from_env(self.s3_endpoint_url, self.s3_region, self.aws_profile, self.s3_anon)
        return {"s3": s3} if s3 else {}


@dataclass
class TokenizeConfig(S3Config):
    output: str = option(None, "output folder: local path or any fsspec URL (s3://bucket/prefix)", required=True)
    source: str = option(DEFAULT_SOURCE, "audio to tokenize: folder/prefix/glob of audio files, manifest "
                         "(.csv/.jsonl/.parquet), HF Parquet, hf://datasets/<repo>, .tar shards or an AudioSet CSV")
    split: str | None = option(None, "HF datasets: data/<split>/ (AudioSet: bal_train, unbal_train, eval; "
                               "default bal_train for AudioSet)")
    audio_root: str | None = option(None, "AudioSet segments CSV: folder/prefix holding the audio files")
    class_labels: str | None = option(None, "AudioSet class_labels_indices.csv (MID -> display name)")
    checkpoint: str = option(DEFAULT_CHECKPOINT, "SemantiCodec weights: hf://owner/repo[@revision], a folder, an "
                             "fsspec URL, or synthetic:small / synthetic:golden (random test weights)")
    token_rate: TokenRate = option(100, "tokens per second (pairs per second x 2)")
    semantic_vocab_size: SemanticVocabSize = option(16384, "semantic codebook size")
    dtype: Dtype = option("float32", "encoder numerics: float32 (exact), bfloat16 (fast; distances stay "
                          "fp32)")
    max_batch_windows: int = option(16, "10.24 s windows per forward pass; the encode stage's batches are "
                                    "sized in windows too")
    num_gpus: int | tuple[int, int] | None = option(None, "GPU encoder actors: N, or MIN-MAX for an autoscaling "
                                                    "pool (default: every GPU present)", metavar="N|MIN-MAX")
    num_cpu_encoders: int = option(1, "encoder actors when there is no GPU")
    cpus_per_encoder: int | None = option(None, "CPUs (torch threads) per encoder actor (default: 1 on GPU; on CPU "
                                          "as many as fit on a node with one CPU of the cluster left for decoding)")
    limit: int | None = option(None, "process only the first N inputs")
    dedupe: DedupePolicy = option("refuse", "duplicate ids in the source: refuse (list them and stop; a "
                                  "copy found inside a tar shard or Parquet file becomes a failure row "
                                  "naming both places) or first (keep the first)")
    allow_uri_prefix: list[str] | None = option(None, "where paths and URLs named by the data (manifest rows, "
                                                "Parquet audio paths, AudioSet files) may point besides the "
                                                "source's own folder: a folder or URL prefix, repeatable "
                                                "(e.g. s3://bucket/ or /mnt/data/)", metavar="PREFIX")
    rows_per_file: int = option(256, "token rows per Parquet shard")
    chunk_windows: int = option(DEFAULT_CHUNK_WINDOWS, "long files are cut into chunks of N x 10.24 s")
    resample_on: ResampleOn = option("decode", "where audio not at 16 kHz is resampled: decode (the CPU "
                                     "decode tasks) or encoder (the encoder's device: frees decode CPU on "
                                     "GPU nodes; same resampler, tokens agree up to float rounding)")
    max_duration_s: float = option(DEFAULT_MAX_DURATION_S, "inputs longer than this many seconds are recorded "
                                   "as failures")
    read_retries: int = option(3, "attempts to read an input before recording a retryable failure")
    missing_inputs: MissingInputs = option("retry", "an input whose file or object does not exist: retry "
                                           "(kept in retryable/ and read again by the next run, exit 75) or "
                                           "fail (a final failure: e.g. AudioSet clips that were never "
                                           "downloaded)")
    retryable_exit_code: int = option(75, "exit status of a run that ends with inputs left in retryable/ (default: "
                                      "75; a rerun retries them); 0 where a scheduler would otherwise mark the run "
                                      "failed and retry it, e.g. a KubeRay RayJob over AudioSet's missing clips")
    shared_fs: bool = option(False, "local paths (--source, --output, --audio-root, --checkpoint) are on a "
                             "filesystem every Ray node mounts at the same path (NFS, Lustre, EFS): allowed on a "
                             "multi-node cluster once every node has checked that it sees them")
    overwrite: bool = option(False, "delete the committed output and start afresh")
    retry_failures: str | None = option(None, "re-attempt the inputs recorded in failures/: all of them, or those "
                                        "of the given error types or stages (e.g. OSError,encode); their new rows "
                                        "supersede the old ones", metavar="TYPE,...", nargs="?", const="")
    qa_samples: int = option(0, "after the run, decode N sampled rows and write a spot-check report")
    qa_report: str | None = option(None, "local report folder (default: OUTPUT/qa_report, or ./qa_report for "
                                   "remote outputs)")
    qa_ddim_steps: int = option(50, "DDIM steps for the QA decodes")
    push_to_hub: str | None = option(None, "after the run, upload the committed shards and dataset card to this "
                                     "Hugging Face dataset repo")
    ray_num_cpus: int | None = option(None, "CPUs for the embedded Ray (ignored when joining a cluster)")
    quiet: bool = option(False, "no progress bar")

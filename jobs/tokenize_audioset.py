"""Tokenize an audio collection into SemantiCodec Parquet token shards.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/tokenize_audioset.py --output s3://bucket/tokens/audioset-bal --limit 1000

Run directly (`python jobs/tokenize_audioset.py ...`) it starts an embedded local Ray; under
`ray job submit` (RAY_ADDRESS set) it joins the cluster. Rerunning with the same arguments
resumes: only inputs not yet committed are processed. `--overwrite` starts afresh.

--source takes any of: a folder/prefix/glob of audio files (local, s3://, any fsspec URL); a
.csv/.jsonl/.parquet manifest with a `uri` column; Parquet files with an HF `audio` struct column;
hf://datasets/<repo> (default: AudioSet, --split picks data/<split>/); .tar shards; an AudioSet
segments CSV with --audio-root. --checkpoint takes hf://owner/repo, a folder, an fsspec URL, or
`synthetic:small` / `synthetic:golden` (random test weights, for offline demos only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout or --working-dir

from pipeline.fsutil import s3_options_from_env  # noqa: E402
from pipeline.runner import TokenizeConfig, run_tokenize  # noqa: E402

SYNTHETIC_PREFIX = "synthetic:"


def gpu_count(value: str):
    """'4' → 4; '1-8' → (1, 8)."""
    low, _, high = value.partition("-")
    try:
        return (int(low), int(high)) if high else int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {value!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="hf://datasets/agkphysics/AudioSet")
    p.add_argument("--split", default=None, help="HF datasets: data/<split>/ (AudioSet: bal_train, unbal_train, eval)")
    p.add_argument("--audio-root", default=None, help="AudioSet CSV: folder/prefix holding the audio files")
    p.add_argument("--class-labels", default=None, help="AudioSet class_labels_indices.csv (MID → name)")
    p.add_argument("--output", required=True, help="local folder or s3://bucket/prefix")
    p.add_argument("--checkpoint", default="hf://haoheliu/SemantiCodec")
    p.add_argument("--token-rate", type=int, default=100, choices=(25, 50, 100))
    p.add_argument("--semantic-vocab-size", type=int, default=16384, choices=(4096, 8192, 16384, 32768))
    p.add_argument("--limit", type=int, default=None, help="process only the first N inputs")
    p.add_argument("--batch-size", type=int, default=16, help="clips per encoder call")
    p.add_argument("--max-batch-windows", type=int, default=16, help="10.24 s windows per forward pass")
    p.add_argument("--num-gpus", type=gpu_count, default=None,
                   help="GPU encoder actors: N, or MIN-MAX for an autoscaling pool (default: every GPU present)")
    p.add_argument("--num-cpu-encoders", type=int, default=1, help="encoder actors when there is no GPU")
    p.add_argument("--cpus-per-encoder", type=int, default=None,
                   help="CPUs (torch threads) per encoder actor; default 1 on GPU, the node's CPUs on CPU")
    p.add_argument("--dtype", default="float32", choices=("float32", "tf32", "bfloat16"))
    p.add_argument("--rows-per-file", type=int, default=256)
    p.add_argument("--chunk-windows", type=int, default=30, help="long files are cut into chunks of N x 10.24 s")
    p.add_argument("--overwrite", action="store_true", help="delete committed output and start afresh")
    p.add_argument("--s3-endpoint-url", default=None, help="default: $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL")
    p.add_argument("--s3-region", default=None)
    p.add_argument("--aws-profile", default=None)
    p.add_argument("--s3-anon", action="store_true", help="anonymous S3 access (public buckets)")
    p.add_argument("--qa-samples", type=int, default=0,
                   help="after the run, decode N sampled rows and write a spot-check report (jobs/spot_check.py)")
    p.add_argument("--qa-report", default=None, help="local report folder (default: OUTPUT/qa_report, or ./qa_report for remote outputs)")
    p.add_argument("--qa-ddim-steps", type=int, default=50)
    p.add_argument("--ray-num-cpus", type=int, default=None, help="embedded Ray only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def resolve_checkpoint(value: str, token_rate: int) -> str:
    if not value.startswith(SYNTHETIC_PREFIX):
        return value
    from pipeline.codecs.semanticodec.checkpoint import default_cache_dir
    from pipeline.codecs.semanticodec.synthetic import build_small_checkpoint, ensure_golden_checkpoint

    kind = value[len(SYNTHETIC_PREFIX):]
    if kind == "golden":
        return str(ensure_golden_checkpoint(token_rate))
    if kind == "small":
        folder = default_cache_dir() / "synthetic-small"
        if not (folder / "SYNTHETIC_WEIGHTS.json").is_file():
            build_small_checkpoint(folder, token_rates=(100, 50, 25))
        return str(folder)
    raise SystemExit(f"unknown synthetic checkpoint {value!r} (use synthetic:small or synthetic:golden)")


def start_ray(num_cpus: int | None) -> None:
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:  # never join a stale local cluster by accident: a fresh embedded instance
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    checkpoint = resolve_checkpoint(args.checkpoint, args.token_rate)
    if args.checkpoint.startswith(SYNTHETIC_PREFIX):
        print("*" * 78 + "\n* SYNTHETIC WEIGHTS: random test checkpoint; the tokens mean nothing.\n" + "*" * 78)
    s3 = s3_options_from_env(args.s3_endpoint_url, args.s3_region, args.aws_profile, args.s3_anon)
    config = TokenizeConfig(
        source=args.source, output=args.output, checkpoint=checkpoint, token_rate=args.token_rate,
        semantic_vocab_size=args.semantic_vocab_size, batch_size=args.batch_size,
        max_batch_windows=args.max_batch_windows, num_gpus=args.num_gpus,
        num_cpu_encoders=args.num_cpu_encoders, cpus_per_encoder=args.cpus_per_encoder, dtype=args.dtype,
        limit=args.limit, rows_per_file=args.rows_per_file, chunk_windows=args.chunk_windows,
        overwrite=args.overwrite, audio_root=args.audio_root, class_labels=args.class_labels,
        split=args.split or ("bal_train" if args.source.startswith("hf://datasets/agkphysics/AudioSet") else None),
        storage_options={"s3": s3} if s3 else {},
    )
    start_ray(args.ray_num_cpus)
    manifest = run_tokenize(config, progress=not args.quiet)
    counts, totals = manifest["counts"], manifest["totals"]
    print(json.dumps({"summary": {
        "output": args.output, "inputs": counts["inputs"], "tokenized": counts["tokenized"],
        "failed": counts["failed"], "failures_by_type": counts["failures_by_type"],
        "audio_hours": round(totals["audio_hours"], 4), "tokens": totals["tokens"],
        "wall_time_s": round(manifest["run"]["wall_time_s"], 1),
        "audio_seconds_per_second": round(totals["audio_seconds_per_second"], 2),
        "synthetic_weights": manifest["codec"].get("synthetic_weights"),
    }}, indent=2))
    if counts["failed"]:
        print(f"{counts['failed']} inputs failed; see {args.output.rstrip('/')}/failures/")
    if args.qa_samples > 0:
        run_qa(args, checkpoint, config.storage_options)
    return 0


def run_qa(args, checkpoint: str, storage_options: dict) -> None:
    """The decode-sampling QA stage on the same Ray (decoder actors on GPUs when there are any)."""
    from pipeline.report.spot_check import run_spot_check

    report_dir = args.qa_report or (
        os.path.join(args.output, "qa_report") if "://" not in args.output else "qa_report")
    report = run_spot_check(args.output, report_dir, args.qa_samples, checkpoint=checkpoint,
                            ddim_steps=args.qa_ddim_steps, storage_options=storage_options or None, use_ray=True)
    flagged = [f["kind"] for f in report["flags"] if f["severity"] in ("error", "warning")]
    print(f"QA report: {os.path.join(report_dir, 'index.html')} (flags: {', '.join(flagged) or 'none'})")


if __name__ == "__main__":
    sys.exit(main())

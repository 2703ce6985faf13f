"""Pipeline efficiency: the whole job (read, decode, encode on actors, write, commit) vs the encoder
alone on the same clips, in one run.

    python bench/pipeline_efficiency.py [--clips 64] [--seconds 10] [--rate 100] [--actors 1] [--threads 2]

The encoder alone gets the same CPU budget as the job's encoder actors (actors x threads torch
threads, one process, batched). The job's Ray gets those CPUs plus the one its CPU encoders always
leave for decoding (Ray counts logical CPUs: more than the machine has oversubscribes its cores, and
the figures say so). Weights: the full-size synthetic checkpoint of the rate (real shapes and cost).
Efficiency = job audio-s/s ÷ encoder-alone audio-s/s; the job's figure includes Ray start-up and
model loading.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def write_clips(folder: Path, count: int, seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    clips = []
    for i in range(count):
        wave = (0.3 * np.sin(2 * np.pi * (150 + 25 * i) * t * (1 + 0.2 * t)) + 0.03 * rng.standard_normal(t.size))
        wave = wave.astype(np.float32)
        sf.write(folder / f"clip_{i:04d}.flac", wave, 16000, subtype="PCM_16")
        clips.append(sf.read(folder / f"clip_{i:04d}.flac", dtype="float32")[0])
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=100, choices=(25, 50, 100))
    parser.add_argument("--actors", type=int, default=1, help="CPU encoder actors")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (= CPUs) per encoder actor")
    parser.add_argument("--max-batch-windows", type=int, default=8)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    import ray

    from pipeline.codecs.semanticodec import SemantiCodec
    from pipeline.codecs.semanticodec.synthetic import ensure_golden_checkpoint
    from pipeline.tokenize.config import TokenizeConfig
    from pipeline.tokenize.encoder_plan import DECODE_CPUS
    from pipeline.tokenize.plan import plan_run
    from pipeline.tokenize.run import run_tokenize

    checkpoint = args.checkpoint or str(ensure_golden_checkpoint(args.rate))
    audio_s = args.clips * args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "audio"
        folder.mkdir()
        clips = write_clips(folder, args.clips, args.seconds)

        torch.set_num_threads(args.actors * args.threads)
        codec = SemantiCodec.from_pretrained(checkpoint, token_rate=args.rate, semantic_vocab_size=4096)
        codec.encode(clips[:1], 16000)  # warm-up
        started = time.perf_counter()
        codec.encode(clips, 16000, max_batch_windows=args.max_batch_windows)
        alone_s = time.perf_counter() - started
        del codec

        ray_cpus = args.actors * args.threads + DECODE_CPUS
        ray.init(address="local", num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False)
        config = TokenizeConfig(
            source=str(folder), output=str(Path(tmp) / "out"), checkpoint=checkpoint, token_rate=args.rate,
            semantic_vocab_size=4096, max_batch_windows=args.max_batch_windows,
            num_gpus=0, num_cpu_encoders=args.actors, cpus_per_encoder=args.threads, rows_per_file=16,
        )
        started = time.perf_counter()
        with plan_run(config) as plan:  # as the job does: the plan, then the run
            run_record = run_tokenize(config, plan, progress=False)
        job_s = time.perf_counter() - started
        ray.shutdown()

    assert run_record["counts"]["tokenized"] == args.clips
    print(f"# rate {args.rate}, {args.clips} clips x {args.seconds:g} s, {args.actors} CPU encoder actor(s) x "
          f"{args.threads} threads vs encoder alone with {args.actors * args.threads} threads; "
          f"SYNTHETIC full-size weights; Ray: {ray_cpus} CPUs on {os.cpu_count()} cores")
    print(f"encoder alone: {audio_s / alone_s:7.2f} audio-s/s  {args.clips / alone_s:6.2f} clips/s  ({alone_s:.1f} s)")
    print(f"whole job:     {audio_s / job_s:7.2f} audio-s/s  {args.clips / job_s:6.2f} clips/s  ({job_s:.1f} s, "
          "incl. Ray start-up and model loading)")
    print(f"pipeline efficiency (job / encoder alone): {alone_s / job_s:.2f}")


if __name__ == "__main__":
    main()

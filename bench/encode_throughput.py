"""Encoder throughput: packed batches vs one 10.24 s window at a time, same weights, same threads.

    python bench/encode_throughput.py [--rate 100] [--clips 16] [--seconds 10] [--batch 16]
                                      [--device cpu|cuda] [--dtype float32|tf32|bfloat16]
                                      [--checkpoint DIR]

Without --checkpoint it uses the full-size synthetic checkpoint rebuilt from the golden manifests
(real shapes, random weights: speed is representative, tokens are not). On CUDA it also reports
how many tokens of the fast dtype agree with fp32.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.codecs.semanticodec.synthetic import ensure_golden_checkpoint


def make_clips(count: int, seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    return [
        (0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        for i in range(count)
    ]


def timed_encode(codec: SemantiCodec, clips, batch: int, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    tokens = codec.encode(clips, 16000, max_batch_windows=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=100, choices=(25, 50, 100))
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="per clip (10 s = one window)")
    parser.add_argument("--batch", type=int, default=16, help="max windows per forward pass when batched")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "tf32", "bfloat16"))
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    checkpoint = args.checkpoint or str(ensure_golden_checkpoint(args.rate))
    vocab = 4096
    codec = SemantiCodec.from_pretrained(
        checkpoint, token_rate=args.rate, semantic_vocab_size=vocab, device=args.device, dtype=args.dtype
    )
    clips = make_clips(args.clips, args.seconds)
    audio_s = args.clips * args.seconds
    print(f"# {codec.variant.name} on {args.device} ({args.dtype}), torch threads {torch.get_num_threads()}, "
          f"{args.clips} clips x {args.seconds:g} s; weights: {'SYNTHETIC' if codec.is_synthetic else checkpoint}")
    timed_encode(codec, clips[:1], 1, args.device)  # warm-up
    batched_s, batched_tokens = timed_encode(codec, clips, args.batch, args.device)
    single_s, single_tokens = timed_encode(codec, clips, 1, args.device)
    same = sum(int((a == b).all()) for a, b in zip(batched_tokens, single_tokens))
    print(f"batched (<= {args.batch} windows/pass): {audio_s / batched_s:8.2f} audio-s/s  ({batched_s:.1f} s)")
    print(f"one window at a time:        {audio_s / single_s:8.2f} audio-s/s  ({single_s:.1f} s)")
    print(f"speed-up batched / single:   {single_s / batched_s:8.2f}x")
    print(f"clips with identical tokens batched vs single: {same}/{len(clips)}")
    if args.dtype != "float32":
        reference = SemantiCodec.from_pretrained(
            checkpoint, token_rate=args.rate, semantic_vocab_size=vocab, device=args.device, dtype="float32"
        )
        _, exact = timed_encode(reference, clips, args.batch, args.device)
        agree = np.mean(np.concatenate([(a == b).reshape(-1) for a, b in zip(batched_tokens, exact)]))
        sem = np.mean(np.concatenate([a[:, 0] == b[:, 0] for a, b in zip(batched_tokens, exact)]))
        print(f"{args.dtype} vs float32 token agreement: {agree:.4f} (semantic {sem:.4f})")


if __name__ == "__main__":
    main()

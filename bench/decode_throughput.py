"""Decoder throughput: windows decoded per second, batched (several 10.24 s windows per DDIM/VAE/
vocoder pass) vs one window at a time; same weights, same torch threads, same noise, one run.

    python bench/decode_throughput.py [--windows 4] [--batch 4] [--ddim-steps 5] [--rate 100]
                                      [--device cpu|cuda] [--checkpoint DIR]

Without --checkpoint it uses `synthetic:golden`, the full-size synthetic checkpoint of the rate with
its decoder, rebuilt from the golden manifests (real shapes, random weights: speed is representative, audio is
not). Each clip is exactly one decode window of random in-vocabulary tokens (512 pairs at rate
100), so windows/s is clips/s; 1 window/s decodes 10.24 s of audio per second. The default of 5
DDIM steps suits CPU; the official decoder uses 50 (GPU).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.codecs.semanticodec.synthetic import resolve_checkpoint_location


def timed_decode(codec: SemantiCodec, tokens, batch: int, steps: int, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    audio = codec.decode(tokens, ddim_steps=steps, seed=0, max_batch_windows=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=100, choices=(25, 50, 100))
    parser.add_argument("--windows", type=int, default=4, help="clips of exactly one decode window each")
    parser.add_argument("--batch", type=int, default=4, help="max windows per pass when batched")
    parser.add_argument("--ddim-steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default="synthetic:golden",
                        help="weights with a decoder: a folder, hf://..., synthetic:golden or synthetic:small")
    args = parser.parse_args()

    checkpoint = resolve_checkpoint_location(args.checkpoint, args.rate, 4096, with_decoder=True)
    codec = SemantiCodec.from_pretrained(checkpoint, token_rate=args.rate, semantic_vocab_size=4096, device=args.device)
    loading = time.perf_counter()
    codec.load_decoder()
    loading = time.perf_counter() - loading
    window = codec.variant.tokens_per_segment
    rng = np.random.default_rng(0)
    semantic_vocab, acoustic_vocab = codec.cardinalities
    tokens = [np.stack([rng.integers(0, semantic_vocab, window), rng.integers(0, acoustic_vocab, window)], 1)
              for _ in range(args.windows)]
    print(f"# {codec.variant.name} decoder on {args.device}, torch threads {torch.get_num_threads()}, "
          f"{args.windows} windows x 10.24 s, {args.ddim_steps} DDIM steps, CFG 2.0; decoder load {loading:.1f} s; "
          f"weights: {'SYNTHETIC' if codec.is_synthetic else checkpoint}")
    timed_decode(codec, tokens[:1], 1, args.ddim_steps, args.device)  # warm-up
    batched_s, batched = timed_decode(codec, tokens, args.batch, args.ddim_steps, args.device)
    single_s, single = timed_decode(codec, tokens, 1, args.ddim_steps, args.device)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(batched, single, strict=True))
    print(f"batched (<= {args.batch} windows/pass): {args.windows / batched_s:7.3f} windows/s  "
          f"({batched_s:.1f} s, {10.24 * args.windows / batched_s:.2f} audio-s/s)")
    print(f"one window at a time:        {args.windows / single_s:7.3f} windows/s  "
          f"({single_s:.1f} s, {10.24 * args.windows / single_s:.2f} audio-s/s)")
    print(f"speed-up batched / single:   {single_s / batched_s:7.2f}x")
    print(f"max |batched - single| sample difference (same noise): {diff:.2e}")


if __name__ == "__main__":
    main()

"""Training-side reader on a generated corpus: opening it (schema/codec checks and the
complete-documents index, from key columns only) and reading throughput of PackedTokenDataset.

    python bench/corpus_reader.py [--shards 40] [--clips 256] [--frames 500] [--seq-len 2048] [--workers 0]
    python bench/corpus_reader.py --shards 7000 --clips 250 --frames 2 --open-only   # AudioSet-sized index
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.corpus import PackedTokenDataset, TokenCorpus
from pipeline.output.folder import TOKENS_DIR, OutputFolder, tokens_table

PROVENANCE = {"codec": "semanticodec", "variant": "semanticodec-r100-v16384", "token_rate": 100,
              "semantic_vocab_size": 16384, "acoustic_vocab_size": 8192, "files": {}}


def build(folder: Path, shards: int, clips: int, frames: int) -> int:
    rng = np.random.default_rng(0)
    output = OutputFolder(str(folder))
    for s in range(shards):
        rows = [{"id": f"s{s}c{c}", "uri": "x", "chunk_index": 0, "num_chunks": 1, "chunk_start_s": 0.0,
                 "duration_s": frames / 50, "source_sample_rate": 16000, "source_channels": 1, "num_frames": frames,
                 "semantic": rng.integers(0, 16384, frames).astype(np.uint16),
                 "acoustic": rng.integers(0, 8192, frames).astype(np.uint16), "labels": None, "human_labels": None}
                for c in range(clips)]
        output.write_shard(TOKENS_DIR, tokens_table(rows), PROVENANCE)
    return shards * clips * frames * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=40)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--frames", type=int, default=500, help="token pairs per clip (500 = 10 s at rate 100)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--open-only", action="store_true", help="only time opening the corpus (the index)")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tokens = build(Path(tmp), args.shards, args.clips, args.frames)
        print(f"# {args.shards} shards x {args.clips} clips x {args.frames} pairs, seq_len {args.seq_len}, "
              f"DataLoader workers {args.workers}")
        started = time.perf_counter()
        corpus = TokenCorpus(tmp)
        print(f"open (checks + index of {corpus.index.rows} rows): {time.perf_counter() - started:.2f} s")
        if args.open_only:
            return
        dataset = PackedTokenDataset(corpus, args.seq_len, seed=0, shuffle_buffer=1024)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=args.workers)
        started = time.perf_counter()
        seen = sum(sample["input_ids"].numel() for sample in loader)
        elapsed = time.perf_counter() - started
    print(f"tokens read: {seen} (corpus {tokens} + EOS per clip) in {elapsed:.2f} s: "
          f"{seen / elapsed / 1e6:.2f} M tokens/s")


if __name__ == "__main__":
    main()

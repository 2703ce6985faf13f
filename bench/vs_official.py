"""Our encoder against the official SemantiCodec-inference encoder, side by side in one process.

    python bench/vs_official.py --official-src DIR [--rate 100] [--clips 8] [--seconds 10]
                                [--threads 2] [--repeats 3] [--checkpoint DIR]

DIR is a checkout of github.com/haoheliu/SemantiCodec-inference whose dependencies (timm,
vector-quantize-pytorch, einops and theirs) are importable, for example installed into a scratch
folder put on PYTHONPATH. Nothing of it is part of this project: it is only timed and compared.

Both encoders load the same weights (default: the full-size synthetic checkpoint rebuilt from the
golden manifests, real shapes and random weights) and encode the same 16 kHz WAV files, read from
disk by each. The official code encodes one file per call (`SemantiCodec.encode`, unchanged, with
`torchaudio.load` replaced by soundfile as for the golden files); ours is timed one clip per call
and batched (`--batch` windows per pass), in exact float32 and in bfloat16. Timings are the best of
`--repeats`, runs alternated, so that a neighbour's load hits both sides alike. fp32 tokens are
checked to be identical to the official ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipeline.codecs.semanticodec import SemantiCodec
from pipeline.codecs.semanticodec.synthetic import ensure_golden_checkpoint


def official_encoder(official_src: Path, checkpoint: Path, rate: int):
    """The official `SemantiCodec` with only its encoder, built as the golden README describes."""
    sys.path.insert(0, str(official_src))
    import torchaudio
    from semanticodec.config import get_config
    from semanticodec.main import SemantiCodec as Official
    from semanticodec.modules.encoder.encoder import AudioMAEConditionQuantResEncoder

    def load_with_soundfile(path, *args, **kwargs):
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(data.T)), sample_rate

    torchaudio.load = load_with_soundfile  # torchaudio 2.11's load needs torchcodec
    _, folder, feature_dim, lstm_layers, codebook = get_config(rate, 4096, None)
    encoder = AudioMAEConditionQuantResEncoder(
        feature_dimension=feature_dim, lstm_layer=lstm_layers, centroid_npy_path=str(checkpoint / codebook)
    )
    encoder.load_state_dict(torch.load(checkpoint / folder / "encoder.ckpt", map_location="cpu"), strict=True)
    official = Official.__new__(Official)
    torch.nn.Module.__init__(official)
    official.token_rate, official.stack_factor_K = rate, 100 / rate
    official.device = torch.device("cpu")
    official.encoder = encoder.eval()
    return official


def write_clips(folder: Path, count: int, seconds: float, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    paths = []
    for i in range(count):
        wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip_{i}.wav"
        sf.write(path, wave.astype(np.float32), 16000, subtype="FLOAT")
        paths.append(path)
    return paths


def read(paths: list[Path]) -> list[np.ndarray]:
    return [sf.read(path, dtype="float32")[0] for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-src", type=Path, required=True)
    parser.add_argument("--rate", type=int, default=100, choices=(25, 50, 100))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8, help="our windows per forward pass when batched")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or ensure_golden_checkpoint(args.rate)

    official = official_encoder(args.official_src, checkpoint, args.rate)
    ours = {
        dtype: SemantiCodec.from_pretrained(str(checkpoint), token_rate=args.rate, semantic_vocab_size=4096,
                                            dtype=dtype)
        for dtype in ("float32", "bfloat16")
    }
    runs = {
        "official, one clip per call": lambda paths: [official.encode(str(p))[0].numpy() for p in paths],
    }
    for dtype, codec in ours.items():
        runs[f"ours {dtype}, one clip per call"] = lambda paths, c=codec: [
            c.encode([wave], 16000, max_batch_windows=1)[0] for wave in read(paths)
        ]
        runs[f"ours {dtype}, batched <= {args.batch} windows/pass"] = lambda paths, c=codec: c.encode(
            read(paths), 16000, max_batch_windows=args.batch
        )

    with tempfile.TemporaryDirectory() as folder:
        paths = write_clips(Path(folder), args.clips, args.seconds)
        best = {name: float("inf") for name in runs}
        tokens = {}
        for run in runs.values():
            run(paths[:1])  # warm-up
        for _ in range(args.repeats):
            for name, run in runs.items():
                started = time.perf_counter()
                tokens[name] = run(paths)
                best[name] = min(best[name], time.perf_counter() - started)

    audio_s = args.clips * args.seconds
    reference = best["official, one clip per call"]
    print(f"# rate {args.rate}, {args.clips} clips x {args.seconds:g} s, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}; weights: {'SYNTHETIC ' if ours['float32'].is_synthetic else ''}{checkpoint}")
    for name, seconds in best.items():
        print(f"{name:42s} {seconds:7.2f} s  {audio_s / seconds:6.2f} audio-s/s  {reference / seconds:5.2f}x official")
    official_tokens = tokens["official, one clip per call"]
    for name, result in tokens.items():
        if "float32" in name:
            same = sum(int(np.array_equal(a, b)) for a, b in zip(result, official_tokens, strict=True))
            print(f"{name}: tokens identical to the official for {same}/{len(official_tokens)} clips")
    for name, result in tokens.items():
        if "bfloat16" in name:
            pairs = list(zip(result, official_tokens, strict=True))
            semantic = np.mean(np.concatenate([a[:, 0] == b[:, 0] for a, b in pairs]))
            acoustic = np.mean(np.concatenate([a[:, 1] == b[:, 1] for a, b in pairs]))
            print(f"{name}: agreement with the official fp32 tokens semantic {semantic:.4f}, acoustic {acoustic:.4f}")


if __name__ == "__main__":
    main()

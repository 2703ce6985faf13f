"""Audio decode + resample speed, x real time per core, for AudioSet's format.

AudioSet clips are 10 s, 48 kHz, 24-bit FLAC (2 channels by default here). The bench writes
`--clips` such clips (noise under tones, so FLAC has real work to do), then times
`pipeline.audio_decode.decode_item` on them on ONE thread (torch and the process): bytes in
memory → channel 0 at 16 kHz in chunks, the work of one decode task per input.

    python bench/decode_resample.py [--clips 50] [--repeats 3] [--rate 48000] [--channels 2]
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np


def make_clip(rng, seconds: float, rate: int, channels: int) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, 4))
    wave = tones[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1, 1).astype(np.float32), rate, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from pipeline.audio_decode import decode_item
    from pipeline.config import DEFAULT_CHUNK_WINDOWS, DEFAULT_MAX_DURATION_S
    from pipeline.records import SourceItem

    rng = np.random.default_rng(0)
    items = [SourceItem(id=f"clip{i}", uri=f"clip{i}.flac", data=make_clip(rng, args.seconds, args.rate, args.channels))
             for i in range(args.clips)]

    def decode(item):
        return list(decode_item(item, chunk_windows=DEFAULT_CHUNK_WINDOWS, max_duration_s=DEFAULT_MAX_DURATION_S))

    decode(items[0])  # warm-up: imports, kernel
    best = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        for item in items:
            chunks = decode(item)
            assert chunks and all(hasattr(c, "waveform") for c in chunks), chunks
        best = min(best, time.perf_counter() - started)
    audio_s = args.clips * args.seconds
    print(json.dumps({"format": f"{args.rate} Hz {args.channels}ch 24-bit FLAC, {args.seconds:g} s clips",
                      "clips": args.clips, "threads": 1, "seconds": round(best, 4),
                      "ms_per_clip": round(1000 * best / args.clips, 3),
                      "x_real_time_per_core": round(audio_s / best, 1)}))


if __name__ == "__main__":
    main()

"""Audio decode + resample speed, x real time per core, for AudioSet's format.

AudioSet clips are 10 s, 48 kHz, 24-bit FLAC (2 channels by default here). The bench writes
`--clips` such clips (noise under tones, so FLAC has real work to do), then times
`pipeline.audio.load.load_chunks` on them on ONE thread (torch and the process): bytes in
memory → channel 0 at 16 kHz in chunks, the work of one decode task per input. It times both
places the resampling can run (`--resample-on`):

- decode: the decode task resamples (and pads and centres) on the CPU;
- encoder: the decode task only cuts resampler input spans; the encoder resamples them on its
  device (`--device`, timed too) before encoding.

With `--agreement-clips N` it also encodes N clips both ways with the checkpoint (default: the
full-size synthetic r100 one) and prints the token agreement of the encoder path with the CPU path.

    python bench/decode_resample.py [--clips 50] [--repeats 3] [--rate 48000] [--channels 2]
                                    [--device cpu|cuda] [--agreement-clips 8] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
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
    parser.add_argument("--device", default="cpu", help="where the encoder path resamples")
    parser.add_argument("--agreement-clips", type=int, default=0)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from pipeline.audio.load import load_chunks
    from pipeline.codecs.semanticodec.prepare import prepare_clip
    from pipeline.codecs.semanticodec.variants import SemantiCodecVariant
    from pipeline.records import AudioChunk, SourceItem
    from pipeline.tokenize.config import DEFAULT_CHUNK_WINDOWS, DEFAULT_MAX_DURATION_S
    from pipeline.tokenize.encode import resample_spans_on_device

    rng = np.random.default_rng(0)
    items = [SourceItem(id=f"clip{i}", uri=f"clip{i}.flac", data=make_clip(rng, args.seconds, args.rate, args.channels))
             for i in range(args.clips)]
    variant = SemantiCodecVariant(100, 4096)

    def decode_task(item, resample: bool):
        """What one decode task does per input (as `ray_stages.ReadDecode`)."""
        chunks = list(load_chunks(item, chunk_windows=DEFAULT_CHUNK_WINDOWS, max_duration_s=DEFAULT_MAX_DURATION_S,
                                  resample=resample))
        assert chunks and all(isinstance(c, AudioChunk) for c in chunks), chunks
        return [c if c.resample_from else AudioChunk(c.info, prepare_clip(c.waveform, variant).samples) for c in chunks]

    def best_of(work) -> float:
        work()  # warm-up: imports, kernels
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            work()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        return best

    audio_s = args.clips * args.seconds
    report = {"format": f"{args.rate} Hz {args.channels}ch 24-bit FLAC, {args.seconds:g} s clips",
              "clips": args.clips, "threads": 1}
    for place, resample in (("decode", True), ("encoder", False)):
        seconds = best_of(lambda resample=resample: [decode_task(item, resample) for item in items])
        report[f"decode_task_x_real_time_per_core (resample on {place})"] = round(audio_s / seconds, 1)
    spans = [chunk for item in items for chunk in decode_task(item, False)]
    codec_like = type("Codec", (), {"device": args.device, "variant": variant})()
    seconds = best_of(lambda: resample_spans_on_device(codec_like, spans))
    report[f"encoder_side_resample_x_real_time ({args.device}, 1 thread)"] = round(audio_s / seconds, 1)
    print(json.dumps(report))
    if args.agreement_clips:
        agreement(items[: args.agreement_clips], decode_task, args)


def agreement(items, decode_task, args) -> None:
    """Tokens of the encoder-side path against the decode-task path, same codec, same clips."""
    import torch

    from pipeline.codecs.semanticodec import SemantiCodec
    from pipeline.codecs.semanticodec.synthetic import ensure_golden_checkpoint
    from pipeline.tokenize.encode import encode_chunks

    torch.set_num_threads(os.cpu_count() or 1)  # the timings above ran on one thread
    checkpoint = args.checkpoint or str(ensure_golden_checkpoint(100))
    codec = SemantiCodec.from_pretrained(checkpoint, token_rate=100, semantic_vocab_size=4096, device=args.device)
    on_cpu = encode_chunks(codec, [c for item in items for c in decode_task(item, True)])
    on_encoder = encode_chunks(codec, [c for item in items for c in decode_task(item, False)])
    semantic = np.concatenate([a.semantic == b.semantic for a, b in zip(on_encoder, on_cpu, strict=True)]).mean()
    acoustic = np.concatenate([a.acoustic == b.acoustic for a, b in zip(on_encoder, on_cpu, strict=True)]).mean()
    print(json.dumps({"agreement_clips": len(items), "checkpoint": checkpoint, "synthetic": codec.is_synthetic,
                      "semantic_agreement": round(float(semantic), 5), "acoustic_agreement": round(float(acoustic), 5),
                      "identical_clips": sum(int(np.array_equal(a.semantic, b.semantic) and
                                                 np.array_equal(a.acoustic, b.acoustic))
                                             for a, b in zip(on_encoder, on_cpu, strict=True))}))


if __name__ == "__main__":
    main()

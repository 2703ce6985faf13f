"""The QA stage's Ray adapter: decoder actors (one per GPU, or one CPU actor) behind the spot
check's `DecodeFn` interface (`decode_with_ray`); each actor wraps the report's `decode_one`."""

from __future__ import annotations

import numpy as np


class QADecodeActor:
    """`ds.map_batches(QADecodeActor, ...)`: holds one codec with its decoder; rows of picked
    tokens (index, semantic, acoustic, seed) → waveforms, through the report's `decode_one`."""

    def __init__(self, spec) -> None:
        import torch

        from .decode import load_codec

        self.spec = spec
        self.codec, self.error = load_codec(spec, device="cuda" if torch.cuda.is_available() else "cpu")

    def __call__(self, batch: dict) -> dict:
        from .decode import DecodeRequest, decode_one, not_decoded

        out = {"index": [], "waveform": [], "status": [], "error": [], "decode_s": [], "synthetic": []}
        columns = (batch["index"], batch["semantic"], batch["acoustic"], batch["seed"])
        for index, semantic, acoustic, seed in zip(*columns, strict=True):
            tokens = np.stack([np.asarray(semantic, np.int64), np.asarray(acoustic, np.int64)], axis=1)
            if self.codec is None:
                result = not_decoded(self.error)
            else:
                result = decode_one(self.codec, DecodeRequest(int(index), tokens, int(seed)), self.spec)
            out["index"].append(int(index))
            out["waveform"].append(np.zeros(0, np.float32) if result.waveform is None else result.waveform)
            out["status"].append(result.status)
            out["error"].append(result.error or "")
            out["decode_s"].append(float(result.seconds))
            out["synthetic"].append(bool(self.codec is not None and self.codec.is_synthetic))
        waveforms = np.empty(len(out["waveform"]), dtype=object)  # ragged: one array per row
        waveforms[:] = out.pop("waveform")
        return {**{k: np.asarray(v) for k, v in out.items()}, "waveform": waveforms}


def decode_with_ray(spec, requests, progress=None):
    """The spot check's Ray decode function (`pipeline.report.decode.DecodeFn`): one decoder actor
    per GPU of the running Ray cluster, or one CPU actor when it has none. Progress is per row."""
    import ray

    from .decode import DecodeOutcome, DecodeResult

    if not requests:
        return DecodeOutcome({}, in_process=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    items = [{"index": r.index, "semantic": r.tokens[:, 0].tolist(), "acoustic": r.tokens[:, 1].tolist(),
              "seed": r.seed} for r in requests]
    ds = ray.data.from_items(items).map_batches(
        QADecodeActor, fn_constructor_kwargs={"spec": spec}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(min(gpus, len(requests)), 1)), num_gpus=1 if gpus else 0,
    )
    results, errors, synthetic = {}, set(), None
    for row in ds.iter_rows():
        index = int(row["index"])
        wave = np.array(row["waveform"], np.float32) if row["status"] == "ok" else None  # a writable copy
        results[index] = DecodeResult(wave, str(row["status"]), str(row["error"]) or None, float(row["decode_s"]))
        if row["status"] == "not_decoded":
            errors.add(str(row["error"]))
        else:
            synthetic = bool(row["synthetic"])
        if progress is not None:
            progress.pick_done(index)
    codec_error = None
    if errors and len(errors) == 1 and len(results) == len([r for r in results.values() if r.status == "not_decoded"]):
        codec_error = next(iter(errors)).removeprefix("codec unavailable: ")
    return DecodeOutcome(results, codec_error, synthetic_weights=synthetic, in_process=False)

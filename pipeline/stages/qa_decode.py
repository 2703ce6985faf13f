"""QA decode on Ray: sampled token rows → waveforms on decoder actors (one per GPU; one CPU actor
when the cluster has no GPU). A thin adapter around `report.spot_check.decode_one`."""

from __future__ import annotations

import numpy as np


class DecodeStage:
    """Ray Data callable class holding one decoder; rows: index, semantic, acoustic, seed."""

    def __init__(self, settings: dict, storage_options: dict | None, ddim_steps: int, cfg_scale: float) -> None:
        import torch

        from ..report.spot_check import load_codec

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.codec, self.error = load_codec(settings, device, storage_options)
        self.ddim_steps, self.cfg_scale = ddim_steps, cfg_scale

    def __call__(self, batch: dict) -> dict:
        from ..report.spot_check import decode_one

        out = {"index": [], "waveform": [], "status": [], "error": [], "decode_s": []}
        for index, semantic, acoustic, seed in zip(batch["index"], batch["semantic"], batch["acoustic"], batch["seed"]):
            tokens = np.stack([np.asarray(semantic, np.int64), np.asarray(acoustic, np.int64)], axis=1)
            if self.codec is None:
                wave, status, error, seconds = None, "not_decoded", f"codec unavailable: {self.error}", 0.0
            else:
                wave, status, error, seconds = decode_one(self.codec, tokens, ddim_steps=self.ddim_steps,
                                                          cfg_scale=self.cfg_scale, seed=int(seed))
            out["index"].append(int(index))
            out["waveform"].append(np.zeros(0, np.float32) if wave is None else np.asarray(wave, np.float32))
            out["status"].append(status)
            out["error"].append(error or "")
            out["decode_s"].append(float(seconds))
        waveforms = np.empty(len(out["waveform"]), dtype=object)
        waveforms[:] = out.pop("waveform")
        return {**{k: np.asarray(v) for k, v in out.items()}, "waveform": waveforms}


def decode_with_ray(requests, settings: dict, storage_options, ddim_steps: int, cfg_scale: float):
    """requests: (index, tokens [T, 2], seed) → ({index: (wave|None, status, error, s)}, codec error)."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    items = [{"index": k, "semantic": t[:, 0].tolist(), "acoustic": t[:, 1].tolist(), "seed": seed}
             for k, t, seed in requests]
    ds = ray.data.from_items(items).map_batches(
        DecodeStage,
        fn_constructor_kwargs={"settings": settings, "storage_options": storage_options,
                               "ddim_steps": ddim_steps, "cfg_scale": cfg_scale},
        batch_size=1, concurrency=max(gpus, 1), num_gpus=1 if gpus else 0,
    )
    results, errors = {}, set()
    for row in ds.iter_rows():
        wave = row["waveform"] if row["status"] == "ok" else None
        results[int(row["index"])] = (wave, row["status"], row["error"] or None, float(row["decode_s"]))
        if row["status"] == "not_decoded":
            errors.add(row["error"])
    codec_error = next(iter(errors)) if errors and len(errors) == 1 and len(results) == len(errors) else None
    return results, codec_error

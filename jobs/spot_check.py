"""Decode-sampling QA of a token output folder: decode a seeded sample of rows back to audio,
compare with the originals, compute whole-corpus token statistics, write an HTML + JSON report.

    python jobs/spot_check.py --tokens OUT --report DIR --samples 16 [--checkpoint CK]
                              [--ddim-steps 50] [--seed 0] [--device cpu|cuda]

--tokens is the output folder of jobs/tokenize_audioset.py (local path or any fsspec URL, e.g.
s3://bucket/tokens/run1). The codec variant and checkpoint come from the shards' provenance
metadata (or manifest.json); --checkpoint overrides the checkpoint (a folder, hf://owner/repo,
an fsspec URL, or synthetic:golden). DIR gets index.html (open it from disk), report.json
(schemas/qa_report.v1.json), audio/*.wav and img/*.png.

Bad rows (out-of-vocabulary ids, unknown uris, degenerate or inconsistent rows) are reported
and the job exits 0. It exits 1 only when the decoder could not be loaded at all (the report,
with its token statistics, is still written).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout or --working-dir

from pipeline.fsutil import s3_options_from_env  # noqa: E402
from pipeline.report.spot_check import DEFAULT_MAX_DECODE_S, run_spot_check  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", required=True, help="token output folder (local or s3://...)")
    p.add_argument("--report", required=True, help="local folder for index.html, report.json, audio/, img/")
    p.add_argument("--samples", type=int, default=16, help="rows to decode")
    p.add_argument("--checkpoint", default=None, help="override the checkpoint recorded in the corpus")
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0, help="picks the rows and seeds the decoder noise")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--max-decode-s", type=float, default=DEFAULT_MAX_DECODE_S,
                   help="decode at most this many seconds of each sampled row (0: all of it)")
    p.add_argument("--ray", action="store_true",
                   help="decode on Ray actors (one per GPU; joins $RAY_ADDRESS or starts a local Ray)")
    p.add_argument("--s3-endpoint-url", default=None, help="default: $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL")
    p.add_argument("--s3-region", default=None)
    p.add_argument("--aws-profile", default=None)
    p.add_argument("--s3-anon", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s3 = s3_options_from_env(args.s3_endpoint_url, args.s3_region, args.aws_profile, args.s3_anon)
    if args.ray:
        import os

        import ray

        ray.init(address=os.environ.get("RAY_ADDRESS") or "local")
    report = run_spot_check(
        args.tokens, args.report, args.samples, checkpoint=args.checkpoint, ddim_steps=args.ddim_steps,
        seed=args.seed, storage_options={"s3": s3} if s3 else {}, device=args.device, cfg_scale=args.cfg_scale,
        max_decode_s=args.max_decode_s or None, use_ray=args.ray,
    )
    stats, agg = report["token_stats"], report["aggregate"]
    print(json.dumps({"summary": {
        "tokens": args.tokens, "rows": stats["rows"], "audio_hours": round(stats["audio_hours"], 4),
        "samples": agg["samples"], "decoded": agg["decoded"], "compared": agg["with_metrics"],
        "by_status": agg["by_status"],
        "log_mel_distance_mean": agg["metrics"]["log_mel_distance"]["mean"],
        "mrstft_distance_mean": agg["metrics"]["mrstft_distance"]["mean"],
        "flags": {f["kind"]: f["count"] for f in report["flags"]},
        "synthetic_weights": report["codec"]["synthetic_weights"],
    }}, indent=2))
    for flag in report["flags"]:
        print(f"[{flag['severity']}] {flag['kind']}: {flag['message']}"[:300])
    print(f"report: {(Path(args.report) / 'index.html').resolve()}")
    return 1 if any(f["kind"] == "codec_unavailable" for f in report["flags"]) else 0


if __name__ == "__main__":
    sys.exit(main())

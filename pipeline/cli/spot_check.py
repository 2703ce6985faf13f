"""The spot-check job: `semanticodec-spot-check` and `python jobs/spot_check.py`."""

from __future__ import annotations

import contextlib
import os
import sys

from .common import (
    debug_requested,
    one_line,
    parse_config,
    print_summary,
    prog_name,
    ray_session,
    run_cli,
    say,
    setup_logging,
)

# --- the spot-check job -----------------------------------------------------------------------

SPOT_CHECK_DESCRIPTION = """Decode-sampling QA of a token output folder: decode a seeded sample
of rows back to audio, compare them with the originals, compute whole-corpus token statistics,
and write an HTML + JSON report.

  python jobs/spot_check.py --tokens OUT --report qa/ --samples 16 [--ddim-steps 50] [--ray]
  semanticodec-spot-check --tokens s3://bucket/tokens/run1 --report qa/ --samples 4

The codec variant and checkpoint come from the shards' provenance (or manifest.json); --checkpoint
overrides the checkpoint. The report folder gets index.html (open it from disk), report.json
(schemas/qa_report.v1.json), audio/*.wav and img/*.png. Exit code 0 when no error is flagged,
1 when the report flags an error (or the output cannot be read).
"""


def parse_spot_check_args(argv: list[str] | None = None):
    from ..report.config import SpotCheckConfig

    return parse_config(SpotCheckConfig, argv, SPOT_CHECK_DESCRIPTION, prog=prog_name("spot_check.py"))


def spot_check_main(argv: list[str] | None = None) -> int:
    """Entry point of `semanticodec-spot-check` and `python jobs/spot_check.py`."""
    return run_cli(lambda: _spot_check(argv), argv)


def _spot_check(argv: list[str] | None) -> int:
    from ..report.flags import report_exit_code
    from ..report.spot_check import run_spot_check

    config = parse_spot_check_args(argv)
    setup_logging()
    stdout = sys.stdout
    with ray_session(None, debug_requested(argv)) if config.ray else contextlib.redirect_stdout(sys.stderr):
        decode_fn = None
        if config.ray:
            from ..report.ray_decode import decode_with_ray

            decode_fn = decode_with_ray
        report = run_spot_check(config, decode_fn=decode_fn, progress=not config.quiet)
    print_summary(spot_check_summary(config, report), stdout)
    print_flags(report)
    say(f"report: {os.path.abspath(os.path.join(str(config.report), 'index.html'))}")
    return report_exit_code(report)


def spot_check_summary(config, report: dict) -> dict:
    stats, agg = report["token_stats"], report["aggregate"]
    return {
        "tokens": config.tokens, "rows": stats["rows"], "audio_hours": round(stats["audio_hours"], 4),
        "samples": agg["samples"], "decoded": agg["decoded"], "compared": agg["with_metrics"],
        "by_status": agg["by_status"],
        "log_mel_distance_mean": agg["metrics"]["log_mel_distance"]["mean"],
        "mrstft_distance_mean": agg["metrics"]["mrstft_distance"]["mean"],
        "flags": {f["kind"]: f["count"] for f in report["flags"]},
        "synthetic_weights": report["codec"]["synthetic_weights"],
    }


def print_flags(report: dict) -> None:
    for flag in report["flags"]:
        say(f"[{flag['severity']}] {flag['kind']}: {one_line(Exception(flag['message']))}"[:300])

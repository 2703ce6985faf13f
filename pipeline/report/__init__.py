"""The QA spot check of a token output folder: decode seeded picks of its rows back to audio, compare
them with the originals, compute whole-corpus token statistics and write an HTML + JSON report.

Entry point: `run_spot_check(SpotCheckConfig(...), decode_fn=None)` (spot_check.py), which wires
inventory → token_stats → plan → decode → evaluate → flags → render; `report_exit_code(report)`
(flags.py) gives the job's exit code. CLI: `jobs/spot_check.py`. Modules are plain functions;
matplotlib (Agg) and jinja2 are imported only where they are used.
"""

REPORT_SCHEMA = "qa_report"
REPORT_SCHEMA_VERSION = 1


def run_spot_check(*args, **kwargs):  # lazy: `import pipeline.report` stays cheap
    from .spot_check import run_spot_check as run

    return run(*args, **kwargs)


def report_exit_code(report: dict) -> int:
    from .flags import report_exit_code as exit_code

    return exit_code(report)


__all__ = ["REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "report_exit_code", "run_spot_check"]

"""The tokenize job: `semanticodec-tokenize` and `python jobs/tokenize_audioset.py`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys

from ..errors import Interrupted
from ..fsutil import is_local_url
from ..output.folder import FAILURES_DIR, RETRYABLE_DIR
from ..tokenize.config import TokenizeConfig
from .common import (
    debug_requested,
    join_url,
    parse_config,
    print_summary,
    prog_name,
    ray_session,
    run_cli,
    say,
    setup_logging,
    synthetic_banner,
)
from .spot_check import print_flags

log = logging.getLogger(__name__)

FAILURE_EXAMPLES = 3  # failure reasons shown per error type after a run

TOKENIZE_DESCRIPTION = r"""Tokenize an audio collection into SemantiCodec Parquet token shards.

  python jobs/tokenize_audioset.py --source /data/clips --output out/tokens
  semanticodec-tokenize --source s3://bucket/audio/ --output s3://bucket/tokens/run1
  ray job submit --address http://HEAD:8265 --working-dir . -- \
      python jobs/tokenize_audioset.py --output s3://bucket/tokens/run1 --num-gpus 8

Run directly, it starts an embedded local Ray; under `ray job submit` ($RAY_ADDRESS set) it
joins the cluster. Rerunning the same command resumes: only inputs not yet committed are
processed (and inputs that hit transient errors are retried). --overwrite starts afresh.
"""


# --- the tokenize job -------------------------------------------------------------------------

def parse_tokenize_args(argv: list[str] | None = None) -> TokenizeConfig:
    return parse_config(TokenizeConfig, argv, TOKENIZE_DESCRIPTION, prog=prog_name("tokenize_audioset.py"))


def tokenize_main(argv: list[str] | None = None) -> int:
    """Entry point of `semanticodec-tokenize` and `python jobs/tokenize_audioset.py`."""
    return run_cli(lambda: _tokenize(argv), argv)


def _tokenize(argv: list[str] | None) -> int:
    from ..tokenize.plan import plan_run
    from ..tokenize.run import run_tokenize

    config = parse_tokenize_args(argv)
    setup_logging()
    stdout = sys.stdout
    # every user mistake we can see ends in the plan, before Ray starts; the plan holds the writer lease
    with plan_run(config) as plan:
        if plan.synthetic:
            synthetic_banner()
        needs_ray = not plan.nothing_to_do or config.qa_samples > 0  # a rerun with nothing to do starts none
        try:
            with ray_session(config.ray_num_cpus, debug_requested(argv)) if needs_ray else contextlib.nullcontext():
                run_record = run_tokenize(config, plan, progress=not config.quiet)
                plan.release()
                retryable = _report(config, plan, run_record, stdout)
        except (Interrupted, KeyboardInterrupt):  # counted once Ray has stopped: no write task is left to commit
            raise Interrupted(plan.shards_committed()) from None
    if retryable:
        explain_failures(config, RETRYABLE_DIR, f"{retryable} inputs hit transient errors",
                         run_record["run"].get("retryable_types") or {})
        say(f"{retryable} inputs hit transient errors (see {join_url(config.output, RETRYABLE_DIR)}/); "
             "rerun the same command to retry them")
        missing = (run_record["run"].get("retryable_types") or {}).get("FileNotFoundError", 0)
        if missing:
            say(f"{missing} of them do not exist; if they will not appear (clips never downloaded), rerun with "
                 "--missing-inputs fail to record them as failures")
        return config.retryable_exit_code  # EXIT_RETRYABLE, or what the user chose (0 for a RayJob)
    return 0


def _report(config: TokenizeConfig, plan, run_record: dict, stdout) -> int:
    """The summary on stdout, the failures explained, QA and the push when asked; the retryable count."""
    if plan.nothing_to_do:
        say("nothing left to do: every input of the source is accounted for in the output")
    summary = run_summary(config, run_record, plan.synthetic, plan.planning_s if plan.nothing_to_do else None)
    print_summary(summary, stdout)
    if summary["failed"]:
        explain_failures(config, FAILURES_DIR, f"{summary['failed']} inputs failed", summary["failures_by_type"])
    if config.qa_samples > 0:
        _tokenize_qa(config)
    if config.push_to_hub:
        _push(config)
    return summary["retryable"]


def _push(config: TokenizeConfig) -> None:
    from ..output.hub_push import push_to_hub

    url = push_to_hub(config.output, config.push_to_hub, storage_options=config.storage_options())
    say(f"pushed to {url}")


def run_summary(config: TokenizeConfig, run_record: dict, synthetic: bool, idle_s: float | None = None) -> dict:
    """The job's summary from the run record; `idle_s`: this invocation's time when it had nothing to
    do (the run record's run is an earlier one, whose throughput is not this one's)."""
    counts, totals = run_record["counts"], run_record["totals"]
    return {
        "output": config.output, "inputs": counts["inputs"], "tokenized": counts["tokenized"],
        "failed": counts["failed"], "retryable": counts.get("retryable", 0),
        "failures_by_type": counts["failures_by_type"],
        "audio_hours": round(totals["audio_hours"], 4), "tokens": totals["tokens"],
        "wall_time_s": round(run_record["run"]["wall_time_s"] if idle_s is None else idle_s, 1),
        "audio_seconds_per_second": round(totals["audio_seconds_per_second"] if idle_s is None else 0.0, 2),
        "synthetic_weights": run_record["codec"].get("synthetic_weights", synthetic),
    }


def explain_failures(config: TokenizeConfig, kind: str, header: str, by_type: dict[str, int]) -> None:
    """On stderr: the count per error type of the rows in OUT/<kind>/, with the first few reasons."""
    say(f"{header}; see {join_url(config.output, kind)}/")
    examples = failure_examples(config.output, config.storage_options(), kind, set(by_type))
    for error_type, count in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])):
        say(f"  {error_type}: {count}")
        for id_, message in examples.get(error_type, []):
            say(f"    {id_}: {' '.join(str(message).split())[:200]}")


def failure_examples(output: str, storage_options: dict, kind: str, types: set[str],
                     per_type: int = FAILURE_EXAMPLES) -> dict[str, list[tuple[str, str]]]:
    """error_type → its first `per_type` (id, message) pairs in the committed shards of OUT/<kind>/,
    reading shards only until every type in `types` has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..output.folder import OutputFolder

    folder = OutputFolder(output, storage_options or None)
    examples: dict[str, list] = {}
    try:
        for path in folder.committed_files(kind):
            table = pq.read_table(path, columns=["id", "error_type", "message"], filesystem=folder.fs)
            for row in table.to_pylist():
                found = examples.setdefault(row["error_type"], [])
                if len(found) < per_type:
                    found.append((row["id"], row["message"]))
            if all(len(examples.get(t, ())) >= per_type for t in types):
                break
    except (OSError, pa.ArrowException) as error:  # the examples are a courtesy; the counts are printed anyway
        log.warning("could not read failure examples: %s", error)
    return examples


def _tokenize_qa(config: TokenizeConfig) -> None:
    """The QA spot check on the same Ray (decoder actors on GPUs when there are any)."""
    from ..report.config import SpotCheckConfig
    from ..report.ray_decode import decode_with_ray
    from ..report.spot_check import run_spot_check
    from ..sources.listing import listing_root

    local = is_local_url(config.output)
    report_dir = config.qa_report or (join_url(config.output, "qa_report") if local else "qa_report")
    s3 = {f.name: getattr(config, f.name) for f in dataclasses.fields(SpotCheckConfig)
          if f.name in ("s3_endpoint_url", "s3_region", "aws_profile", "s3_anon")}
    # the originals are where this run read them: the source's folder, --audio-root, --allow-uri-prefix
    read_from = [listing_root(config.source, config.storage_options()), *filter(None, [config.audio_root]),
                 *(config.allow_uri_prefix or ())]
    qa = SpotCheckConfig(tokens=config.output, report=report_dir, samples=config.qa_samples, allow_uri_prefix=read_from,
                         checkpoint=config.checkpoint, ddim_steps=config.qa_ddim_steps, **s3)
    report = run_spot_check(qa, decode_fn=decode_with_ray, progress=not config.quiet)
    print_flags(report)
    say(f"QA report: {os.path.abspath(os.path.join(report_dir, 'index.html'))}")

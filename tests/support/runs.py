"""Start a tokenize run the way the job does: `plan_run`, then `run_tokenize` with that plan."""

from __future__ import annotations

from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.plan import plan_run
from pipeline.tokenize.run import run_tokenize


def tokenize(config: TokenizeConfig, *, progress: bool = False) -> dict:
    """Plan and run `config` (Ray must be running unless the plan finds nothing to do); the run record."""
    with plan_run(config) as plan:
        return run_tokenize(config, plan, progress=progress)

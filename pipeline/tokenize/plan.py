"""A run's plan, made on the driver before Ray starts (`plan_run`): every check `preflight` makes
(the settings, the source opened and listed, the output, the checkpoint resolved), then the output's
side: the writer lease taken, what the output holds read from its shards' footers, whether it may be
resumed with these settings and weights (its fingerprint), and the units left to read. The plan
writes nothing (but the lease file, and the removal of rows a killed run left superseded): the
output is cleared (--overwrite) and its fingerprint recorded only when the run starts, after the
cluster's checks (`RunPlan.start`). `run_tokenize(config, plan)` then does what the plan says and
resolves nothing again.

So a rerun with other settings is refused before Ray starts, and a rerun with nothing left to do is
known here: it needs no Ray. The plan holds the writer lease until it is released (a `with` block).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Self

import pyarrow as pa

from ..codecs.semanticodec.variants import SemantiCodecVariant
from ..errors import OutputError
from ..fsutil import options_for
from ..output.folder import FAILURES_DIR, RETRYABLE_DIR, TOKENS_DIR, CommittedKeys, OutputFolder
from ..output.identity import codec_identity, run_fingerprint
from ..output.lease import WriterLease
from ..output.schema import TOKENS_SCHEMA_VERSION
from ..sources.work_list import WorkList
from .config import TokenizeConfig
from .preflight import preflight

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """What a run will do. `units` empty: nothing is left to read."""

    source: object
    units: WorkList  # the units left to read (inputs already complete left out), as columns
    checkpoint: str  # resolved: a folder, a URL, hf://repo@commit
    synthetic: bool
    output: OutputFolder
    lease: WriterLease
    keys: CommittedKeys  # what the output held (superseded rows removed, the failures to retry marked)
    complete: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))  # inputs fully accounted for
    partial: set[str] = field(default_factory=set)  # inputs with some chunks committed
    previous: dict[str, str] = field(default_factory=dict)  # id or unit key -> the shard of its row being retried
    limit_ids: set[str] | None = None  # --limit over containers: the ids to keep
    resumed: bool = False
    overwrite: bool = False  # the output is cleared when the run starts
    fingerprint: dict = field(default_factory=dict)  # the run's settings that a resume must share (`identity.py`)
    shards_at_plan: int = 0  # the shards the output held once planned
    planning_s: float = 0.0

    @property
    def nothing_to_do(self) -> bool:
        return not self.units and not self.overwrite

    @property
    def total_inputs(self) -> int | None:
        """Inputs left to read, when known before reading (no containers, no --limit over them)."""
        return len(self.units) if self.limit_ids is None and not self.units.containers else None

    def start(self) -> None:
        """The run's first writes, once the cluster's checks passed: the output cleared (--overwrite),
        the fingerprint recorded on the output's first run."""
        if self.overwrite:
            self.output.clear()
        self.output.check_fingerprint(self.fingerprint, self.keys.provenance)

    def shards_committed(self) -> int:
        """The shards committed since the plan was made (what a Ctrl-C message counts)."""
        return committed_shards(self.output) - self.shards_at_plan

    def release(self) -> None:
        """Release the writer lease (safe to repeat)."""
        self.lease.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def plan_run(config: TokenizeConfig) -> RunPlan:
    """Check `config`, resolve what it names, and find what is left to do. Raises a UserError (one line,
    with the fix) for the first problem found. The plan holds the output's writer lease."""
    started = time.monotonic()
    resolved = preflight(config)
    storage_options = config.storage_options()
    output = OutputFolder(config.output, storage_options or None)
    variant = SemantiCodecVariant(config.token_rate, config.semantic_vocab_size)
    fingerprint = run_fingerprint(variant=variant.name, dtype=config.dtype, chunk_windows=config.chunk_windows,
                                  tokens_schema_version=TOKENS_SCHEMA_VERSION)
    lease = WriterLease(output)
    lease.acquire()
    try:
        if config.overwrite:  # cleared once the run starts (`run.py`): a refusal until then leaves it as it was
            keys = CommittedKeys()
        else:
            keys = output.committed_keys()
            # a check that writes nothing: the run records the fingerprint once it starts
            output.check_fingerprint(fingerprint, keys.provenance, record=False)
            if keys.provenance:  # resuming onto tokens: the weights must be the same (by hash, not location)
                check_same_weights(codec_identity(keys.provenance), resolved.checkpoint, config, storage_options)
        plan = _plan(config, resolved, output, lease, keys)
        plan.fingerprint = fingerprint
        plan.shards_at_plan = 0 if config.overwrite else committed_shards(output)
    except BaseException:
        lease.release()
        raise
    plan.planning_s = time.monotonic() - started
    log.info("%s source %s: %d units to read (%d inputs already complete); planned in %.1f s",
             plan.source.kind, config.source, len(plan.units), len(plan.complete), plan.planning_s)
    return plan


def _plan(config: TokenizeConfig, resolved, output: OutputFolder, lease: WriterLease, keys: CommittedKeys) -> RunPlan:
    resumed = not keys.empty
    drop_superseded(output, keys)  # rows a run killed mid-way superseded and left
    previous = dict(keys.retryable)  # retryable rows are retried by every run, superseded by its rows
    if config.retry_failures is not None:
        retried = select_failures(output.failure_rows(), config.retry_failures)
        keys.retry(retried)
        previous.update((row["id"], row["shard"]) for row in retried)
        log.info("retrying %d recorded failures (%s)", len(retried), config.retry_failures or "all")
    units, limit_ids = resolved.units, None
    if config.limit is not None:
        if not units.containers:
            units = units.head(config.limit)
        else:
            limit_ids = _first_ids(resolved.source, units, config.limit)
    complete, partial = keys.progress()
    partial = set(partial.to_pylist())  # a few inputs: those a killed run left midway
    units = units.without_keys(complete)
    return RunPlan(resolved.source, units, resolved.checkpoint, resolved.synthetic, output, lease, keys,
                   complete, partial, previous, limit_ids, resumed, config.overwrite)


def drop_superseded(output: OutputFolder, keys: CommittedKeys) -> None:
    """Remove the void rows `keys` knows of (the supersede rule, `output/folder.py`); keep its shard count."""
    removed = output.drop_superseded(keys.void)
    keys.failure_files -= sum(shard.startswith(f"{FAILURES_DIR}/") for shard in removed)
    keys.void = {}


def committed_shards(output: OutputFolder) -> int:
    """How many shards the output holds (one listing per folder)."""
    return sum(len(output.committed_files(kind)) for kind in (TOKENS_DIR, FAILURES_DIR, RETRYABLE_DIR))


def select_failures(rows: list[dict], selectors: str) -> list[dict]:
    """The failure rows `--retry-failures` names: all (`selectors` empty), or those whose error
    type or stage is one of the comma-separated `selectors`."""
    wanted = {name.strip() for name in selectors.split(",") if name.strip()}
    return [row for row in rows if not wanted or row["error_type"] in wanted or row["stage"] in wanted]


def check_same_weights(expected_identity: dict, checkpoint: str, config, storage_options: dict) -> None:
    """Refuse, on the driver and before any work, to resume an output with other weights."""
    from ..codecs.semanticodec.checkpoint import encoder_file_hashes

    hashes = encoder_file_hashes(checkpoint, config.token_rate, config.semantic_vocab_size,
                                 storage_options=options_for(checkpoint, storage_options) or None)
    if hashes != expected_identity.get("files"):
        changed = ", ".join(sorted(k for k in hashes if hashes[k] != (expected_identity.get("files") or {}).get(k)))
        raise OutputError(
            f"{config.output} was tokenized with other weights ({changed} SHA-256 differ from {checkpoint}); "
            "resuming would mix two corpora. Use the original --checkpoint, another --output, or --overwrite")


def _first_ids(source, units: WorkList, limit: int) -> set[str]:
    """For sources whose ids are only known after reading (tar, Parquet): the first `limit` ids."""
    ids: list[str] = []
    for unit in units:
        for item in source.read_unit(unit):
            ids.append(item.id)
            if len(ids) >= limit:
                return set(ids)
    return set(ids)

"""The tokenize run on Ray Data: the plan's units → read+decode (CPU tasks) → encode (actor pool,
one per GPU) → write shards (tasks) → the run record. `run_tokenize(config, plan)` does what
`plan.plan_run` found to do; it needs a running Ray (the job script starts or joins one) unless the
plan has nothing to do. The stages are the adapters of `stages.py`; this module only wires them and
keeps the books.

A stage that meets an error which is not an input's own raises a `Fault`; Ray Data then stops the
dataset and the fault reaches the job (one line, exit 70): what was committed stays, nothing is
written off. Ray itself still retries what it retries (a lost worker, a restarted encoder).
"""

from __future__ import annotations

import logging
import os
import time
import warnings

from ..codecs.semanticodec.variants import SEGMENT_SAMPLES
from ..errors import Interrupted
from ..fsutil import options_for
from ..output.lease import WriterLease
from ..output.run_record import output_counts, run_record_from_counts
from ..output.summary import ShardSummary
from .cluster import ClusterView, check_cluster_paths
from .config import TokenizeConfig
from .encoder_plan import EncoderResources, EncoderSpec, encoder_resources
from .id_set import IdSet
from .plan import RunPlan, drop_superseded

log = logging.getLogger(__name__)

BUFFERED_BATCHES = 3  # encoder batches of decoded audio Ray Data may hold per encoder actor
# Rows resampled on the encoder hold spans at the source rate, up to 12x a 16 kHz row at 192 kHz:
# with 8x, such input still keeps 2 batches per actor (48 kHz keeps 8).
ENCODER_RESAMPLED_ROW_FACTOR = 8
# Write tasks reserve no CPU: with every CPU held by the encoders and the decode tasks (2 CPUs: one
# encoder, one decode task), Ray Data started the first write task only once decoding had ended, and
# nothing was committed until then. They are light (Parquet encoding, one PUT per shard); at most this
# many run at once per encoder actor.
WRITE_TASKS_PER_ENCODER = 2
# A decode or write task whose worker process dies (a native crash, the OOM killer, a lost node) is
# run again this many times, then the run stops with a Fault (pipeline/faults.py). Ray Data's default
# is without end: an input that crashes its decoder every time would hold the run forever. The
# encoder actor's batches keep Ray Data's default: while a lost node's actor is restarted elsewhere,
# each call to it fails at once, which would spend any small count in a second.
WORKER_DEATH_RETRIES = 3
MAX_WORK_BLOCKS = 1000  # the work list's blocks (each read+decode task takes one unit of a block at a time)


def bound_buffers(context, config: TokenizeConfig, *, encoders: int, batch_rows: int) -> None:
    """Bound the decoded audio Ray Data holds, whatever the inputs' lengths (README, "Memory bounds").

    A decode task's rows are gathered into a block in the task's memory until it reaches the
    block size (128 MiB by default: six long chunks), and its streaming generator pauses with 2
    blocks unread; the executor takes blocks from it as long as the run's object store budget
    lasts, half the object store by default, so a 6 h file sat there whole ahead of the encoder.
    Here a block is one long chunk, and the run's object store use is capped at
    `BUFFERED_BATCHES` encoder batches of the longest rows per encoder actor: the 2 batches in
    flight to each actor and the one being gathered. (At 1 batch Ray Data starves the encoder: a
    run took 7x longer; at 2 it kept pace.) `context`: the dataset's own (`ds.context`)."""
    chunk_bytes = (config.chunk_windows + 1) * SEGMENT_SAMPLES * 4  # a prepared chunk: float32, padded
    row_bytes = chunk_bytes * (1 if config.resample_on == "decode" else ENCODER_RESAMPLED_ROW_FACTOR)
    context.target_max_block_size = chunk_bytes
    limits = context.execution_options.resource_limits
    context.execution_options.resource_limits = limits.copy(
        object_store_memory=max(1, encoders) * BUFFERED_BATCHES * batch_rows * row_bytes)


def run_tokenize(config: TokenizeConfig, plan: RunPlan, *, progress: bool = True) -> dict:
    """Do what `plan` (`plan.plan_run`) left to do; returns the run record. Raises UserError subclasses
    for the user's mistakes and `Interrupted` on Ctrl-C (the shards committed stay; the count is the
    output's, from a listing: a caller that stops Ray after it counts again, `RunPlan.shards_committed`).
    A plan with nothing to do needs no Ray and keeps the run record as it is (unless it is missing or
    behind the output's shards). The plan's writer lease is the caller's to release."""
    started = time.time()
    if plan.nothing_to_do:
        return _finish_idle(config, plan, started)
    cluster = ClusterView.current()
    resources = encoder_resources(config, cluster)  # the cluster's mistakes end here, before any work
    check_cluster_paths(config, cluster, resources.gpus_wanted, plan.checkpoint, plan.units)
    plan.start()
    try:
        return _run(config, plan, started, progress, resources)
    except KeyboardInterrupt:
        raise Interrupted(plan.shards_committed()) from None


def _run(config: TokenizeConfig, plan: RunPlan, started: float, progress: bool, resources: EncoderResources) -> dict:
    total = _consume(_dataset(config, plan, resources), plan.keys, plan.lease, plan.total_inputs, progress) \
        if plan.units else ShardSummary()
    if plan.limit_ids is None:  # every container was read through (--limit may stop one midway)
        void_read_through_containers(plan)
    drop_superseded(plan.output, plan.keys)
    plan.output.refresh_key_index()
    encoder = {"batch_rows": config.max_batch_windows, "num_encoders": resources.max_actors,
               "device": resources.device}
    return _finish(config, plan, total, encoder, time.time() - started)


def void_read_through_containers(plan: RunPlan) -> None:
    """A container (tar shard, Parquet file) with a row of its own being retried (a transient error
    after its last member) that this run read through without a new row of it or of its inputs (all
    of them were complete) is accounted for: its old row, which nothing superseded, goes too (else
    every rerun would report it retryable again)."""
    for unit in plan.units.container_units():
        shard = plan.previous.get(unit.key)
        if shard is not None and plan.keys.still_counted(shard, unit.key):
            log.info("%s was read through with nothing left to commit: its earlier row in %s goes", unit.key, shard)
            plan.keys.void_row(shard, unit.key)


def skip_sets(plan: RunPlan) -> tuple[IdSet, set, set]:
    """What every read+decode task must know of the output (complete ids, committed chunks, partial
    ids), and no more: single inputs already complete are left out of the units, so the complete ids
    are sent only when containers are read (their inputs are known once read), as an `IdSet` (16
    bytes an id, one copy per node), and the committed chunks only of the partial inputs."""
    complete = IdSet.of(plan.complete.to_pylist() if plan.units.containers else ())
    return complete, plan.keys.chunk_keys(plan.partial) if plan.partial else set(), plan.partial


def _dataset(config: TokenizeConfig, plan: RunPlan, resources: EncoderResources):
    """The plan's units → read+decode → encode → write, as a Ray Dataset of write summaries."""
    import ray

    from ..codecs.semanticodec.variants import SemantiCodecVariant
    from .stages import EncoderActor, ReadDecode, write_batch

    variant = SemantiCodecVariant(config.token_rate, config.semantic_vocab_size)
    spec = EncoderSpec(plan.checkpoint, config.token_rate, config.semantic_vocab_size, resources.device,
                       config.dtype, config.max_batch_windows,
                       options_for(plan.checkpoint, config.storage_options()) or None)
    # Each row holds at least one 10.24 s window, so batches of `max_batch_windows` rows fill every
    # forward pass but the last of a batch (rows of long files hold up to `chunk_windows` windows).
    batch_rows = config.max_batch_windows
    # A run with fewer batches than write tasks allowed is no mistake (Ray Data says it is, once per run).
    warnings.filterwarnings("ignore", message=r"The maximum number of concurrent tasks for 'MapBatches\(write_batch\)'",
                            category=UserWarning)
    # `max_retries` has no named parameter in Ray 2.60 (the locked version): it goes through
    # `**ray_remote_args`, which Ray deprecates for 2.64. Moving to a later Ray must carry the bound over.
    warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated")
    # A stage's own exception reaches the driver (a Fault, an OutputError), not Ray Data's wrapper.
    ray.data.DataContext.get_current().raise_original_map_exception = True
    skip_ref = ray.put(skip_sets(plan))
    ds = ray.data.from_arrow(plan.units.blocks(MAX_WORK_BLOCKS))
    bound_buffers(ds.context, config, encoders=resources.max_actors, batch_rows=batch_rows)
    ds = ds.map_batches(ReadDecode(plan.source, variant, skip_ref, chunk_windows=config.chunk_windows,
                                   max_duration_s=config.max_duration_s, limit_ids=plan.limit_ids,
                                   resample=config.resample_on == "decode"),
                        batch_size=1, batch_format="pyarrow",
                        # Ray's default (a task's worker is reused without limit), stated: Ray Data
                        # fuses a task stage into the actor stage after it when their options are
                        # equal, which would decode inside the encoder actors
                        max_calls=0, max_retries=WORKER_DEATH_RETRIES)
    ds = ds.map_batches(
        EncoderActor,
        fn_constructor_kwargs={"spec": spec, "torch_threads": resources.torch_threads,
                               "inject_device_error_once": os.environ.get("PIPELINE_INJECT_DEVICE_ERROR_ONCE")},
        batch_size=batch_rows, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=resources.min_actors, max_size=resources.max_actors),
        num_gpus=resources.gpus_per_actor, num_cpus=resources.cpus_per_actor,
    )
    return ds.map_batches(write_batch, batch_size=config.rows_per_file, batch_format="pyarrow",
                          num_cpus=0, max_retries=WORKER_DEATH_RETRIES,
                          compute=ray.data.TaskPoolStrategy(size=WRITE_TASKS_PER_ENCODER * resources.max_actors),
                          fn_kwargs={"output": plan.output,
                                     "previous_ref": ray.put(plan.previous) if plan.previous else None})


def _finish(config: TokenizeConfig, plan: RunPlan, run: ShardSummary, encoder: dict, wall_time_s: float) -> dict:
    """Write the run record (this run added to the earlier ones) and the dataset card."""
    from ..output.dataset_card import write_dataset_card

    run_record = run_record_from_counts(config=config, source_kind=plan.source.kind, keys=plan.keys, run=run,
                                      encoder=encoder, wall_time_s=wall_time_s, resumed=plan.resumed,
                                      earlier=plan.output.read_run_record())
    plan.output.write_run_record(run_record)
    write_dataset_card(config.output, config.storage_options() or None)
    return run_record


def _finish_idle(config: TokenizeConfig, plan: RunPlan, started: float) -> dict:
    """Nothing was left to do: the run record stays as it is, unless it is missing or behind the output's
    shards (a run killed after its last commit), when it is written with a record of this run."""
    run_record = plan.output.read_run_record()
    if run_record is not None and run_record.get("counts") == output_counts(plan.keys):
        log.info("nothing left to do: every input of the source is accounted for in %s", config.output)
        return run_record
    log.info("the output's manifest is %s: writing it", "missing" if run_record is None else "behind its shards")
    encoder = {"batch_rows": config.max_batch_windows, "num_encoders": 0, "device": "none"}
    return _finish(config, plan, ShardSummary(), encoder, time.time() - started)


def _consume(ds, keys, lease: WriterLease, total_inputs: int | None, progress: bool) -> ShardSummary:
    """Run the dataset, folding each write summary's keys into `keys`; returns the sum of their counts.
    A progress bar on stderr."""
    from tqdm import tqdm

    total = ShardSummary()
    bar = tqdm(total=total_inputs, desc="tokenizing", unit="input", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    try:
        for row in ds.iter_rows():
            lease.check()
            summary = ShardSummary.from_row(row)
            keys.add_summary(summary)
            total += summary.without_keys()
            bar.update(summary.inputs_done)
            elapsed = max(time.time() - t0, 1e-9)
            bar.set_postfix_str(f"{total.audio_s / 3600:.3f} audio-h, {total.audio_s / elapsed:.2f} audio-h/h, "
                                f"{total.failed + total.retryable} failed", refresh=False)
    finally:
        bar.close()
    return total

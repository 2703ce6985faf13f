"""The tokenize run on Ray Data: source → read+decode (CPU tasks) → encode (actor pool, one per
GPU) → write shards (tasks) → manifest. `run_tokenize` is the whole job minus argument parsing;
it needs a running Ray (the job script starts or joins one). The stages are the adapters of
`stages.py`; this module only wires them and keeps the books.

A stage that meets an error which is not an input's own raises a `Fault`; Ray Data then stops the
dataset and the fault reaches the job (one line, exit 70): what was committed stays, nothing is
written off. Ray itself still retries what it retries (a lost worker, a restarted encoder).
"""

from __future__ import annotations

import logging
import os
import pickle
import time

from .. import __version__
from ..codecs.semanticodec.variants import SEGMENT_SAMPLES
from ..errors import Interrupted, OutputError
from ..fsutil import options_for
from ..output.folder import FAILURES_DIR, OutputFolder
from ..output.identity import codec_identity, run_fingerprint
from ..output.lease import WriterLease
from ..output.run_manifest import manifest_from_counts, run_totals
from ..output.schema import TOKENS_SCHEMA_VERSION
from ..sources import dedupe_units, open_source
from .cluster import ClusterView, check_cluster_paths
from .config import TokenizeConfig
from .encoder_plan import EncoderResources, EncoderSpec, encoder_resources

log = logging.getLogger(__name__)

AUDIOSET_HF = "hf://datasets/agkphysics/AudioSet"
BUFFERED_BATCHES = 3  # encoder batches of decoded audio Ray Data may hold per encoder actor
# Rows resampled on the encoder hold spans at the source rate, up to 12x a 16 kHz row at 192 kHz:
# with 8x, such input still keeps 2 batches per actor (48 kHz keeps 8).
ENCODER_RESAMPLED_ROW_FACTOR = 8


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


def resolved_checkpoint(config: TokenizeConfig) -> str:
    from ..codecs.semanticodec.synthetic import resolve_checkpoint_location

    return resolve_checkpoint_location(config.checkpoint, config.token_rate, config.semantic_vocab_size)


def open_config_source(config: TokenizeConfig, storage_options: dict) -> tuple[object, list]:
    """The source `config` names, opened with its settings, and its units, deduplicated."""
    source = open_source(config.source, audio_root=config.audio_root, class_labels=config.class_labels,
                         split=source_split(config), storage_options=storage_options,
                         read_retries=config.read_retries, missing_inputs=config.missing_inputs,
                         dedupe=config.dedupe, allow_uri_prefixes=config.allow_uri_prefix or ())
    return source, dedupe_units(source.list_units(), config.dedupe)


def run_tokenize(config: TokenizeConfig, *, progress: bool = True, resolved=None) -> dict:
    """Tokenize `config.source` into `config.output`; returns the manifest. Raises UserError
    subclasses for the user's mistakes and `Interrupted` on Ctrl-C (committed shards stay).
    `resolved`: what `preflight` found (source, units, checkpoint), so nothing is listed twice."""
    started = time.time()
    cluster = ClusterView.current()
    resources = encoder_resources(config, cluster)  # the cluster's mistakes end here, before any work
    checkpoint, units = (resolved.checkpoint, resolved.units) if resolved else (config.checkpoint, ())
    check_cluster_paths(config, cluster, resources.gpus_wanted, checkpoint, units)
    storage_options = config.storage_options()
    output = OutputFolder(config.output, storage_options or None)
    lease = WriterLease(output)
    lease.acquire()
    try:
        if config.overwrite:
            output.clear()
        return _run(config, output, lease, storage_options, started, progress, resolved, resources)
    finally:
        lease.release()


def _run(config, output: OutputFolder, lease: WriterLease, storage_options: dict, started: float,
         progress: bool, resolved, resources: EncoderResources) -> dict:
    import ray

    from ..codecs.semanticodec.variants import SemantiCodecVariant
    from ..output.dataset_card import write_dataset_card
    from .stages import EncoderActor, ReadDecode, write_batch

    variant = SemantiCodecVariant(config.token_rate, config.semantic_vocab_size)
    if resolved is not None:
        source, units, checkpoint = resolved.source, list(resolved.units), resolved.checkpoint
    else:
        checkpoint = resolved_checkpoint(config)
        source, units = open_config_source(config, storage_options)

    before = output.committed_keys()
    resumed = bool(before.chunks or before.failed)
    output.check_fingerprint(run_fingerprint(variant=variant.name, dtype=config.dtype,
                                             chunk_windows=config.chunk_windows,
                                             tokens_schema_version=TOKENS_SCHEMA_VERSION), before.provenance)
    if before.provenance:  # resuming onto tokens: the weights must be the same (by hash, not location)
        check_same_weights(codec_identity(before.provenance), checkpoint, config, storage_options)
    _drop_superseded(output, before)  # rows a run killed mid-way superseded and left
    previous = dict(before.retryable)  # retryable rows are retried by every run, superseded by its rows
    if config.retry_failures is not None:
        retried = select_failures(output.failure_rows(), config.retry_failures)
        before.retry(retried)
        previous.update((row["id"], row["shard"]) for row in retried)
        log.info("retrying %d recorded failures (%s)", len(retried), config.retry_failures or "all")

    limit_ids = None
    if config.limit is not None:
        if all(u.item is not None for u in units):
            units = units[: config.limit]
        else:
            limit_ids = _first_ids(source, units, config.limit)
    complete = before.complete_ids()
    partial = before.partial_ids(complete)
    units = [u for u in units if u.item is None or u.item.id not in complete]
    log.info("%s source %s: %d units to read (%d inputs already complete)", source.kind, config.source,
             len(units), len(complete))

    spec = EncoderSpec(checkpoint, config.token_rate, config.semantic_vocab_size, resources.device, config.dtype,
                       config.max_batch_windows, options_for(checkpoint, storage_options) or None)
    # Each row holds at least one 10.24 s window, so batches of `max_batch_windows` rows fill every
    # forward pass but the last of a batch (rows of long files hold up to `chunk_windows` windows).
    batch_rows = config.max_batch_windows
    run_info = {"pipeline_version": __version__, "batch_size": batch_rows, "max_batch_windows": config.max_batch_windows}
    # A stage's own exception reaches the driver (a Fault, an OutputError), not Ray Data's wrapper.
    ray.data.DataContext.get_current().raise_original_map_exception = True
    summaries: list[dict] = []
    keys = before  # from here on, this run's summaries are folded in as they arrive
    if units:
        skip_ref = ray.put((complete, before.chunks, partial))
        # units travel pickled: an Arrow column of bytes, not Python objects Arrow cannot type
        ds = ray.data.from_items([{"unit": pickle.dumps(u)} for u in units], override_num_blocks=min(len(units), 1000))
        bound_buffers(ds.context, config, encoders=resources.max_actors, batch_rows=batch_rows)
        ds = ds.map_batches(ReadDecode(source, variant, skip_ref, chunk_windows=config.chunk_windows,
                                       max_duration_s=config.max_duration_s, limit_ids=limit_ids,
                                       resample=config.resample_on == "decode"),
                            batch_size=1, batch_format="pyarrow",
                            # Ray's default (a task's worker is reused without limit), stated: Ray Data
                            # fuses a task stage into the actor stage after it when their options are
                            # equal, which would decode inside the encoder actors
                            max_calls=0)
        ds = ds.map_batches(
            EncoderActor,
            fn_constructor_kwargs={"spec": spec, "torch_threads": resources.torch_threads,
                                   "inject_device_error_once": os.environ.get("PIPELINE_INJECT_DEVICE_ERROR_ONCE")},
            batch_size=batch_rows, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=resources.min_actors, max_size=resources.max_actors),
            num_gpus=resources.gpus_per_actor, num_cpus=resources.cpus_per_actor,
        )
        ds = ds.map_batches(write_batch, batch_size=config.rows_per_file, batch_format="pyarrow",
                            fn_kwargs={"output": output, "run_info": run_info,
                                       "previous_ref": ray.put(previous) if previous else None})
        total_inputs = len(units) if limit_ids is None and all(u.item is not None for u in units) else None
        summaries = _consume(ds, keys, lease, total_inputs, progress)
        _drop_superseded(output, keys)
    manifest = manifest_from_counts(
        config=config, source_kind=source.kind, keys=keys, run=run_totals(summaries),
        encoder={"batch_rows": batch_rows, "num_encoders": resources.max_actors, "device": resources.device},
        wall_time_s=time.time() - started, resumed=resumed,
    )
    output.write_manifest(manifest)
    write_dataset_card(config.output, storage_options or None)
    return manifest


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


def _consume(ds, keys, lease: WriterLease, total_inputs: int | None, progress: bool) -> list[dict]:
    """Run the dataset, folding each write summary into `keys`; a progress bar on stderr."""
    from tqdm import tqdm

    summaries: list[dict] = []
    bar = tqdm(total=total_inputs, desc="tokenizing", unit="input", disable=not progress, dynamic_ncols=True)
    audio_s, failed, t0 = 0.0, 0, time.time()
    try:
        for summary in ds.iter_rows():
            lease.check()
            summaries.append(summary)
            keys.add_summary(summary)
            audio_s += float(summary["audio_s"])
            failed += int(summary["failed"]) + int(summary["retryable"])
            bar.update(int(summary["inputs_done"]))
            elapsed = max(time.time() - t0, 1e-9)
            bar.set_postfix_str(f"{audio_s / 3600:.3f} audio-h, {audio_s / elapsed:.2f} audio-h/h, "
                                f"{failed} failed", refresh=False)
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(sum(int(s["shards"]) for s in summaries)) from None
    bar.close()
    return summaries


def _drop_superseded(output: OutputFolder, keys) -> None:
    """Remove the void rows `keys` knows of (the supersede rule, `output/folder.py`); keep its shard count."""
    removed = output.drop_superseded(keys.void)
    keys.failure_files -= sum(shard.startswith(f"{FAILURES_DIR}/") for shard in removed)
    keys.void = {}


def select_failures(rows: list[dict], selectors: str) -> list[dict]:
    """The failure rows `--retry-failures` names: all (`selectors` empty), or those whose error
    type or stage is one of the comma-separated `selectors`."""
    wanted = {name.strip() for name in selectors.split(",") if name.strip()}
    return [row for row in rows if not wanted or row["error_type"] in wanted or row["stage"] in wanted]


def _first_ids(source, units, limit: int) -> set[str]:
    """For sources whose ids are only known after reading (tar, Parquet): the first `limit` ids."""
    ids: list[str] = []
    for unit in units:
        for item in source.read_unit(unit):
            ids.append(item.id)
            if len(ids) >= limit:
                return set(ids)
    return set(ids)


def source_split(config) -> str | None:
    """The HF dataset split to read: the one given, or AudioSet's balanced train split by default."""
    return config.split or ("bal_train" if config.source.startswith(AUDIOSET_HF) else None)

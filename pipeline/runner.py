"""The tokenization pipeline on Ray Data: source → read+decode (CPU tasks) → encode (actor pool,
one per GPU) → write shards (tasks) → manifest. `run_tokenize` is the whole job minus argument
parsing; it needs a running Ray (the job script starts or joins one).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from . import __version__
from .fsutil import options_for
from .output import OutputFolder
from .schema import MANIFEST_SCHEMA_VERSION
from .sources import open_source
from .stages.decode import DEFAULT_CHUNK_WINDOWS, DEFAULT_MAX_DURATION_S, decode_item
from .stages.encode import EncodeStage, rows_to_batch
from .stages.write import write_batch

log = logging.getLogger(__name__)


@dataclass
class TokenizeConfig:
    source: str
    output: str
    checkpoint: str = "hf://haoheliu/SemantiCodec"
    token_rate: int = 100
    semantic_vocab_size: int = 16384
    batch_size: int = 16  # rows (clips or chunks) per encoder call
    max_batch_windows: int = 16  # 10.24 s windows per forward pass
    num_gpus: int | tuple[int, int] | None = None  # None: every GPU the cluster has; (min, max): autoscaling pool
    num_cpu_encoders: int = 1  # encoder actors when there is no GPU
    cpus_per_encoder: int | None = None  # None: GPU actors 1; CPU actors share the node, leaving one CPU for decode
    dtype: str = "float32"
    limit: int | None = None
    rows_per_file: int = 256
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    overwrite: bool = False
    audio_root: str | None = None
    class_labels: str | None = None
    split: str | None = None
    storage_options: dict = field(default_factory=dict)


def _read_and_decode(unit: dict, source, skip_ref, limit_ids, chunk_windows: int, max_duration_s: float):
    """One unit → decoded chunk rows, skipping inputs already committed (resume)."""
    import ray

    complete_ids, committed_chunks = _cached_get(skip_ref, ray)
    for item in source.read_unit(unit):
        if item["id"] in complete_ids or (limit_ids is not None and item["id"] not in limit_ids):
            continue
        for row in decode_item(item, chunk_windows=chunk_windows, max_duration_s=max_duration_s):
            if (row["id"], row["chunk_index"]) not in committed_chunks or row["error_type"]:
                yield row


_SKIP_CACHE: dict = {}


def _cached_get(ref, ray):
    key = ref.hex()
    if key not in _SKIP_CACHE:
        _SKIP_CACHE.clear()
        _SKIP_CACHE[key] = ray.get(ref)
    return _SKIP_CACHE[key]


def _encoder_resources(config: TokenizeConfig) -> dict:
    import ray

    if isinstance(config.num_gpus, tuple):  # an autoscaling actor pool of min..max GPU encoders
        return {"concurrency": config.num_gpus, "num_gpus": 1, "num_cpus": config.cpus_per_encoder or 1,
                "device": "cuda", "threads": None}
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if config.num_gpus is None else config.num_gpus
    if gpus == 0:
        log.warning("no GPU in the cluster now: encoding on CPU actors. On an autoscaling cluster whose GPU "
                    "workers start at zero, pass --num-gpus N to request N GPU encoder actors.")
    if gpus > 0:
        return {"concurrency": gpus, "num_gpus": 1, "num_cpus": config.cpus_per_encoder or 1, "device": "cuda",
                "threads": None}
    # CPU encoders: the LSTM is memory-bound, so one actor with all cores beats several with one
    # each (they would each stream the weights). Its Ray reservation leaves a CPU for decode tasks,
    # which are light and interleave with the encoder's threads.
    per_actor = max(1, int(resources.get("CPU", 1)) // config.num_cpu_encoders)
    threads = config.cpus_per_encoder or per_actor
    return {"concurrency": config.num_cpu_encoders, "num_gpus": 0, "num_cpus": config.cpus_per_encoder or max(1, per_actor - 1),
            "device": "cpu", "threads": threads}


def run_tokenize(config: TokenizeConfig, progress: bool = True) -> dict:
    import ray
    from tqdm import tqdm

    started = time.time()
    output = OutputFolder(config.output, config.storage_options or None)
    if config.overwrite:
        output.clear()
    source = open_source(config.source, audio_root=config.audio_root, class_labels=config.class_labels,
                         split=config.split, storage_options=config.storage_options)
    units = source.list_units()
    limit_ids = None
    if config.limit is not None and source.units_have_ids:
        units = units[: config.limit]
    elif config.limit is not None:
        limit_ids = _first_ids(source, units, config.limit)
    keys = output.committed_keys()
    committed_chunks, _, failed = keys
    complete = output.complete_ids(keys)
    resumed = bool(committed_chunks or failed)
    if source.units_have_ids:
        units = [u for u in units if u["id"] not in complete]
    log.info("%s source %s: %d units to read (%d inputs already complete)", source.kind, config.source, len(units), len(complete))

    resources = _encoder_resources(config)
    codec_kwargs = {
        "checkpoint": config.checkpoint, "token_rate": config.token_rate,
        "semantic_vocab_size": config.semantic_vocab_size, "device": resources["device"], "dtype": config.dtype,
        "max_batch_windows": config.max_batch_windows,
        "storage_options": options_for(config.checkpoint, config.storage_options) or None,
    }
    run_info = {"pipeline_version": __version__, "batch_size": config.batch_size,
                "max_batch_windows": config.max_batch_windows}
    summaries = []
    if units:
        skip_ref = ray.put((complete, committed_chunks))
        ds = ray.data.from_items(units, override_num_blocks=min(len(units), 1000))
        ds = ds.flat_map(
            _read_and_decode,
            fn_kwargs={"source": source, "skip_ref": skip_ref, "limit_ids": limit_ids,
                       "chunk_windows": config.chunk_windows, "max_duration_s": config.max_duration_s},
        )
        ds = ds.map_batches(
            EncodeStage,
            fn_constructor_kwargs={"codec_kwargs": codec_kwargs, "torch_threads": resources["threads"]},
            batch_size=config.batch_size,
            concurrency=resources["concurrency"],
            num_gpus=resources["num_gpus"],
            num_cpus=resources["num_cpus"],
        )
        ds = ds.map_batches(write_batch, batch_size=config.rows_per_file,
                            fn_kwargs={"output": output, "run_info": run_info})
        bar = tqdm(desc="tokenized", unit="row", disable=not progress)
        for summary in ds.iter_rows():
            summaries.append(summary)
            bar.update(summary["token_rows"] + summary["failed"])
            bar.set_postfix(failed=sum(s["failed"] for s in summaries))
        bar.close()
    manifest = build_manifest(config, source, output, summaries, started, resumed, resources)
    output.write_manifest(manifest)
    return manifest


def _first_ids(source, units, limit: int) -> set[str]:
    """For sources whose ids are only known after reading (tar, Parquet): the first `limit` ids."""
    ids: list[str] = []
    for unit in units:
        for item in source.read_unit(unit):
            ids.append(item["id"])
            if len(ids) >= limit:
                return set(ids)
    return set(ids)


def build_manifest(config, source, output, summaries, started, resumed, resources) -> dict:
    """The run summary, counted from the committed output (so a resumed run reports the whole corpus)."""
    import pyarrow.parquet as pq

    fs, _ = output.filesystem()
    token_files = output.committed_files("tokens")
    failure_files = output.committed_files("failures")
    ids, rows, pairs, audio_s, provenance = set(), 0, 0, 0.0, None
    for path in token_files:
        table = pq.read_table(path, columns=["id", "num_frames", "duration_s"], filesystem=fs)
        ids.update(table["id"].to_pylist())
        rows += len(table)
        pairs += sum(table["num_frames"].to_pylist())
        audio_s += sum(table["duration_s"].to_pylist())
        if provenance is None:
            meta = pq.read_metadata(path, filesystem=fs).metadata or {}
            provenance = json.loads(meta.get(b"pipeline.provenance", b"{}"))
    failed_ids, failure_types = set(), Counter()
    for path in failure_files:
        table = pq.read_table(path, columns=["id", "error_type"], filesystem=fs)
        failed_ids.update(table["id"].to_pylist())
        failure_types.update(table["error_type"].to_pylist())
    wall = time.time() - started
    this_run_audio = sum(s["audio_s"] for s in summaries)
    this_run_rows = sum(s["token_rows"] + s["failed"] for s in summaries)
    codec = {k: v for k, v in (provenance or {}).items() if k not in ("pipeline_version", "batch_size", "max_batch_windows")}
    if not codec:
        codec = {"codec": "semanticodec", "variant": f"semanticodec-r{config.token_rate}-v{config.semantic_vocab_size}",
                 "token_rate": config.token_rate, "semantic_vocab_size": config.semantic_vocab_size,
                 "acoustic_vocab_size": 8192, "checkpoint": config.checkpoint, "files": {},
                 "synthetic_weights": False, "dtype": config.dtype}
    return {
        "schema": "manifest",
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "pipeline_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "source": {"url": config.source, "kind": source.kind},
        "codec": codec,
        "run": {
            "batch_size": config.batch_size, "max_batch_windows": config.max_batch_windows,
            "num_encoders": max(resources["concurrency"]) if isinstance(resources["concurrency"], tuple)
            else resources["concurrency"],
            "encoder_device": resources["device"],
            "chunk_s": config.chunk_windows * 10.24, "rows_per_file": config.rows_per_file,
            "wall_time_s": wall, "resumed": resumed, "rows_this_run": this_run_rows,
            "config": {k: v for k, v in asdict(config).items() if k != "storage_options"},
        },
        "counts": {
            "inputs": len(ids | failed_ids), "tokenized": len(ids), "failed": len(failed_ids), "token_rows": rows,
            "token_files": len(token_files), "failure_files": len(failure_files),
            "failures_by_type": dict(failure_types),
        },
        "totals": {
            "audio_hours": audio_s / 3600, "token_pairs": pairs, "tokens": 2 * pairs,
            "audio_seconds_per_second": this_run_audio / wall if wall else 0.0,
            "clips_per_second": this_run_rows / wall if wall else 0.0,
        },
    }

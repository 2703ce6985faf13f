"""The tokenize run's Ray adapters: batch <-> record conversion, the read+decode task, the encoder
actor, the shard writer.

Each adapter is a thin shell around a plain function that is tested without Ray:
`audio_decode.decode_item`, `encoding.encode_chunks`, `shards.write_records`. Records (pipeline/records.py) travel between stages as columns of a Ray batch: the
`ChunkInfo` fields, the audio or tokens, and the failure fields (empty `failure_stage` = no failure).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import fields

import numpy as np

from ..records import AudioChunk, ChunkInfo, EncodedChunk, Failure

log = logging.getLogger(__name__)

_INFO_FIELDS = [f.name for f in fields(ChunkInfo)]
_JSON_FIELDS = ("labels", "human_labels", "meta")  # variable-shape values travel as JSON text
_FAILURE_COLUMNS = ("failure_stage", "failure_type", "failure_message", "failure_retryable")


# --- batch <-> records ---------------------------------------------------------------------------

def records_to_batch(records: list[AudioChunk | EncodedChunk | Failure], extra: dict | None = None) -> dict:
    """Columns for a Ray batch; every row has every column (Ray batches are rectangular)."""
    columns: dict[str, list] = {name: [] for name in _INFO_FIELDS}
    columns.update({name: [] for name in ("waveform", "resample_from", "semantic", "acoustic", *_FAILURE_COLUMNS)})
    empty_audio, empty_tokens = np.zeros(0, np.float32), np.zeros(0, np.uint16)
    for record in records:
        if isinstance(record, Failure):
            info = ChunkInfo(id=record.id, uri=record.uri)
            failure = (record.stage, record.error_type, record.message, record.retryable)
        else:
            info, failure = record.info, ("", "", "", False)
        for name in _INFO_FIELDS:
            value = getattr(info, name)
            columns[name].append(json.dumps(value) if name in _JSON_FIELDS else value)
        columns["waveform"].append(record.waveform if isinstance(record, AudioChunk) else empty_audio)
        columns["resample_from"].append(record.resample_from if isinstance(record, AudioChunk) else 0)
        encoded = isinstance(record, EncodedChunk)
        columns["semantic"].append(record.semantic if encoded else empty_tokens)
        columns["acoustic"].append(record.acoustic if encoded else empty_tokens)
        for name, value in zip(_FAILURE_COLUMNS, failure):
            columns[name].append(value)
    batch = {name: _column(values) for name, values in columns.items()}
    for name, values in (extra or {}).items():
        batch[name] = np.asarray(values)
    return batch


def batch_to_records(batch: dict) -> list[AudioChunk | EncodedChunk | Failure]:
    count = len(batch["id"]) if "id" in batch else 0
    records: list = []
    for i in range(count):
        if batch["failure_stage"][i]:
            records.append(Failure(
                id=str(batch["id"][i]), uri=str(batch["uri"][i]), stage=str(batch["failure_stage"][i]),
                error_type=str(batch["failure_type"][i]), message=str(batch["failure_message"][i]),
                retryable=bool(batch["failure_retryable"][i]),
            ))
            continue
        values = {}
        for name in _INFO_FIELDS:
            value = _plain(batch[name][i])
            values[name] = json.loads(value) if name in _JSON_FIELDS else value
        info = ChunkInfo(**values)
        semantic = batch["semantic"][i]
        if len(semantic) or len(batch["waveform"][i]) == 0:
            records.append(EncodedChunk(info, np.asarray(semantic, np.uint16), np.asarray(batch["acoustic"][i], np.uint16)))
        else:
            records.append(AudioChunk(info, np.asarray(batch["waveform"][i], np.float32),
                                      int(batch["resample_from"][i])))
    return records


def _column(values: list):
    if values and isinstance(values[0], np.ndarray):
        column = np.empty(len(values), dtype=object)
        column[:] = values
        return column
    return np.asarray(values)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# --- read + decode (CPU tasks) -------------------------------------------------------------------

class ReadDecode:
    """`ds.flat_map(ReadDecode(...))`: one work unit → its chunks (prepared for the encoder) and failures.

    Inputs already complete are skipped, and chunks already committed are dropped (resume)."""

    def __init__(self, source, variant, skip_ref, *, chunk_windows: int, max_duration_s: float,
                 limit_ids: set[str] | None = None, resample: bool = True) -> None:
        self.source, self.variant, self.skip_ref = source, variant, skip_ref
        self.chunk_windows, self.max_duration_s, self.limit_ids = chunk_windows, max_duration_s, limit_ids
        self.resample = resample  # False: the encoder resamples (chunks carry resampler input spans)

    def __call__(self, row: dict):
        from ..audio.load import decode_item
        from ..codecs.semanticodec.prepare import prepare_clip

        skip = _skip_sets(self.skip_ref)
        for item in self.source.read_unit(pickle.loads(row["unit"])):
            if item.id in skip.complete or (self.limit_ids is not None and item.id not in self.limit_ids):
                continue
            emitted = False
            for record in decode_item(item, chunk_windows=self.chunk_windows, max_duration_s=self.max_duration_s,
                                      resample=self.resample):
                if isinstance(record, Failure):
                    yield _one_row(_partial_aware(record, skip, emitted))
                    break
                if (record.info.id, record.info.chunk_index) in skip.chunks:
                    continue
                emitted = True
                if not record.resample_from:  # a span is prepared by the encoder, after resampling
                    record = AudioChunk(record.info, prepare_clip(record.waveform, self.variant).samples)
                yield _one_row(record)


def _partial_aware(failure: Failure, skip, emitted: bool = False) -> Failure:
    """An input with chunks already committed (by an earlier run, or emitted before a streamed
    decode found the file damaged) cannot also get a final failure row: tokens and failures never
    share an id. Its failure stays retryable, and the input incomplete (readers leave it out)."""
    if (failure.id in skip.partial or emitted) and not failure.retryable:
        failure.retryable = True
        failure.message = f"{failure.message} (some chunks of this input were already committed)"
    return failure


def _one_row(record) -> dict:
    """Plain Python scalars: numpy's fixed-width strings (<U20) would make Ray Data type a block of
    rows with ids of several lengths as a tensor of bytes, which no block of other rows unifies with."""
    batch = records_to_batch([record])
    return {name: _plain(column[0]) for name, column in batch.items()}


class _SkipSets:
    __slots__ = ("complete", "chunks", "partial")

    def __init__(self, complete, chunks, partial) -> None:
        self.complete, self.chunks, self.partial = complete, chunks, partial


_SKIP_CACHE: dict = {}


def _skip_sets(ref) -> _SkipSets:
    """The committed keys, fetched once per worker process from the object store (or given as a
    plain (complete, chunks, partial) tuple, as in tests)."""
    if isinstance(ref, tuple):
        return _SkipSets(*ref)
    import ray

    key = ref.hex()
    if key not in _SKIP_CACHE:
        _SKIP_CACHE.clear()
        _SKIP_CACHE[key] = _SkipSets(*ray.get(ref))
    return _SKIP_CACHE[key]


# --- encode (one actor per GPU, or CPU actors) ---------------------------------------------------

class EncoderActor:
    """`ds.map_batches(EncoderActor, ...)`: holds one codec; a batch of chunks → tokens.

    A device error (sticky CUDA error, OOM the codec could not split away) ends the actor process,
    so Ray restarts it and retries the batch: nothing is written as a failure for it."""

    def __init__(self, codec_kwargs: dict, torch_threads: int | None = None,
                 inject_device_error_once: str | None = None) -> None:
        import torch

        from ..codecs.semanticodec import SemantiCodec

        if torch_threads:
            torch.set_num_threads(torch_threads)
        kwargs = dict(codec_kwargs)
        if kwargs.get("device", "auto") == "auto":
            kwargs["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if str(kwargs["device"]).startswith("cuda") and kwargs.get("dtype", "float32") == "float32":
            # Exact fp32: PyTorch lets cuDNN's LSTM and convolutions use TF32 by default. The codec
            # itself sets no process-wide flag; this actor is a process of its own, so here it is safe.
            torch.backends.cudnn.allow_tf32 = False
        self.codec = SemantiCodec.from_pretrained(**kwargs)
        self.fault_marker = inject_device_error_once
        self.provenance = self.codec.provenance.to_dict()

    def __call__(self, batch: dict) -> dict:
        from ..codecs.semanticodec.device_errors import is_device_error
        from .encode import encode_chunks

        records = batch_to_records(batch)
        chunks = [r for r in records if isinstance(r, AudioChunk)]
        try:
            self._maybe_inject_device_error()
            encoded = iter(encode_chunks(self.codec, chunks))
        except Exception as error:
            if is_device_error(error):
                log.error("device error, restarting this encoder so Ray retries the batch: %s", error)
                os._exit(75)
            raise
        out = [r if isinstance(r, Failure) else next(encoded) for r in records]
        stats = self.codec.take_stats()
        extra = {"encoder_passes": [0] * len(out), "encoder_windows": [0] * len(out),
                 "encoder_dtypes_json": [""] * len(out)}
        if out:
            extra["encoder_passes"][0], extra["encoder_windows"][0] = stats["forward_passes"], stats["windows"]
            extra["encoder_dtypes_json"][0] = json.dumps(stats["dtype_per_component"], sort_keys=True)
        batch = records_to_batch(out, extra)
        batch["provenance_json"] = np.asarray([json.dumps(self.provenance, sort_keys=True)] * len(out))
        return batch


    def _maybe_inject_device_error(self) -> None:
        """Fault injection for tests (PIPELINE_INJECT_DEVICE_ERROR_ONCE=<marker file> on the driver):
        the first batch of the run meets a sticky CUDA error, as after an Xid on a real GPU."""
        if self.fault_marker and not os.path.exists(self.fault_marker):
            with open(self.fault_marker, "w") as handle:
                handle.write(str(os.getpid()))
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected for a test)")


# --- write (tasks) -------------------------------------------------------------------------------

def write_batch(batch: dict, output, run_info: dict) -> dict:
    """`ds.map_batches(write_batch, ...)`: one batch → committed shards + a one-row summary."""
    from ..output.shards import write_records

    records = batch_to_records(batch)
    provenance = json.loads(batch["provenance_json"][0]) if len(records) else {}
    summary = write_records(output, records, {**provenance, **run_info})
    summary["provenance_json"] = json.dumps(provenance, sort_keys=True) if summary["token_rows"] else ""
    summary["encoder_passes"] = int(np.sum(batch.get("encoder_passes", 0)))
    summary["encoder_windows"] = int(np.sum(batch.get("encoder_windows", 0)))
    summary["encoder_dtypes_json"] = next((d for d in batch.get("encoder_dtypes_json", []) if d), "")
    return {key: np.asarray([value]) for key, value in summary.items()}

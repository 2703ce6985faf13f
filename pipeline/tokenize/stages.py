"""The tokenize run's Ray adapters: the read+decode task, the encoder actor, the shard writer.

Each adapter is a thin shell around a plain function that is tested without Ray:
`audio.load.load_chunks`, `encode.encode_chunks`, `output.shards.write_records`. Records
(pipeline/records.py) travel between stages as Arrow tables of one fixed schema (`batch.py`).

An error that is not an input's own (`pipeline/content_errors.py`) leaves an adapter as a `Fault`,
which stops the run: a worker that cannot load its libraries fails at its start, before its first
input, and no input is written off because of it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from .. import __version__
from ..errors import UserError
from ..faults import Fault, brief
from ..records import AudioChunk, Failure
from ..sources.work_list import table_units
from .batch import batch_to_records, records_to_batch

if TYPE_CHECKING:
    from ..output.summary import ShardSummary
    from .encoder_plan import EncoderSpec

log = logging.getLogger(__name__)

HELD_CHUNK_BYTES = 128 << 20  # an input's chunks held back until its decode ends: 35 min of 16 kHz audio


@functools.cache
def check_worker_libraries() -> None:
    """Once per worker process, before its first input: the libraries the run uses load (a
    `Fault` otherwise, raised again by every call)."""
    from ..environment import check_libraries

    check_libraries()


# --- read + decode (CPU tasks) -------------------------------------------------------------------

class ReadDecode:
    """`ds.map_batches(ReadDecode(...), batch_format="pyarrow")`: work units (rows of a `WorkList`)
    → their chunks (prepared for the encoder) and failures, one single-row table each.

    Inputs already complete are skipped, and chunks already committed are dropped (resume)."""

    def __init__(self, source, variant, skip_ref, *, chunk_windows: int, max_duration_s: float,
                 limit_ids: set[str] | None = None, resample: bool = True) -> None:
        self.source, self.variant, self.skip_ref = source, variant, skip_ref
        self.chunk_windows, self.max_duration_s, self.limit_ids = chunk_windows, max_duration_s, limit_ids
        self.resample = resample  # False: the encoder resamples (chunks carry resampler input spans)

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        try:
            check_worker_libraries()
            for unit in table_units(batch):
                yield from self._read_decode(unit)
        except (Fault, UserError):
            raise
        except Exception as error:  # not an input's: the decoders' content errors became rows
            raise Fault.from_error("a read+decode task", error) from error

    def _read_decode(self, unit) -> Iterator[pa.Table]:
        from ..audio.load import load_chunks

        skip = _skip_sets(self.skip_ref)
        unit_key = [unit.key] if unit is not None else None
        for item in self.source.read_unit(unit):
            if item.id in skip.complete or (self.limit_ids is not None and item.id not in self.limit_ids):
                continue
            records = load_chunks(item, chunk_windows=self.chunk_windows, max_duration_s=self.max_duration_s,
                                  resample=self.resample)
            for record in self._held_until_decoded(records, skip):
                yield records_to_batch([record], unit_key)

    def _held_until_decoded(self, records, skip) -> Iterator[AudioChunk | Failure]:
        """One input's chunks (prepared for the encoder) once its whole decode succeeded, or its
        Failure alone: a file found damaged part-way (a cut download) is one failure row, not
        tokens and a failure. Chunks beyond `HELD_CHUNK_BYTES` go on as they come (memory stays
        bounded); a failure after those is kept retryable, as tokens and failures never share an id."""
        from ..codecs.semanticodec.prepare import prepare_clip

        held: list[AudioChunk] = []
        held_bytes, emitted = 0, False
        for record in records:
            if isinstance(record, Failure):
                yield _partial_aware(record, skip, emitted)
                return
            if (record.info.id, record.info.chunk_index) in skip.chunks:
                continue
            if not record.resample_from:  # a span is prepared by the encoder, after resampling
                record = AudioChunk(record.info, prepare_clip(record.waveform, self.variant).samples)
            held.append(record)
            held_bytes += record.waveform.nbytes
            if held_bytes > HELD_CHUNK_BYTES:
                yield from held
                held, held_bytes, emitted = [], 0, True
        yield from held


def _partial_aware(failure: Failure, skip, emitted: bool = False) -> Failure:
    """An input with chunks already committed (by an earlier run, or sent on before a streamed
    decode of a very long file found it damaged) cannot also get a final failure row: tokens and
    failures never share an id. Its failure stays retryable, and the input incomplete (readers
    leave it out)."""
    if (failure.id in skip.partial or emitted) and not failure.retryable:
        failure.retryable = True
        failure.message = f"{failure.message} (some chunks of this input were already committed)"
    return failure


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
    """`ds.map_batches(EncoderActor, batch_format="pyarrow", ...)`: holds one codec; a batch of
    chunks → tokens.

    At start-up it loads what it will use (the libraries, the codec's weights on its device) and
    encodes one window of silence. An actor that cannot do that refuses its work: its first batch
    raises the start-up's `Fault`, untouched, which ends the run in one line before any input is
    written off (a constructor that raised would end it too, but Ray prints its traceback from
    every process involved). A device error while encoding (sticky CUDA error, OOM the codec
    could not split away) ends the actor process, so Ray restarts it and retries the batch; any
    other error that is not about an input stops the run."""

    def __init__(self, spec: EncoderSpec, torch_threads: int | None = None,
                 inject_device_error_once: str | None = None) -> None:
        self.codec, self.start_up_fault = None, None
        try:
            self.codec = _load_codec(spec, torch_threads)
        except Exception as error:  # noqa: BLE001 - not an input's: whatever it is, the actor is unusable
            self.start_up_fault = _start_up_fault(error)
            return
        self.fault_marker = inject_device_error_once
        self.provenance = self.codec.provenance.to_dict()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ..codecs.semanticodec.device_errors import is_device_error

        if self.start_up_fault is not None:
            raise self.start_up_fault
        try:
            return self._encode(batch)
        except (Fault, UserError):
            raise
        except Exception as error:
            if is_device_error(error):
                log.error("device error, restarting this encoder so Ray retries the batch: %s", error)
                os._exit(75)
            raise Fault.from_error("the encode stage", error) from error

    def _encode(self, batch: pa.Table) -> pa.Table:
        from .encode import encode_chunks

        records = batch_to_records(batch)
        self._maybe_inject_device_error()
        encoded = iter(encode_chunks(self.codec, [r for r in records if isinstance(r, AudioChunk)]))
        out = [r if isinstance(r, Failure) else next(encoded) for r in records]
        stats = self.codec.take_stats()
        counters = {"encoder_passes": [0] * len(out), "encoder_windows": [0] * len(out),
                    "encoder_dtypes_json": [""] * len(out)}
        if out:
            counters["encoder_passes"][0], counters["encoder_windows"][0] = stats["forward_passes"], stats["windows"]
            counters["encoder_dtypes_json"][0] = json.dumps(stats["dtype_per_component"], sort_keys=True)
        return records_to_batch(out, batch.column("unit").to_pylist(), **counters,
                                provenance_json=[json.dumps(self.provenance, sort_keys=True)] * len(out))

    def _maybe_inject_device_error(self) -> None:
        """Fault injection for tests (PIPELINE_INJECT_DEVICE_ERROR_ONCE=<marker file> on the driver):
        the first batch of the run meets a sticky CUDA error, as after an Xid on a real GPU."""
        if self.fault_marker and not os.path.exists(self.fault_marker):
            with open(self.fault_marker, "w") as handle:
                handle.write(str(os.getpid()))
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected for a test)")


def _start_up_fault(error: Exception) -> Fault:
    if isinstance(error, UserError):  # e.g. weights the safe loader refuses, where only workers read them
        fault = Fault(f"an encoder could not start: {brief(error)}")
    else:
        fault = Fault.from_error("an encoder's start-up", error)
    fault.__cause__ = error
    return fault


def _load_codec(spec: EncoderSpec, torch_threads: int | None):
    """The libraries checked, the codec loaded on its device and run once on silence."""
    import numpy as np
    import torch

    from ..codecs.semanticodec.variants import SAMPLE_RATE_HZ

    check_worker_libraries()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if spec.device == "cuda" and spec.dtype == "float32":
        # Exact fp32: PyTorch lets cuDNN's LSTM and convolutions use TF32 by default. The codec
        # itself sets no process-wide flag; this actor is a process of its own, so here it is safe.
        torch.backends.cudnn.allow_tf32 = False
    codec = spec.load()
    codec.encode([np.zeros(SAMPLE_RATE_HZ, np.float32)], sample_rate=SAMPLE_RATE_HZ)  # kernels on the device
    codec.take_stats()  # the warm-up is not the run's work
    return codec


# --- write (tasks) -------------------------------------------------------------------------------

_PREVIOUS_CACHE: dict = {}


def write_batch(batch: pa.Table, output, previous_ref=None) -> pa.Table:
    """`ds.map_batches(write_batch, batch_format="pyarrow", ...)`: one batch → committed shards +
    a one-row summary (`ShardSummary.to_row`). `previous_ref`: {id or unit key: shard} of the old rows
    this run supersedes (an object ref, or the dict itself as in tests). An output that refuses the
    write is an OutputError (one line: the path and the system's words); any other error a Fault."""
    try:
        return pa.Table.from_pylist([_write(batch, output, _previous(previous_ref)).to_row()])
    except (Fault, UserError):
        raise
    except Exception as error:
        raise Fault.from_error("a write task", error) from error


def _write(batch: pa.Table, output, previous: dict) -> ShardSummary:
    from ..output.shards import write_records

    records = batch_to_records(batch)
    # the tokens' footer: the codec's provenance and the version of the pipeline that wrote them (the
    # run's settings are the run record's)
    provenance = json.loads(batch.column("provenance_json")[0].as_py()) if len(records) else {}
    summary = write_records(output, records, {**provenance, "pipeline_version": __version__},
                            batch.column("unit").to_pylist(), previous)
    summary.encoder_passes = sum(batch.column("encoder_passes").to_pylist())
    summary.encoder_windows = sum(batch.column("encoder_windows").to_pylist())
    summary.dtype_per_component = json.loads(next((d for d in batch.column("encoder_dtypes_json").to_pylist() if d),
                                                  "{}"))
    return summary


def _previous(ref) -> dict:
    """The old rows to supersede, fetched once per worker process from the object store."""
    if ref is None or isinstance(ref, dict):
        return ref or {}
    import ray

    key = ref.hex()
    if key not in _PREVIOUS_CACHE:
        _PREVIOUS_CACHE.clear()
        _PREVIOUS_CACHE[key] = ray.get(ref)
    return _PREVIOUS_CACHE[key]

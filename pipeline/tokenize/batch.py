"""Records ↔ the Arrow tables that travel between the tokenize run's Ray stages, with one fixed schema.

Every column has one Arrow type whatever its rows hold (only chunks, only failures, both, none),
so Ray Data can concatenate any two blocks: strings are `string`, audio and tokens
`large_list<float32>` / `large_list<uint16>` (no NumPy string or tensor columns, whose Arrow type
would depend on the values). A row is an `AudioChunk`, an `EncodedChunk` or a `Failure` (a
non-empty `failure_stage`), plus `unit`: the key of the work unit it was read from (a retry
supersedes a failure recorded for a whole container through it). The encoder adds its counters
(`ENCODER_COLUMNS`).
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pyarrow as pa

from ..records import AudioChunk, ChunkInfo, EncodedChunk, Failure

_JSON_FIELDS = ("labels", "human_labels", "meta")  # variable-shape values travel as JSON text
_INFO_TYPES = {
    "id": pa.string(), "uri": pa.string(), "chunk_index": pa.int64(), "num_chunks": pa.int64(),
    "chunk_start_s": pa.float64(), "duration_s": pa.float64(), "source_start_s": pa.float64(),
    "source_end_s": pa.float64(), "source_sample_rate": pa.int64(),
    "source_channels": pa.int64(), **{name: pa.string() for name in _JSON_FIELDS},
}
assert set(_INFO_TYPES) == {f.name for f in fields(ChunkInfo)}, "a ChunkInfo field without a batch column"
BATCH_SCHEMA = pa.schema([
    *_INFO_TYPES.items(),
    ("unit", pa.string()),
    ("waveform", pa.large_list(pa.float32())),
    ("resample_from", pa.int64()),
    ("semantic", pa.large_list(pa.uint16())),
    ("acoustic", pa.large_list(pa.uint16())),
    ("failure_stage", pa.string()),  # "" = not a failure
    ("failure_type", pa.string()),
    ("failure_message", pa.string()),
    ("failure_retryable", pa.bool_()),
])
ENCODER_COLUMNS = {"encoder_passes": pa.int64(), "encoder_windows": pa.int64(),
                   "encoder_dtypes_json": pa.string(), "provenance_json": pa.string()}


def records_to_batch(records: list[AudioChunk | EncodedChunk | Failure], units: list[str] | None = None,
                     **encoder_columns: list) -> pa.Table:
    """A table of `BATCH_SCHEMA` (then the `ENCODER_COLUMNS` given, in their order), one row per
    record. `units`: each row's work unit key (default: its id)."""
    infos = [ChunkInfo(id=r.id, uri=r.uri) if isinstance(r, Failure) else r.info for r in records]
    failures = [r if isinstance(r, Failure) else None for r in records]
    columns = {}
    for name in _INFO_TYPES:
        values = [getattr(info, name) for info in infos]
        columns[name] = [json.dumps(v) for v in values] if name in _JSON_FIELDS else values
    columns["unit"] = list(units) if units is not None else [info.id for info in infos]
    columns["waveform"] = _list_array([r.waveform if isinstance(r, AudioChunk) else None for r in records],
                                      np.float32)
    columns["resample_from"] = [r.resample_from if isinstance(r, AudioChunk) else 0 for r in records]
    for name in ("semantic", "acoustic"):
        columns[name] = _list_array([getattr(r, name) if isinstance(r, EncodedChunk) else None for r in records],
                                    np.uint16)
    columns["failure_stage"] = [f.stage if f else "" for f in failures]
    columns["failure_type"] = [f.error_type if f else "" for f in failures]
    columns["failure_message"] = [f.message if f else "" for f in failures]
    columns["failure_retryable"] = [bool(f and f.retryable) for f in failures]
    schema = BATCH_SCHEMA
    for name, kind in ENCODER_COLUMNS.items():
        if name in encoder_columns:
            columns[name] = list(encoder_columns.pop(name))
            schema = schema.append(pa.field(name, kind))
    if encoder_columns:
        raise ValueError(f"not encoder columns: {sorted(encoder_columns)}")
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
                                 else columns[f.name] for f in schema], schema=schema)


def batch_to_records(batch: pa.Table) -> list[AudioChunk | EncodedChunk | Failure]:
    """The records of a table made by `records_to_batch` (Ray may have concatenated several)."""
    column = {name: batch.column(name).to_pylist() for name in
              (*_INFO_TYPES, "resample_from", "failure_stage", "failure_type", "failure_message",
               "failure_retryable")}
    waveforms = _arrays(batch.column("waveform"))
    semantic, acoustic = _arrays(batch.column("semantic")), _arrays(batch.column("acoustic"))
    records: list = []
    for i in range(batch.num_rows):
        if column["failure_stage"][i]:
            records.append(Failure(id=column["id"][i], uri=column["uri"][i], stage=column["failure_stage"][i],
                                   error_type=column["failure_type"][i], message=column["failure_message"][i],
                                   retryable=column["failure_retryable"][i]))
            continue
        info = ChunkInfo(**{name: json.loads(column[name][i]) if name in _JSON_FIELDS else column[name][i]
                            for name in _INFO_TYPES})
        if len(semantic[i]) or len(waveforms[i]) == 0:
            records.append(EncodedChunk(info, semantic[i], acoustic[i]))
        else:
            records.append(AudioChunk(info, waveforms[i], column["resample_from"][i]))
    return records


def _list_array(values: list[np.ndarray | None], dtype) -> pa.Array:
    """A large_list column from arrays (None: an empty list), built from one concatenated buffer."""
    arrays = [np.zeros(0, dtype) if v is None else np.asarray(v, dtype).reshape(-1) for v in values]
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(flat))


def _arrays(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Each row of a list column as its own writable NumPy array (torch refuses read-only ones)."""
    out: list[np.ndarray] = []
    for chunk in column.chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy(zero_copy_only=False)
        out.extend(np.array(values[offsets[i]:offsets[i + 1]]) for i in range(len(chunk)))
    return out

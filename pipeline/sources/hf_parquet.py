"""Hugging Face datasets in Parquet layout: `hf://datasets/<repo>` or local Parquet files.

Rows carry an audio struct {bytes, path} (the `Audio(decode=False)` layout; the column `datasets`
declared an `Audio` feature, whatever its name, else `audio`); the bytes are
decoded later with soundfile (or FFmpeg), never with datasets' torchcodec path. Files are read one row group
at a time inside Ray tasks, so a large dataset streams. `labels`/`human_labels` are carried
through and other scalar columns go into `meta`; the id is the row's `video_id`/`id` column when
there is one (strings, or integers written in decimal), else `<file>#<row>`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from ..content_errors import admit_failure
from ..errors import SourceError
from ..records import STAGE_READ, SourceItem
from .base import Source, WorkUnit, failed_item, is_transient, protocol_prefix, relative_id
from .files import has_glob
from .ids import id_problem
from .manifest import ID_COLUMNS, LABEL_COLUMNS, scalar_fields, split_labels
from .uris import row_uri

HF_DATASETS_PREFIX = "hf://datasets/"
AUDIO_COLUMN = "audio"


def audio_column(schema) -> str | None:
    """The column holding the audio: the one `datasets` declared an `Audio` feature in the file's
    metadata (any name: `audio`, `speech`, `wav`, ...), else a column named `audio`; it must be a
    struct with `bytes`. None when there is none."""
    import json

    declared = []
    try:
        features = json.loads((schema.metadata or {}).get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        declared = [name for name, spec in features.items() if isinstance(spec, dict) and spec.get("_type") == "Audio"]
    except (ValueError, AttributeError):
        pass  # no or unreadable datasets metadata: fall back to the name
    for name in [*declared, AUDIO_COLUMN]:
        if name in schema.names and _is_bytes_struct(schema.field(name).type):
            return name
    return None


def _is_bytes_struct(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_struct(kind) and "bytes" in [kind.field(i).name for i in range(kind.num_fields)]


def is_hf_audio_parquet(schema) -> bool:
    """True for a Parquet schema with an HF audio struct column holding `bytes` (see `audio_column`)."""
    return audio_column(schema) is not None


def _usable_id_column(schema) -> bool:
    import pyarrow as pa

    return pa.types.is_string(schema) or pa.types.is_large_string(schema) or pa.types.is_integer(schema)


@dataclass
class HFParquetSource(Source):
    split: str | None = None  # a folder under data/ (e.g. AudioSet's bal_train) or a file-name prefix

    kind = "hf_parquet"

    def _list_units(self) -> list[WorkUnit]:
        fs, path = self.filesystem()
        if has_glob(path):
            files, root = fs.glob(path), posixpath.dirname(path.split("*")[0])
        elif path.endswith(".parquet"):
            files, root = [path], posixpath.dirname(path)
        else:
            root = path.rstrip("/")
            files = [p for p in fs.find(root) if p.endswith(".parquet")]
        if self.split:
            files = [f for f in files if f"/{self.split}/" in f or posixpath.basename(f).startswith(self.split)]
        if not files:
            raise SourceError(f"no Parquet files at {self.url}" + (f" for split {self.split!r}" if self.split else ""))
        prefix = protocol_prefix(fs)
        return [WorkUnit(key=relative_id(f, root), uri=prefix + f) for f in sorted(files)]

    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        import pyarrow.parquet as pq

        def open_file():
            fs, path = self.filesystem(unit.uri)
            return pq.ParquetFile(fs.open(path, "rb"))

        try:
            parquet = self.with_retries(open_file)
        except Exception as error:  # noqa: BLE001 - recorded against the file, the run goes on
            yield self.read_failure(unit.key, unit.uri, error)
            return
        schema = parquet.schema_arrow
        audio_col = audio_column(schema)
        if audio_col is None:
            yield failed_item(unit.key, unit.uri, STAGE_READ, "no audio column (a struct with bytes, declared as "
                              "an Audio feature or named 'audio') in this Parquet file", "NoAudioColumn")
            return
        id_col = next((c for c in ID_COLUMNS if c in schema.names), None)
        if id_col and not _usable_id_column(schema.field(id_col).type):
            yield failed_item(unit.key, unit.uri, STAGE_READ, f"id column {id_col!r} has type "
                              f"{schema.field(id_col).type}: ids must be strings or integers", "InvalidId")
            return
        row = 0
        try:
            for group in range(parquet.num_row_groups):
                records = self.with_retries(lambda group=group: parquet.read_row_group(group).to_pylist())
                for record in records:
                    yield _row_item(unit, record, row, id_col, audio_col)
                    row += 1
        except Exception as error:  # noqa: BLE001 - the rows read stay, the rest is one failure
            admit_failure(STAGE_READ, error, retryable=is_transient(error))  # else a Fault: not the file's bytes
            yield failed_item(unit.key, unit.uri, STAGE_READ,
                              f"file unreadable from row {row}: the rows before it were read "
                              f"({type(error).__name__}: {error})",
                              error_type=type(error).__name__, retryable=is_transient(error))


def _row_item(unit: WorkUnit, record: dict, row: int, id_col: str | None, audio_col: str) -> SourceItem:
    positional = f"{unit.key}#{row}"
    uri = row_uri(unit.uri, row)
    raw_id = record.get(id_col) if id_col else None
    item_id = positional if raw_id is None else str(raw_id)
    problem = id_problem(item_id)
    if problem:  # the failure is kept under the row's position, never a rewritten id
        return failed_item(positional, uri, STAGE_READ, problem, "InvalidId")
    audio = record.get(audio_col) or {}
    data = audio.get("bytes")
    if not data:
        return failed_item(item_id, uri, STAGE_READ, "row has no audio bytes", "MissingAudioBytes")
    meta = scalar_fields(record, exclude=(audio_col, id_col, *LABEL_COLUMNS))
    return SourceItem(
        id=item_id, uri=uri, data=data, labels=split_labels(record.get("labels")),
        human_labels=split_labels(record.get("human_labels")), meta=meta or None,
    )

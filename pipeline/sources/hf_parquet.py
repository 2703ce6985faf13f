"""Hugging Face datasets in Parquet layout: `hf://datasets/<repo>` or Parquet files on any filesystem.

Rows carry an audio struct {bytes, path} (the column `datasets` declared an `Audio` feature,
whatever its name, else `audio`); the bytes are decoded later with soundfile (or FFmpeg), never
with datasets' torchcodec path. A row with a `path` and no `bytes` (what `datasets` writes for a
dataset built from audio files) is read from that path under the URI rule (`uri_rule.py`): on
the Parquet file's own filesystem, a relative path from the Parquet file's folder, and only under
the source's root (or an `--allow-uri-prefix`), so a remote dataset never reads a local file.

Ids (`ids.py`): the row's `video_id`/`id` column (strings, or integers written in decimal), else
`<file id>#<row>`, the file id being its path relative to the listing root (`listing.py`). Ids
are read from every file when the source is listed, so an id held by an earlier row (of any
file) is known before reading: that row becomes a `DuplicateId` failure, or is left out with
`--dedupe first`. `labels`/`human_labels` are carried through and other scalar columns go into `meta`.

Memory: rows are read in pieces of at most `PIECE_BYTES` of audio (a row group at once, or row by
row); an audio value over `MAX_VALUE_BYTES` is refused from the page headers
(`parquet_pages.py`) before it is decompressed, with the rows of its row group that cannot be
reached without decompressing it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from ..content_errors import admit_failure
from ..errors import SourceError
from ..records import STAGE_READ, SourceItem
from .base import Source, WorkUnit, failed_item, is_transient
from .ids import DUPLICATE_ERROR, duplicate_message, id_problem, later_copies
from .listing import list_files
from .manifest_rows import ID_COLUMNS, LABEL_COLUMNS, scalar_fields, split_labels
from .parquet_pages import column_pages
from .uri_rule import UriOutsideRule, folder_of
from .uris import row_uri

HF_DATASETS_PREFIX = "hf://datasets/"
AUDIO_COLUMN = "audio"
PIECE_BYTES = 64 << 20  # audio bytes decompressed at once: a whole row group up to this, else row by row
MAX_VALUE_BYTES = 256 << 20  # one row's audio value (its Parquet page) over this is refused unread
STREAM_BUFFER_BYTES = 1 << 20
ID_SCAN_THREADS = 16  # id columns are read at listing, latency-bound on object stores
TOO_LARGE_ERROR = "AudioValueTooLarge"


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


def id_column(schema) -> str | None:
    return next((c for c in ID_COLUMNS if c in schema.names), None)


def row_id(unit_key: str, row: int, raw) -> str:
    """A row's id: its id column's value as text, else its position `<file id>#<row>`."""
    return f"{unit_key}#{row}" if raw is None else str(raw)


def row_place(unit_key: str, row: int) -> str:
    return f"row {row} of {unit_key}"


@dataclass
class HFParquetSource(Source):
    split: str | None = None  # a folder under data/ (e.g. AudioSet's bal_train) or a file-name prefix

    kind = "hf_parquet"

    def _list_units(self) -> list[WorkUnit]:
        listing = list_files(self.url, self.storage_options, keep=lambda p: p.endswith(".parquet"),
                             found=self.found_files())
        files = listing.paths
        if self.split:
            files = [f for f in files if f"/{self.split}/" in f or posixpath.basename(f).startswith(self.split)]
        if not files:
            raise SourceError(f"no Parquet files at {self.url}" + (f" for split {self.split!r}" if self.split else ""))
        units = [WorkUnit(key=listing.id_of(f), uri=listing.uri_of(f)) for f in files]
        self._mark_duplicates(units)
        return units

    # --- ids, read before the run: one duplicate rule across every file ---
    def _mark_duplicates(self, units: list[WorkUnit]) -> None:
        with ThreadPoolExecutor(max_workers=ID_SCAN_THREADS) as pool:
            ids = list(pool.map(self._file_ids, units))
        entries = ((row_id(unit.key, row, raw), row_place(unit.key, row))
                   for unit, raws in zip(units, ids, strict=True) for row, raw in enumerate(raws)
                   if id_problem(row_id(unit.key, row, raw)) is None)
        later = later_copies(entries)
        if not later:
            return
        by_place = {row_place(unit.key, row): (unit, row)
                    for unit, raws in zip(units, ids, strict=True) for row in range(len(raws))}
        for place, first in later.items():
            unit, row = by_place[place]
            unit.duplicates = {**(unit.duplicates or {}), row: first}

    def _file_ids(self, unit: WorkUnit) -> list:
        """The raw id of every row (None where there is no id column); [] when the file cannot be
        read now (its read records why)."""
        import pyarrow.parquet as pq

        def ids() -> list:
            with self._handle(unit) as handle:
                parquet = pq.ParquetFile(handle)
                column = id_column(parquet.schema_arrow)
                if column is None or not _usable_id_column(parquet.schema_arrow.field(column).type):
                    return [None] * parquet.metadata.num_rows
                return parquet.read(columns=[column])[column].to_pylist()

        try:
            return self.with_retries(ids)
        except Exception:  # noqa: BLE001 - unreadable now: read_unit records the failure with its cause
            return []

    def _handle(self, unit: WorkUnit):
        fs, path = self.filesystem(unit.uri)
        return fs.open(path, "rb")

    # --- reading ---
    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        import pyarrow.parquet as pq

        def open_file():  # unbuffered, pyarrow would read a whole column chunk at once
            return pq.ParquetFile(self._handle(unit), pre_buffer=False, buffer_size=STREAM_BUFFER_BYTES)

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
        id_col = id_column(schema)
        if id_col and not _usable_id_column(schema.field(id_col).type):
            yield failed_item(unit.key, unit.uri, STAGE_READ, f"id column {id_col!r} has type "
                              f"{schema.field(id_col).type}: ids must be strings or integers", "InvalidId")
            return
        rows = _Rows(self, unit, id_col, audio_col)
        row = 0
        try:
            for group in range(parquet.num_row_groups):
                for record in _bounded_rows(parquet, group, audio_col, self.with_retries, lambda: self._handle(unit)):
                    item = rows.item(record, row)
                    if item is not None:
                        yield item
                    row += 1
        except Exception as error:  # noqa: BLE001 - the rows read stay, the rest is one failure
            admit_failure(STAGE_READ, error, retryable=is_transient(error))  # else a Fault: not the file's bytes
            yield failed_item(unit.key, unit.uri, STAGE_READ,
                              f"file unreadable from row {row}: the rows before it were read "
                              f"({type(error).__name__}: {error})",
                              error_type=type(error).__name__, retryable=is_transient(error))


@dataclass(frozen=True, slots=True)
class _TooLarge:
    """A row that is not read because its audio is in a page over `MAX_VALUE_BYTES` (or after one in
    its row group): its other columns (for its id) and why."""

    record: dict
    reason: str


def _bounded_rows(parquet, group: int, audio_col: str, with_retries, open_handle) -> Iterator[dict | _TooLarge]:
    """The rows of one row group as dicts, read in pieces of bounded size: the whole group when its
    audio is at most `PIECE_BYTES`, else row by row up to the first page over `MAX_VALUE_BYTES`
    (found from the page headers); the rows from that page on come as `_TooLarge`."""
    metadata = parquet.metadata.row_group(group)
    chunk = metadata.column(_leaf_index(parquet.metadata, f"{audio_col}.bytes"))
    if chunk.total_uncompressed_size <= PIECE_BYTES:
        yield from with_retries(lambda: parquet.read_row_group(group).to_pylist())
        return

    def pages():
        with open_handle() as handle:
            return column_pages(handle, chunk)

    too_large = next((p for p in with_retries(pages) if p.uncompressed_bytes > MAX_VALUE_BYTES), None)
    readable = metadata.num_rows if too_large is None else too_large.first_value
    done = 0
    if readable:
        with closing(parquet.iter_batches(batch_size=1, row_groups=[group], use_threads=False)) as batches:
            for batch in batches:  # closed when done: its reader is released before the next page is reached
                yield from batch.to_pylist()
                done += batch.num_rows
                if done >= readable:
                    break
    if done < metadata.num_rows:
        others = [name for name in parquet.schema_arrow.names if name != audio_col]
        reason = (f"not read: row group {group} holds a Parquet page of "
                  f"{too_large.uncompressed_bytes / 2**20:.0f} MB of audio from its row {too_large.first_value} on, "
                  f"over the {MAX_VALUE_BYTES >> 20} MB limit for one audio value (rows from there on cannot be read "
                  "without decompressing it)")
        rest = with_retries(lambda: parquet.read_row_group(group, columns=others)).slice(done)
        for record in rest.to_pylist() if others else [{}] * (metadata.num_rows - done):
            yield _TooLarge(record, reason)


def _leaf_index(metadata, path: str) -> int:
    schema = metadata.schema
    return next(i for i in range(metadata.num_columns) if schema.column(i).path == path)


class _Rows:
    """One file's rows → items: ids, duplicates, audio bytes or the audio path under the URI rule."""

    def __init__(self, source: HFParquetSource, unit: WorkUnit, id_col: str | None, audio_col: str) -> None:
        self.source, self.unit, self.id_col, self.audio_col = source, unit, id_col, audio_col
        root = unit.uri[: len(unit.uri) - len(unit.key)] or "/"
        self.rule = source.uri_rule(folder_of(unit.uri), root, what="the dataset")

    def item(self, record: dict | _TooLarge, row: int) -> SourceItem | None:
        too_large = record.reason if isinstance(record, _TooLarge) else None
        record = record.record if isinstance(record, _TooLarge) else record
        unit = self.unit
        positional = row_id(unit.key, row, None)
        uri = row_uri(unit.uri, row)
        raw_id = record.get(self.id_col) if self.id_col else None
        item_id = row_id(unit.key, row, raw_id)
        problem = id_problem(item_id)
        if problem:  # the failure is kept under the row's position, never a rewritten id
            return failed_item(positional, uri, STAGE_READ, problem, "InvalidId")
        first = (unit.duplicates or {}).get(row)
        if first is not None:
            if self.source.dedupe == "first":
                return None
            return failed_item(positional, uri, STAGE_READ,
                               duplicate_message(item_id, row_place(unit.key, row), first), DUPLICATE_ERROR)
        if too_large:
            return failed_item(item_id, uri, STAGE_READ, too_large, TOO_LARGE_ERROR)
        audio = record.get(self.audio_col) or {}
        data, path = audio.get("bytes"), audio.get("path")
        if not data and path:
            return self._from_path(item_id, path, record)
        if not data:
            return failed_item(item_id, uri, STAGE_READ, "row has no audio bytes and no audio path",
                               "MissingAudioBytes")
        return self._item(item_id, uri, data, record)

    def _from_path(self, item_id: str, path: str, record: dict) -> SourceItem:
        try:
            uri = self.rule.resolve(path)
        except UriOutsideRule as error:
            return failed_item(item_id, str(path), STAGE_READ, error, "UriOutsideRule")
        try:
            data = self.source.fetch(uri)
        except Exception as error:  # noqa: BLE001 - recorded against this row
            return self.source.read_failure(item_id, uri, error)
        return self._item(item_id, uri, data, record)

    def _item(self, item_id: str, uri: str, data: bytes, record: dict) -> SourceItem:
        meta = scalar_fields(record, exclude=(self.audio_col, self.id_col, *LABEL_COLUMNS))
        return SourceItem(
            id=item_id, uri=uri, data=data, labels=split_labels(record.get("labels")),
            human_labels=split_labels(record.get("human_labels")), meta=meta or None,
        )

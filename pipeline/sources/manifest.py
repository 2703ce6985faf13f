"""A manifest listing audio files: CSV, JSON lines (also NeMo and Lhotse manifests) or Parquet.

Columns (the first present name wins):
- audio: `uri`, `path`, `audio_path`, `audio_filepath` (NeMo), `file`; or Lhotse's `sources`
  (`[{type: file|url, source: ...}]`, also under `recording`). Relative paths are relative to
  the manifest's folder. Every path is a URI from data (`uri_rule.py`): it must lie under the
  manifest's folder on the manifest's own filesystem, or under an `--allow-uri-prefix`; a row
  naming anything else is a `UriOutsideRule` failure row (never read), and the run goes on.
- id: `id`, `video_id`, `ytid`, `key` (default: the audio path as written, its credentials redacted).
- segment: `start_s`/`start`/`start_seconds`/`offset` (NeMo, Lhotse) and `end_s`/`end`/
  `end_seconds`, or a `duration`/`duration_s` (end = start + duration).
- `labels`, `human_labels` ("a;b" or "a,b" strings, or lists).
- every other scalar column (text, speaker, ...) is carried into `SourceItem.meta`; a Lhotse
  cut's supervisions give `text` (joined) and `speaker`/`language`/`gender` when all agree.

Values are read as written, with no type inference: CSV cells stay strings (`001` is not `1`),
numbers are parsed only for the segment columns, and an id must be a string or an integer in
JSON/Parquet (never a float). A row without audio, with a bad id or a bad segment is the user's
to fix: the listing fails with a `SourceError` naming the first few such rows.

One row's meaning is `manifest_rows.row_item`. A manifest is listed a batch at a time, its plain rows
as columns (`manifest_columns.py`: the same answers, in a fraction of the time).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..errors import SourceError
from .files import FilesSource
from .listing import protocol_prefix
from .manifest_columns import csv_header_and_rows, csv_work_tables, dict_work_tables
from .manifest_rows import ID_COLUMNS, LHOTSE_SOURCES, URI_COLUMNS, first_present
from .uri_rule import UriRule

COLUMNS_FROM_ROWS = 100  # the first rows, whose columns must name the audio
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")


# --- reading ---------------------------------------------------------------------------------------

def manifest_format(path: str) -> str:
    """A manifest's format from its name: "parquet", "csv" or "json" (JSON lines or an array),
    compressed with gzip or not."""
    lower = path.lower().removesuffix(".gz")
    return "parquet" if lower.endswith(".parquet") else "csv" if lower.endswith(".csv") else "json"


def read_manifest(fs, path: str) -> bytes:
    """The manifest's bytes, decompressed where its name ends in `.gz`."""
    with fs.open(path, "rb") as handle:
        raw = handle.read()
    return gzip.decompress(raw) if path.lower().endswith(".gz") else raw


def iter_rows(fs, path: str) -> Iterator[dict[str, Any]]:
    """A JSON lines, JSON or Parquet manifest's rows as dicts of plain Python values, one at a time: a
    manifest of millions of rows is never held as dicts (a CSV's rows: `manifest_columns`)."""
    raw = read_manifest(fs, path)
    if manifest_format(path) == "parquet":
        yield from _parquet_rows(raw)
        return
    text = raw.decode("utf-8-sig")
    del raw
    yield from _json_rows(text)


def _json_rows(text: str) -> Iterator[dict]:
    if text.lstrip().startswith("["):
        for number, row in enumerate(json.loads(text), 1):
            yield _json_object(row, number)
        return
    entry = 0
    for number, line in enumerate(io.StringIO(text), 1):  # lines end at \n only: JSON text may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise SourceError(f"manifest line {number} is not JSON: {error}") from error
        entry += 1
        yield _json_object(row, entry)


def _json_object(row, entry: int) -> dict:
    if not isinstance(row, dict):
        raise SourceError(f"manifest entry {entry} is not a JSON object: {str(row)[:80]}")
    return row


def _parquet_rows(raw: bytes) -> Iterator[dict]:
    import pyarrow.parquet as pq

    manifest = pq.ParquetFile(io.BytesIO(raw))
    id_col = first_present(manifest.schema_arrow.names, ID_COLUMNS)
    if id_col is not None:
        kind = manifest.schema_arrow.field(id_col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
            raise SourceError(f"manifest id column {id_col!r} has type {kind}: ids must be strings or integers")
    for batch in manifest.iter_batches():
        yield from batch.to_pylist()


# --- the source -----------------------------------------------------------------------------------

class ManifestSource(FilesSource):
    kind = "manifest"

    def work_tables(self) -> Iterator[pa.Table]:
        """The manifest's units as columns, a batch at a time (`manifest_columns.py`)."""
        fs, path = self.filesystem()
        if manifest_format(path) == "csv":
            header, rows = csv_header_and_rows(read_manifest(fs, path).decode("utf-8-sig"))
            first = list(itertools.islice(rows, 1))
            if not first:
                raise SourceError(f"manifest {self.url} lists no audio")
            self._check_columns(set(header))
            return csv_work_tables(header, itertools.chain(first, rows), self._rule(fs, path), self.url)
        rows = iter_rows(fs, path)
        first = list(itertools.islice(rows, COLUMNS_FROM_ROWS))
        if not first:
            raise SourceError(f"manifest {self.url} lists no audio")
        self._check_columns(set().union(*(row.keys() for row in first)))
        return dict_work_tables(itertools.chain(first, rows), self._rule(fs, path), self.url)

    def _check_columns(self, columns: set[str]) -> None:
        if not first_present(columns, URI_COLUMNS) and LHOTSE_SOURCES not in columns and "recording" not in columns:
            raise SourceError(f"manifest {self.url} has no audio path column: use one of {', '.join(URI_COLUMNS)} "
                              f"(or Lhotse '{LHOTSE_SOURCES}'); its columns are {sorted(columns)}")

    def _rule(self, fs, path: str) -> UriRule:
        return self.uri_rule(protocol_prefix(fs) + (posixpath.dirname(path) or "/"), what="the manifest's folder")

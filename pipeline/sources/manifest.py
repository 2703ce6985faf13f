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
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import itertools
import json
import math
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import SourceError
from ..records import STAGE_READ, Failure, SourceItem
from ..redaction import redact
from .base import WorkUnit, single_unit
from .files import FilesSource
from .ids import SHOWN, id_problem
from .listing import protocol_prefix
from .uri_rule import UriOutsideRule, UriRule

URI_COLUMNS = ("uri", "path", "audio_path", "audio_filepath", "file")
ID_COLUMNS = ("id", "video_id", "ytid", "key")
START_COLUMNS = ("start_s", "start", "start_seconds", "offset")
END_COLUMNS = ("end_s", "end", "end_seconds")
DURATION_COLUMNS = ("duration_s", "duration")
LABEL_COLUMNS = ("labels", "human_labels")
LHOTSE_SOURCES = "sources"
LHOTSE_SOURCE_TYPES = ("file", "url")
# Lhotse structure that is not metadata of the clip.
LHOTSE_FIELDS = ("sources", "recording", "supervisions", "type", "channel", "channel_ids", "sampling_rate",
                 "num_samples", "features", "custom", "transforms", "recording_id")
SUPERVISION_FIELDS = ("speaker", "language", "gender")
COLUMNS_FROM_ROWS = 100  # the first rows, whose columns must name the audio
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")


class BadRow(ValueError):
    """A manifest row we cannot use; the message says why."""


# --- reading ---------------------------------------------------------------------------------------

def iter_rows(fs, path: str) -> Iterator[dict[str, Any]]:
    """The manifest's rows as dicts of plain Python values (CSV cells as strings, '' as None), one at
    a time: a manifest of millions of rows is never held as dicts."""
    lower = path.lower()
    with fs.open(path, "rb") as handle:
        raw = handle.read()
    if lower.endswith(".gz"):
        raw = gzip.decompress(raw)
        lower = lower[:-3]
    if lower.endswith(".parquet"):
        yield from _parquet_rows(raw)
        return
    text = raw.decode("utf-8-sig")
    del raw
    if lower.endswith(".csv"):
        yield from _csv_rows(text)
        return
    yield from _json_rows(text)


def _csv_rows(text: str) -> Iterator[dict]:
    """`csv.DictReader`'s rows (blank lines skipped; cells past the header's dropped, missing ones
    None), with '' as None: its C reader, without DictReader's per-row Python."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    width = len(header)
    for values in reader:
        if not values:
            continue
        values = values[:width] + [None] * (width - len(values))
        yield {name: (value if value != "" else None) for name, value in zip(header, values, strict=True)}


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
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = pq.ParquetFile(io.BytesIO(raw))
    id_col = _first(manifest.schema_arrow.names, ID_COLUMNS)
    if id_col is not None:
        kind = manifest.schema_arrow.field(id_col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
            raise SourceError(f"manifest id column {id_col!r} has type {kind}: ids must be strings or integers")
    for batch in manifest.iter_batches():
        yield from batch.to_pylist()


def split_labels(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        return [p for p in parts if p]
    return [str(v) for v in value]


def _first(columns, names):
    return next((n for n in names if n in columns), None)


# --- one row -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Columns:
    """Which of a row's columns play which part (the first present name wins), worked out once for
    every row with the same column names (`columns_of`): all of a CSV's rows."""

    uri: str | None
    id: str | None
    start: str | None
    end: str | None
    duration: str | None
    used: frozenset[str | None]  # the columns with a part (the others may go into `meta`)
    lhotse: bool  # Lhotse's `sources` or `recording` is there


@functools.lru_cache(maxsize=256)
def columns_of(names: tuple[str, ...]) -> _Columns:
    uri, id = _first(names, URI_COLUMNS), _first(names, ID_COLUMNS)
    used = frozenset({uri, id, *START_COLUMNS, *END_COLUMNS, *DURATION_COLUMNS, *LABEL_COLUMNS})
    return _Columns(uri, id, _first(names, START_COLUMNS), _first(names, END_COLUMNS), _first(names, DURATION_COLUMNS),
                    used, LHOTSE_SOURCES in names or "recording" in names)


def row_item(row: dict, *, rule: UriRule) -> SourceItem:
    """One manifest row → the SourceItem it describes (no data; its failure when the rule does not
    allow its audio path); raises BadRow."""
    columns = columns_of(tuple(row))
    raw_uri = row.get(columns.uri) if columns.uri else None
    lhotse = raw_uri is None and columns.lhotse
    if lhotse:
        raw_uri = _lhotse_source(row)
    if raw_uri is None or str(raw_uri) == "":
        raise BadRow("no audio path")
    raw_uri = str(raw_uri)
    raw_id = row.get(columns.id) if columns.id else None
    item_id = redact(raw_uri) if raw_id is None else _id_text(raw_id)  # a presigned URL's signature is no id
    problem = id_problem(item_id)
    if problem:
        raise BadRow(problem)
    start_s = _seconds(row, columns.start)
    end_s = _seconds(row, columns.end)
    duration = _seconds(row, columns.duration)
    if end_s is None and duration is not None:
        end_s = (start_s or 0.0) + duration
    if start_s is not None and start_s < 0:
        raise BadRow(f"negative start {start_s}")
    if end_s is not None and end_s <= (start_s or 0.0):
        raise BadRow(f"end {end_s} s is not after start {start_s or 0.0} s")
    meta = scalar_fields(row, exclude=columns.used.union(LHOTSE_FIELDS) if lhotse else columns.used)
    if lhotse:
        meta.update(_supervision_meta(row.get("supervisions")))
    item = SourceItem(
        id=item_id, uri=raw_uri, labels=split_labels(row.get("labels")),
        human_labels=split_labels(row.get("human_labels")), start_s=start_s, end_s=end_s, meta=meta or None,
    )
    try:
        item.uri = rule.resolve(raw_uri)
    except UriOutsideRule as error:
        item.failure = Failure.from_error(item_id, raw_uri, STAGE_READ, error, "UriOutsideRule")
    return item


def _id_text(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRow(f"id must be a string or an integer, got {type(value).__name__} {value!r}")
    return value if isinstance(value, str) else str(value)


def _seconds(row: dict, column: str | None) -> float | None:
    value = row.get(column) if column else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadRow(f"{column} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise BadRow(f"{column} {value!r} is not a finite number of seconds")
    return seconds


def scalar_fields(record: dict, exclude) -> dict[str, Any]:
    """The fields of `record` that can go into `meta`: scalars (no lists, dicts, None or NaN)."""
    return {str(k): v for k, v in record.items() if k not in exclude and _is_scalar(v)}


def _is_scalar(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool))


def _lhotse_source(row: dict) -> str | None:
    sources = row.get(LHOTSE_SOURCES)
    if sources is None and isinstance(row.get("recording"), dict):
        sources = row["recording"].get(LHOTSE_SOURCES)
    if not sources:
        return None
    # The pipeline keeps channel 0: the source that holds it (or the first).
    source = next((s for s in sources if 0 in (s.get("channels") or [0])), sources[0])
    if source.get("type") not in LHOTSE_SOURCE_TYPES:
        raise BadRow(f"Lhotse source type {source.get('type')!r} is not supported (only {LHOTSE_SOURCE_TYPES})")
    return source.get("source")


def _supervision_meta(supervisions) -> dict:
    if not supervisions:
        return {}
    meta = {}
    texts = [s.get("text") for s in sorted(supervisions, key=lambda s: s.get("start", 0.0)) if s.get("text")]
    if texts:
        meta["text"] = " ".join(texts)
    for name in SUPERVISION_FIELDS:
        values = {s.get(name) for s in supervisions}
        if len(values) == 1 and _is_scalar(next(iter(values))):
            meta[name] = values.pop()
    return meta


# --- the source -----------------------------------------------------------------------------------

class ManifestSource(FilesSource):
    kind = "manifest"

    def iter_units(self) -> Iterator[WorkUnit]:
        fs, path = self.filesystem()
        rows = iter_rows(fs, path)
        first = list(itertools.islice(rows, COLUMNS_FROM_ROWS))
        if not first:
            raise SourceError(f"manifest {self.url} lists no audio")
        columns = set().union(*(row.keys() for row in first))
        if not _first(columns, URI_COLUMNS) and LHOTSE_SOURCES not in columns and "recording" not in columns:
            raise SourceError(f"manifest {self.url} has no audio path column: use one of {', '.join(URI_COLUMNS)} "
                              f"(or Lhotse '{LHOTSE_SOURCES}'); its columns are {sorted(columns)}")
        rule = self.uri_rule(protocol_prefix(fs) + (posixpath.dirname(path) or "/"), what="the manifest's folder")
        return self._units(itertools.chain(first, rows), rule)

    def _units(self, rows: Iterable[dict], rule: UriRule) -> Iterator[WorkUnit]:
        """The rows' units as they come; once all are read, a SourceError if any row was unusable."""
        bad, count = [], 0
        for number, row in enumerate(rows, 1):
            try:
                yield single_unit(row_item(row, rule=rule))
            except BadRow as error:
                count += 1
                if len(bad) < SHOWN:
                    bad.append(f"row {number}: {error}")
        if count:
            raise SourceError(f"manifest {self.url}: {count} unusable row(s), fix them: " + "; ".join(bad))

"""One manifest row and what it means: the row rule (`row_item`) every manifest format shares.

Which column plays which part is worked out once per set of column names (`columns_of`); the
manifest module's docstring gives the columns and the rules for their values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from ..errors import SourceError
from ..records import STAGE_READ, Failure, SourceItem
from ..redaction import redact
from .ids import SHOWN, id_problem
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


class BadRow(ValueError):
    """A manifest row we cannot use; the message says why."""


def split_labels(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        return [p for p in parts if p]
    return [str(v) for v in value]


def first_present(columns, names):
    return next((n for n in names if n in columns), None)


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
    uri, id = first_present(names, URI_COLUMNS), first_present(names, ID_COLUMNS)
    used = frozenset({uri, id, *START_COLUMNS, *END_COLUMNS, *DURATION_COLUMNS, *LABEL_COLUMNS})
    return _Columns(uri, id, first_present(names, START_COLUMNS), first_present(names, END_COLUMNS),
                    first_present(names, DURATION_COLUMNS), used, LHOTSE_SOURCES in names or "recording" in names)


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
    except OverflowError:  # an integer beyond any float
        seconds = math.inf
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
    if not isinstance(sources, list) or not all(isinstance(source, dict) for source in sources):
        raise BadRow(f"Lhotse {LHOTSE_SOURCES!r} must be a list of objects, got {str(sources)[:80]!r}")
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


class BadRows:
    """The rows a listing could not use: how many, and the first few with their numbers."""

    def __init__(self) -> None:
        self.count = 0
        self.shown: list[str] = []

    def add(self, number: int, error: BadRow) -> None:
        self.count += 1
        if len(self.shown) < SHOWN:
            self.shown.append(f"row {number}: {error}")

    def raise_if_any(self, url: str) -> None:
        if self.count:
            raise SourceError(f"manifest {url}: {self.count} unusable row(s), fix them: " + "; ".join(self.shown))

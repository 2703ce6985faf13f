"""A manifest's rows as work-list columns, a batch at a time: CSV rows (`csv_work_tables`) and the
rows of JSON lines and Parquet manifests (`dict_work_tables`).

The row rule (`manifest_rows.row_item`) costs about 14 µs a row in Python, 24 s for a manifest of
AudioSet's 1.74 M rows. Nearly every row of a real manifest is plain, so this module makes the
plain rows' columns with Arrow kernels over a batch and one short loop for their URIs
(`UriRule.resolve_plain`), and hands every other row to the row rule itself. A row is plain when
- its audio value is a path `resolve_plain` answers (a plain path the URI rule allows);
- its id, or its audio path where it has no id, is a valid id (`ids.id_problem`); a typed id is a
  string or an integer;
- each segment value is empty, a number (typed rows) or a plain decimal text (CSV: `1`, `-0.5`,
  `2.5e3`, which Arrow parses to the float Python's `float` gives), finite, the start not
  negative, the end after the start;
- and its columns play the parts the batch's first row's do (CSV: the names are distinct, as
  DictReader keeps only the last cell of a repeated name).
Labels and meta are made by the row rule's own functions (`split_labels`, `scalar_fields`). What a
plain row becomes is what the row rule makes of it: `tests/sources/test_manifest_columns.py`
compares the two on rows of every kind.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .base import single_unit
from .ids import valid_ids
from .manifest_rows import BadRow, BadRows, columns_of, row_item, scalar_fields, split_labels
from .uri_rule import UriRule
from .work_list import BATCH_UNITS, WORK_SCHEMA, units_table

_DECIMAL = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


# --- CSV ---------------------------------------------------------------------------------------------

def csv_header_and_rows(text: str) -> tuple[list[str] | None, Iterator[list[str]]]:
    """The header, and the data rows as `csv.DictReader` sees them (blank lines skipped, each row cut
    or padded with '' to the header's width), from the `csv` module's C reader."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return None, iter(())
    width = len(header)

    def rows() -> Iterator[list[str]]:
        for values in reader:
            if not values:
                continue
            if len(values) != width:
                values = values[:width] + [""] * (width - len(values))
            yield values

    return header, rows()


def csv_row(names: tuple[str, ...] | list[str], values: list[str]) -> dict:
    """A CSV row as the row rule reads it: DictReader's dict (a repeated name keeps its last cell),
    empty cells None."""
    return {name: (value if value != "" else None) for name, value in zip(names, values, strict=True)}


def csv_work_tables(header: list[str], rows: Iterable[list[str]], rule: UriRule, url: str,
                    batch_rows: int = BATCH_UNITS) -> Iterator[pa.Table]:
    """The rows' work units as tables of `WORK_SCHEMA`, in order; once all are read, a SourceError
    naming the first few rows the row rule refused."""
    return _work_tables(rows, lambda batch, number, bad: csv_batch_table(header, batch, rule, number, bad),
                        url, batch_rows)


def csv_batch_table(header: list[str], rows: list[list[str]], rule: UriRule, first_number: int,
                    bad: BadRows) -> pa.Table:
    """One batch of CSV rows (numbered from `first_number`) as a table of `WORK_SCHEMA`; the rows
    the row rule refuses are added to `bad` and left out."""
    names = tuple(header)
    columns = columns_of(names)
    count = len(rows)

    def row_dict(position: int) -> dict:
        return csv_row(names, rows[position])

    if columns.uri is None or len(set(names)) != len(names):
        return _with_row_rule(WORK_SCHEMA.empty_table(), pa.array([False] * count), row_dict, rule, first_number, bad)
    cells = {name: _cells(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}
    screen = _screen(cells[columns.uri], cells.get(columns.id), *(_decimal_seconds(cells.get(name), count)
                     for name in (columns.start, columns.end, columns.duration)), None, rule)
    chosen = screen.chosen.to_pylist()
    meta_at = [(at, name) for at, name in enumerate(names) if name not in columns.used]
    metas = [None] * len(chosen)
    if meta_at:
        for index, position in enumerate(chosen):
            meta = {name: rows[position][at] for at, name in meta_at if rows[position][at] != ""}
            metas[index] = json.dumps(meta) if meta else None
    labels = {name: [split_labels(value) for value in cells[name].filter(screen.plain).to_pylist()]
              if name in cells else None for name in ("labels", "human_labels")}
    return _with_row_rule(screen.table(labels, metas), screen.plain, row_dict, rule, first_number, bad)


def _cells(column: tuple[str, ...]) -> pa.Array:
    """A CSV column as strings, empty cells null (as the row rule reads them)."""
    cells = pa.array(column, pa.string())
    return pc.if_else(pc.equal(cells, ""), None, cells)


def _decimal_seconds(column: pa.Array | None, count: int) -> tuple[pa.Array, pa.Array]:
    """A CSV segment column's seconds, and where its cell is empty or a plain decimal of finite value."""
    if column is None:
        return pa.nulls(count, pa.float64()), pa.array([True] * count)
    decimal = pc.fill_null(pc.match_substring_regex(column, _DECIMAL), False)
    seconds = pc.cast(pc.if_else(decimal, column, None), pa.float64())
    return seconds, pc.or_(pc.is_null(column), pc.fill_null(pc.is_finite(seconds), False))


# --- JSON lines and Parquet: rows of typed values ------------------------------------------------------

def dict_work_tables(rows: Iterable[dict], rule: UriRule, url: str,
                     batch_rows: int = BATCH_UNITS) -> Iterator[pa.Table]:
    """`csv_work_tables` for rows of typed values (dicts, as `manifest.iter_rows` gives them)."""
    return _work_tables(rows, lambda batch, number, bad: dict_batch_table(batch, rule, number, bad), url, batch_rows)


def dict_batch_table(rows: list[dict], rule: UriRule, first_number: int, bad: BadRows) -> pa.Table:
    """`csv_batch_table` for rows of typed values."""
    names = tuple(rows[0])
    columns = columns_of(names)
    count = len(rows)
    if columns.uri is None:
        return _with_row_rule(WORK_SCHEMA.empty_table(), pa.array([False] * count), rows.__getitem__, rule,
                              first_number, bad)
    # A row whose columns play other parts (another name for its start, say) goes to the row rule.
    alike = [tuple(row) == names or columns_of(tuple(row)) == columns for row in rows]
    uris = [row.get(columns.uri) for row in rows]
    ids = [row.get(columns.id) for row in rows] if columns.id else None
    id_texts = None if ids is None else pa.array(
        [value if type(value) is str else str(value) if type(value) is int else None for value in ids], pa.string())
    typed = alike if ids is None else [same and (value is None or type(value) in (str, int))
                                       for same, value in zip(alike, ids, strict=True)]
    screen = _screen(pa.array([value if type(value) is str else None for value in uris], pa.string()), id_texts,
                     *(_typed_seconds([row.get(name) for row in rows] if name else None, count)
                       for name in (columns.start, columns.end, columns.duration)),
                     pa.array(typed, pa.bool_()), rule)
    chosen = [rows[position] for position in screen.chosen.to_pylist()]
    metas = []
    for row in chosen:
        meta = scalar_fields(row, exclude=columns.used)
        metas.append(json.dumps(meta) if meta else None)
    labels = {name: [split_labels(row.get(name)) for row in chosen] for name in ("labels", "human_labels")}
    return _with_row_rule(screen.table(labels, metas), screen.plain, rows.__getitem__, rule, first_number, bad)


def _typed_seconds(values: list | None, count: int) -> tuple[pa.Array, pa.Array]:
    """A typed segment column's seconds, and where its value is empty or a finite number (the row
    rule tells any other value: a string, a boolean)."""
    if values is None:
        return pa.nulls(count, pa.float64()), pa.array([True] * count)
    seconds, ok = [], []
    for value in values:
        number = None
        if type(value) in (int, float):
            try:
                number = float(value)
            except OverflowError:
                number = None
        seconds.append(number)
        ok.append(value is None or (number is not None and math.isfinite(number)))
    return pa.array(seconds, pa.float64()), pa.array(ok, pa.bool_())


# --- what both share ---------------------------------------------------------------------------------

def _work_tables(rows: Iterable, batch_table: Callable[[list, int, BadRows], pa.Table], url: str,
                 batch_rows: int) -> Iterator[pa.Table]:
    rows = iter(rows)
    bad = BadRows()
    number = 1
    while batch := list(itertools.islice(rows, batch_rows)):
        yield batch_table(batch, number, bad)
        number += len(batch)
    bad.raise_if_any(url)


class _Screen:
    """Which rows of a batch are plain, and their id, URI, start and end (meaningful where plain)."""

    def __init__(self, plain: pa.Array, keys: pa.Array, uris: pa.Array, start: pa.Array, end: pa.Array) -> None:
        self.plain, self.keys, self.uris, self.start, self.end = plain, keys, uris, start, end
        self.chosen = pc.indices_nonzero(plain)

    def table(self, labels: dict[str, list | None], metas: list[str | None]) -> pa.Table:
        """The plain rows' units, given their labels and meta (JSON text)."""
        plain, count = self.plain, len(self.chosen)
        none = [None] * count
        return pa.table({
            "key": self.keys.filter(plain).cast(pa.string()),
            "uri": self.uris.filter(plain),
            "container": pa.array([False] * count),
            "labels": none if labels["labels"] is None else labels["labels"],
            "human_labels": none if labels["human_labels"] is None else labels["human_labels"],
            "start_s": self.start.filter(plain),
            "end_s": self.end.filter(plain),
            "meta": pa.array(metas, pa.string()),
            "failure": pa.nulls(count, pa.binary()),
            "duplicates": pa.nulls(count, pa.binary()),
        }, schema=WORK_SCHEMA)


def _screen(raw_uris: pa.Array, ids: pa.Array | None, start: tuple, end: tuple, duration: tuple,
            typed: pa.Array | None, rule: UriRule) -> _Screen:
    """The screen of a batch: its audio values (strings, else null), ids (strings, null where none),
    segment seconds with where each is acceptable, and where the values' types are ones this screen
    reads (None: all)."""
    (start, start_ok), (end, end_ok), (duration, duration_ok) = start, end, duration
    uris = rule.resolve_plain(raw_uris)
    keys = pc.coalesce(ids, raw_uris) if ids is not None else raw_uris
    from_zero = pc.coalesce(start, 0.0)
    end = pc.if_else(pc.and_(pc.is_null(end), pc.is_valid(duration)), pc.add(from_zero, duration), end)
    masks = [pc.is_valid(uris), valid_ids(keys), start_ok, end_ok, duration_ok,
             pc.or_kleene(pc.is_null(start), pc.greater_equal(start, 0.0)),
             pc.or_kleene(pc.is_null(end), pc.greater(end, from_zero))]
    if typed is not None:
        masks.append(typed)
    plain = masks[0]
    for mask in masks[1:]:
        plain = pc.and_(plain, mask)
    return _Screen(pc.fill_null(plain, False), keys, uris, start, end)


def _with_row_rule(plain_rows: pa.Table, plain: pa.Array, row_dict: Callable[[int], dict], rule: UriRule,
                   first_number: int, bad: BadRows) -> pa.Table:
    """The batch's table: the plain rows' units, with the row rule's units for the other rows in
    their places; the rows it refuses go to `bad`."""
    others, positions = [], []
    for position in pc.indices_nonzero(pc.invert(plain)).to_pylist():
        try:
            others.append(single_unit(row_item(row_dict(position), rule=rule)))
            positions.append(position)
        except BadRow as error:
            bad.add(first_number + position, error)
    if not others:
        return plain_rows
    chosen = pc.indices_nonzero(plain).cast(pa.int64())
    order = pc.sort_indices(pa.concat_arrays([chosen, pa.array(positions, pa.int64())]))
    return pa.concat_tables([plain_rows, units_table(others)]).take(order)

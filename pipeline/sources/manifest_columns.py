"""A CSV manifest's rows as work-list columns, a batch at a time (`csv_work_tables`).

The row rule (`manifest_rows.row_item`) costs about 14 µs a row in Python, 24 s for a manifest of
AudioSet's 1.74 M rows. Nearly every row of a real manifest is plain, so this module makes the
plain rows' columns with Arrow kernels over a batch and one short loop for their URIs
(`UriRule.resolve_plain`), and hands every other row to the row rule itself. A row is plain when
- its audio cell is a path `resolve_plain` answers (a plain path the URI rule allows);
- its id, or its audio path where the id cell is empty, is a valid id (`ids.id_problem`);
- each segment cell is empty or a plain decimal number (`1`, `-0.5`, `2.5e3`: Arrow parses these
  to the same float as Python's `float`), finite, the start not negative, the end after the start;
- and the column names are distinct (DictReader keeps the last cell of a repeated name).
What a plain row becomes is what the row rule makes of it: `tests/sources/test_manifest_columns.py`
compares the two on rows of every kind.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from .base import single_unit
from .ids import valid_ids
from .manifest_rows import LABEL_COLUMNS, BadRow, BadRows, columns_of, row_item, split_labels
from .uri_rule import UriRule
from .work_list import BATCH_UNITS, WORK_SCHEMA, units_table

_DECIMAL = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


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


def csv_work_tables(header: list[str], rows: Iterable[list[str]], rule: UriRule, url: str,
                    batch_rows: int = BATCH_UNITS) -> Iterator[pa.Table]:
    """The rows' work units as tables of `WORK_SCHEMA`, in order; once all are read, a SourceError
    naming the first few rows the row rule refused."""
    rows = iter(rows)
    bad = BadRows()
    number = 1
    while batch := list(itertools.islice(rows, batch_rows)):
        yield batch_table(header, batch, rule, number, bad)
        number += len(batch)
    bad.raise_if_any(url)


def batch_table(header: list[str], rows: list[list[str]], rule: UriRule, first_number: int,
                bad: BadRows) -> pa.Table:
    """One batch of rows (numbered from `first_number`) as a table of `WORK_SCHEMA`; the rows the
    row rule refuses are added to `bad` and left out."""
    names = tuple(header)
    cells = {name: _cells(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}
    plain, keys, uris, start, end = _plain_rows(names, cells, rule, len(rows))
    chosen = pc.indices_nonzero(plain)
    table = _plain_table(names, rows, cells, chosen, plain, keys, uris, start, end)
    if len(chosen) == len(rows):
        return table
    others, positions = [], []
    for position in pc.indices_nonzero(pc.invert(plain)).to_pylist():
        row = {name: (value if value != "" else None) for name, value in zip(names, rows[position], strict=True)}
        try:
            others.append(single_unit(row_item(row, rule=rule)))
            positions.append(position)
        except BadRow as error:
            bad.add(first_number + position, error)
    if not others:
        return table
    order = pc.sort_indices(pa.concat_arrays([chosen.cast(pa.int64()), pa.array(positions, pa.int64())]))
    return pa.concat_tables([table, units_table(others)]).take(order)


def _cells(column: tuple[str, ...]) -> pa.Array:
    """A CSV column as strings, empty cells null (as the row rule reads them)."""
    cells = pa.array(column, pa.string())
    return pc.if_else(pc.equal(cells, ""), None, cells)


def _plain_rows(names: tuple[str, ...], cells: dict[str, pa.Array], rule: UriRule, count: int):
    """Which rows are plain, and their id, URI, start and end columns (meaningful where plain)."""
    columns = columns_of(names)
    if columns.uri is None or len(cells) != len(names):
        text, seconds = pa.nulls(count, pa.string()), pa.nulls(count, pa.float64())
        return pa.array([False] * count), text, text, seconds, seconds
    raw = cells[columns.uri]
    uris = rule.resolve_plain(raw)
    keys = pc.coalesce(cells[columns.id], raw) if columns.id else raw
    start, start_ok = _seconds(cells, columns.start, count)
    end, end_ok = _seconds(cells, columns.end, count)
    duration, duration_ok = _seconds(cells, columns.duration, count)
    from_zero = pc.coalesce(start, 0.0)
    end = pc.if_else(pc.and_(pc.is_null(end), pc.is_valid(duration)), pc.add(from_zero, duration), end)
    plain = _all(
        pc.is_valid(uris),
        valid_ids(keys),
        start_ok, end_ok, duration_ok,
        pc.or_kleene(pc.is_null(start), pc.greater_equal(start, 0.0)),
        pc.or_kleene(pc.is_null(end), pc.greater(end, from_zero)),
    )
    return plain, keys, uris, start, end


def _seconds(cells: dict[str, pa.Array], name: str | None, count: int) -> tuple[pa.Array, pa.Array]:
    """A segment column's seconds, and where its cell is empty or a plain decimal of finite value."""
    if name is None:
        return pa.nulls(count, pa.float64()), pa.array([True] * count)
    column = cells[name]
    decimal = pc.fill_null(pc.match_substring_regex(column, _DECIMAL), False)
    seconds = pc.cast(pc.if_else(decimal, column, None), pa.float64())
    return seconds, pc.or_(pc.is_null(column), pc.fill_null(pc.is_finite(seconds), False))


def _all(*masks: pa.Array) -> pa.Array:
    out = masks[0]
    for mask in masks[1:]:
        out = pc.and_(out, mask)
    return pc.fill_null(out, False)


def _plain_table(names, rows, cells, chosen, plain, keys, uris, start, end) -> pa.Table:
    columns = columns_of(names)
    count = len(chosen)
    labels = {name: [split_labels(value) for value in cells[name].filter(plain).to_pylist()]
              if name in cells else [None] * count for name in LABEL_COLUMNS}
    meta_at = [(position, name) for position, name in enumerate(names) if name not in columns.used]
    metas = [None] * count
    if meta_at:
        for index, position in enumerate(chosen.to_pylist()):
            row = rows[position]
            meta = {name: row[at] for at, name in meta_at if row[at] != ""}
            metas[index] = json.dumps(meta) if meta else None
    return pa.table({
        "key": keys.filter(plain).cast(pa.string()),
        "uri": uris.filter(plain),
        "container": pa.array([False] * count),
        "labels": labels["labels"],
        "human_labels": labels["human_labels"],
        "start_s": start.filter(plain),
        "end_s": end.filter(plain),
        "meta": metas,
        "failure": pa.nulls(count, pa.binary()),
        "duplicates": pa.nulls(count, pa.binary()),
    }, schema=WORK_SCHEMA)

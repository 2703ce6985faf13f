"""A source's work units as one Arrow table (`WorkList`): what the driver holds between listing and
reading, and what Ray Data reads from.

A list of `WorkUnit` objects costs about a kilobyte per input on the driver (the objects, then
their pickles, then Ray Data's blocks of those); columns cost the bytes of the id and the URI and a
few more. The list is built from the listing in batches (`from_units`), so the objects of one
batch at most exist at a time, and the plan's steps over it are vectorised: leaving out the inputs
already complete is an anti-join on the key column (`without_keys`), `--dedupe` a group-by.

Columns: `key` and `uri` (the unit's), `container` (a tar shard or Parquet file: its inputs are
known once read), then a single input's known fields (`labels`, `human_labels`, `start_s`, `end_s`,
`meta` as JSON text) and the rare ones pickled (`failure`: known unreadable at listing,
`duplicates`: a container's rows whose id an earlier row holds).
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..records import SourceItem
from .base import Source, WorkUnit, user_errors

WORK_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("uri", pa.string()),
    ("container", pa.bool_()),
    ("labels", pa.list_(pa.string())),
    ("human_labels", pa.list_(pa.string())),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("meta", pa.string()),
    ("failure", pa.binary()),
    ("duplicates", pa.binary()),
])
BATCH_UNITS = 65_536  # units turned into columns at a time while listing


def list_work(source: Source) -> WorkList:
    """Every unit of `source` as columns, built as the listing goes (a user's mistake is a
    `SourceError`, as for `Source.list_units`)."""
    with user_errors(source.url):
        tables = source.work_tables()
        if tables is None:
            return WorkList.from_units(source.iter_units())
        return WorkList.from_tables(tables)


def units_table(units: list[WorkUnit]) -> pa.Table:
    """`units` as one table of `WORK_SCHEMA`."""
    items = [unit.item for unit in units]
    return pa.table({
        "key": [unit.key for unit in units],
        "uri": [unit.uri for unit in units],
        "container": [item is None for item in items],
        "labels": [item.labels if item else None for item in items],
        "human_labels": [item.human_labels if item else None for item in items],
        "start_s": [item.start_s if item else None for item in items],
        "end_s": [item.end_s if item else None for item in items],
        "meta": [json.dumps(item.meta) if item and item.meta else None for item in items],
        "failure": [pickle.dumps(item.failure) if item and item.failure else None for item in items],
        "duplicates": [pickle.dumps(unit.duplicates) if unit.duplicates else None for unit in units],
    }, schema=WORK_SCHEMA)


def singles_table(keys: list[str], uris: list[str]) -> pa.Table:
    """Single inputs known by their id and URI alone (files of a folder), as a table of `WORK_SCHEMA`."""
    count = len(keys)
    return pa.table({"key": pa.array(keys, pa.string()), "uri": pa.array(uris, pa.string()),
                     "container": pa.array([False] * count),
                     **{field.name: pa.nulls(count, field.type) for field in WORK_SCHEMA if field.name not in
                        ("key", "uri", "container")}}, schema=WORK_SCHEMA)


def table_units(table: pa.Table | pa.RecordBatch) -> Iterator[WorkUnit]:
    """The units of a table of `WORK_SCHEMA` (a Ray Data batch of it, or a slice), in order."""
    for row in table.to_pylist():
        duplicates = pickle.loads(row["duplicates"]) if row["duplicates"] is not None else None
        if row["container"]:
            yield WorkUnit(key=row["key"], uri=row["uri"], duplicates=duplicates)
            continue
        item = SourceItem(id=row["key"], uri=row["uri"], labels=row["labels"], human_labels=row["human_labels"],
                          start_s=row["start_s"], end_s=row["end_s"],
                          meta=json.loads(row["meta"]) if row["meta"] is not None else None,
                          failure=pickle.loads(row["failure"]) if row["failure"] is not None else None)
        yield WorkUnit(key=row["key"], uri=row["uri"], item=item, duplicates=duplicates)


@dataclass(frozen=True)
class WorkList:
    """The units left to read, in source order, as columns (`WORK_SCHEMA`). Iterating gives `WorkUnit`s."""

    table: pa.Table

    @classmethod
    def from_units(cls, units: Iterable[WorkUnit], batch_units: int = BATCH_UNITS) -> WorkList:
        """The list of `units`, consumed `batch_units` at a time (a listing may be a generator)."""
        units = iter(units)
        tables = []
        while batch := list(itertools.islice(units, batch_units)):
            tables.append(units_table(batch))
        return cls(pa.concat_tables(tables) if tables else WORK_SCHEMA.empty_table())

    @classmethod
    def from_tables(cls, tables: Iterable[pa.Table]) -> WorkList:
        """The list of the units in `tables` (of `WORK_SCHEMA`), in order."""
        return cls(pa.concat_tables([WORK_SCHEMA.empty_table(), *tables]))

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[WorkUnit]:
        for batch in self.table.to_batches(max_chunksize=BATCH_UNITS):
            yield from table_units(batch)

    @property
    def containers(self) -> int:
        """How many units are containers (their inputs are known once read)."""
        return pc.sum(self.table["container"]).as_py() or 0

    def container_units(self) -> Iterator[WorkUnit]:
        return iter(WorkList(self.table.filter(self.table["container"])))

    def single_keys(self) -> pa.ChunkedArray:
        """The ids of the single-input units, in order."""
        return self.table.filter(pc.invert(self.table["container"]))["key"]

    def readable_uris(self) -> Iterator[str]:
        """The URIs of the units not known unreadable at listing, in order (from the columns alone)."""
        readable = self.table.filter(pc.is_null(self.table["failure"]))["uri"]
        for chunk in readable.chunks:
            yield from chunk.to_pylist()

    def head(self, count: int) -> WorkList:
        return WorkList(self.table.slice(0, count))

    def without_keys(self, keys: set[str] | pa.Array) -> WorkList:
        """The list without the single inputs whose id is in `keys` (containers stay: their inputs are
        known once read)."""
        if not len(keys):
            return self
        value_set = keys if isinstance(keys, pa.Array) else pa.array(list(keys), pa.string())
        listed = pc.is_in(self.table["key"], value_set=value_set)
        return WorkList(self.table.filter(pc.or_(self.table["container"], pc.invert(listed))))

    def keep_first_of_each_key(self) -> WorkList:
        """Each single input's first unit; later units with an id already listed are left out."""
        numbered = self.table.append_column("_row", pa.array(range(len(self)), pa.int64()))
        singles = numbered.filter(pc.invert(numbered["container"]))
        first = singles.group_by("key", use_threads=False).aggregate([("_row", "min")])["_row_min"]
        keep = pc.or_(numbered["container"], pc.is_in(numbered["_row"], value_set=first))
        return WorkList(self.table.filter(keep))

    def blocks(self, max_blocks: int) -> list[pa.Table]:
        """The list in at most `max_blocks` slices of about equal size (Ray Data's blocks)."""
        count = min(len(self), max_blocks)
        if not count:
            return []
        size = -(-len(self) // count)
        return [self.table.slice(start, size) for start in range(0, len(self), size)]

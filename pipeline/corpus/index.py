"""Which committed token rows a training corpus may use, decided from the key columns only.

A training document is a whole input: every one of its `num_chunks` chunks committed and no
failure row for it. An input with a chunk missing (its source failed part-way, or a run stopped
before its last chunk and was not resumed) or with a failure row is left out whole, never as
orphan chunks. A key (id, chunk_index) committed twice (two runs writing into one folder) is read
once, from the first shard that holds it.

The index keeps only what is left out (normally nothing), so it costs no memory per row once built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY_COLUMNS = ["id", "chunk_index", "num_chunks"]


@dataclass(frozen=True)
class CorpusIndex:
    rows: int  # rows a reader emits: each key once, complete inputs only
    documents: int  # complete inputs
    incomplete_ids: tuple[str, ...]  # inputs left out: a chunk missing or a failure recorded
    duplicate_rows: int  # rows left out because an earlier shard holds the same (id, chunk_index)
    dropped: dict[str, np.ndarray] = field(default_factory=dict)  # shard -> row positions left out

    def keep_mask(self, shard: str, num_rows: int) -> np.ndarray | None:
        """A boolean mask of the shard's rows to emit, or None when every row is kept."""
        rows = self.dropped.get(shard)
        if rows is None:
            return None
        mask = np.ones(num_rows, bool)
        mask[rows] = False
        return mask


def build_index(shard_keys: list[tuple[str, pa.Table]], failed_ids: set[str] | list[str]) -> CorpusIndex:
    """`shard_keys`: (shard path, its KEY_COLUMNS table) in shard order; `failed_ids`: ids with a
    failure row."""
    tables = []
    for number, (_, table) in enumerate(shard_keys):
        # One int64 position per row, ordered by (shard, row): the first copy of a key has the smallest.
        position = (np.int64(number) << 32) + np.arange(table.num_rows, dtype=np.int64)
        tables.append(table.select(KEY_COLUMNS).append_column("position", pa.array(position)))
    if not tables:
        return CorpusIndex(0, 0, (), 0)
    keys = pa.concat_tables(tables).combine_chunks()

    per_id = keys.group_by("id").aggregate([
        ("chunk_index", "count"), ("chunk_index", "count_distinct"), ("chunk_index", "min"),
        ("chunk_index", "max"), ("num_chunks", "min"), ("num_chunks", "max"),
    ])
    total = per_id["num_chunks_max"]
    covered = pc.and_(
        pc.and_(pc.equal(per_id["chunk_index_count_distinct"], total), pc.equal(per_id["num_chunks_min"], total)),
        pc.and_(pc.greater_equal(per_id["chunk_index_min"], 0), pc.less(per_id["chunk_index_max"], total)))
    failed = pa.array(sorted(set(failed_ids)), pa.string())
    complete = pc.and_(covered, pc.invert(pc.is_in(per_id["id"], value_set=failed)))
    incomplete = per_id["id"].filter(pc.invert(complete))
    keep = pc.invert(pc.is_in(keys["id"], value_set=incomplete))

    copies = pc.subtract(per_id["chunk_index_count"], per_id["chunk_index_count_distinct"])
    duplicate_rows = int(pc.sum(copies).as_py() or 0)
    if duplicate_rows:  # rare: keep the first copy of each key, looking only at the ids that have copies
        repeated = pc.is_in(keys["id"], value_set=per_id["id"].filter(pc.greater(copies, 0)))
        firsts = keys.filter(repeated).group_by(["id", "chunk_index"]).aggregate([("position", "min")])
        later_copy = pc.and_(repeated, pc.invert(pc.is_in(keys["position"], value_set=firsts["position_min"])))
        keep = pc.and_(keep, pc.invert(later_copy))

    left_out = keys["position"].filter(pc.invert(keep)).to_numpy()
    dropped = {}
    for number in np.unique(left_out >> 32):
        dropped[shard_keys[int(number)][0]] = left_out[(left_out >> 32) == number] & 0xFFFFFFFF
    return CorpusIndex(
        rows=int(pc.sum(keep).as_py() or 0),
        documents=len(per_id) - len(incomplete),
        incomplete_ids=tuple(sorted(incomplete.to_pylist())),
        duplicate_rows=duplicate_rows,
        dropped=dropped,
    )

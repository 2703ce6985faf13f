"""What one write task reports to the driver: `ShardSummary`, the shards one batch committed.

The writer fills it (`shards.write_records`, then the write stage adds the encoder's counts), Ray
Data carries it as one row (`to_row`/`from_row`: the only place it is encoded, mappings as JSON
text), and the driver adds summaries up (`+`, as datatrove's `Stats`) for the run's record and folds
their keys into the output's `CommittedKeys`.

A committed shard's footer holds the same facts (`footer_keys` writes them, `from_footer` reads them
back as the shard's summary), so resuming an output folds its shards exactly as a run folds its
write tasks' summaries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace

import pyarrow as pa
import pyarrow.compute as pc

# fields Ray Data carries as JSON text (its rows hold scalars and strings)
_JSON_FIELDS = ("failure_types", "retryable_types", "dtype_per_component", "provenance",
                "token_keys", "failed_ids", "retryable_ids", "superseded")
_KEY_FIELDS = ("token_keys", "failed_ids", "retryable_ids", "superseded")


@dataclass(slots=True)
class ShardSummary:
    """The shards one batch committed (or the sum of several batches')."""

    token_rows: int = 0
    failed: int = 0  # final failure rows
    retryable: int = 0  # rows under retryable/
    inputs_done: int = 0  # inputs whose last chunk or failure was committed (the progress bar)
    audio_s: float = 0.0
    token_pairs: int = 0
    shards: int = 0
    failure_types: Counter = field(default_factory=Counter)  # final failures by error type
    retryable_types: Counter = field(default_factory=Counter)
    encoder_passes: int = 0
    encoder_windows: int = 0
    dtype_per_component: dict = field(default_factory=dict)  # the encoder's numerics (the same for a whole run)
    provenance: dict = field(default_factory=dict)  # the codec provenance of the tokens written (empty: none)
    # the keys committed, so the driver keeps the output's state without reading shards again
    token_keys: list = field(default_factory=list)  # [id, chunk_index, num_chunks]
    failed_ids: list = field(default_factory=list)
    retryable_ids: list = field(default_factory=list)  # [id, the retryable/ shard holding its row]
    superseded: dict = field(default_factory=dict)  # shard -> the ids of its rows that new rows superseded

    @classmethod
    def from_footer(cls, kind: str, shard: str, footer: dict, void: Collection[str] = (),
                    row_types: list[str] | None = None) -> ShardSummary:
        """The summary of the committed shard `shard` (`kind`: tokens, failures or retryable) from its
        footer's keys (`footer_keys`, plus `provenance` for tokens), without the rows `void` names
        (superseded; `row_types`: each row's error type, needed then if the footer lacks them)."""
        declared = {target: list(ids) for target, ids in (footer.get("supersedes") or {}).items()}
        if kind == "tokens":
            keys = footer["keys"]
            return cls(token_rows=len(keys), token_pairs=footer["token_pairs"], audio_s=footer["audio_s"], shards=1,
                       provenance=footer.get("provenance") or {}, token_keys=keys, superseded=declared)
        ids = footer["ids"]
        if void:
            kept = [(key, kind_) for key, kind_ in zip(ids, row_types or footer["types"], strict=True)
                    if key not in void]
            ids, types = [key for key, _ in kept], Counter(kind_ for _, kind_ in kept)
        else:
            types = Counter(footer["error_types"])
        if kind == "failures":
            return cls(failed=len(ids), failure_types=types, failed_ids=ids, shards=1, superseded=declared)
        return cls(retryable=len(ids), retryable_types=types, retryable_ids=[[key, shard] for key in ids], shards=1,
                   superseded=declared)

    @property
    def rows(self) -> int:
        return self.token_rows + self.failed + self.retryable

    def __add__(self, other: ShardSummary) -> ShardSummary:
        total = ShardSummary()
        for f in fields(ShardSummary):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "superseded":
                value = {shard: sorted({*mine.get(shard, ()), *theirs.get(shard, ())}) for shard in {*mine, *theirs}}
            elif f.name in ("dtype_per_component", "provenance"):  # one per run: the first one given
                value = mine or theirs
            else:  # numbers, counters and lists
                value = mine + theirs
            setattr(total, f.name, value)
        return total

    def without_keys(self) -> ShardSummary:
        """The counts alone (what a run's total keeps: the keys are folded into `CommittedKeys`)."""
        return replace(self, **{name: type(getattr(self, name))() for name in _KEY_FIELDS})

    def to_row(self) -> dict:
        """One Ray Data row: numbers as they are, the rest as JSON text."""
        return {f.name: json.dumps(getattr(self, f.name), sort_keys=True) if f.name in _JSON_FIELDS
                else getattr(self, f.name) for f in fields(ShardSummary)}

    @classmethod
    def from_row(cls, row: dict) -> ShardSummary:
        values = {}
        for f in fields(cls):
            value = row[f.name]
            if f.name in _JSON_FIELDS:
                value = json.loads(value)
                values[f.name] = Counter(value) if f.name in ("failure_types", "retryable_types") else value
            else:  # Ray may hand NumPy scalars back
                values[f.name] = float(value) if f.name == "audio_s" else int(value)
        return cls(**values)


def footer_keys(table: pa.Table) -> dict:
    """What a shard's footer says of its rows (read back by `ShardSummary.from_footer`): a tokens
    shard's keys `[id, chunk_index, num_chunks]`, token pairs and audio seconds; a failure shard's
    ids, their error types in order, and the count of each."""
    if "chunk_index" in table.column_names:  # a tokens shard
        return {
            "keys": [list(k) for k in zip(*(table[c].to_pylist() for c in ("id", "chunk_index", "num_chunks")),
                                          strict=True)],
            "token_pairs": int(pc.sum(table["num_frames"]).as_py() or 0),
            "audio_s": float(pc.sum(table["duration_s"]).as_py() or 0.0),
        }
    types = table["error_type"].to_pylist()
    return {"ids": table["id"].to_pylist(), "error_types": dict(Counter(types)), "types": types}

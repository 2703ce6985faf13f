"""What one write task reports to the driver: `ShardSummary`, the shards one batch committed.

The writer fills it (`shards.write_records`, then the write stage adds the encoder's counts), Ray
Data carries it as one row (`to_row`/`from_row`: the only place it is encoded, mappings as JSON
text), and the driver adds summaries up (`+`, as datatrove's `Stats`) for the run's record and folds
their keys into the output's `CommittedKeys`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields, replace

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

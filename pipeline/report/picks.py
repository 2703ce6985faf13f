"""Seeded choice of the rows to decode (the picks), spread across shards and labels.

The picker goes round the shards (in a seeded order) taking one row per shard per round; within a
shard it takes the row's label group that has been picked least so far across all the picks
(ties broken by the seeded generator), and a random row of it. So N picks touch min(N, shards)
shards, and labels are covered as evenly as the shards allow. Same rows, same seed: same picks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from .token_stats import shard_name

INDEX_COLUMNS = ["labels", "human_labels"]
UNLABELLED = "(unlabelled)"


def primary_label(labels, human_labels) -> str:
    """The first human-readable label, else the first label id, else "(unlabelled)"."""
    for values in (human_labels, labels):
        for value in values or ():
            if value:
                return str(value)
    return UNLABELLED


def index_rows(fs, shards: list[str]) -> dict[str, dict[str, list[int]]]:
    """shard path → primary label → row numbers, for every readable shard (label columns only, so
    memory is a few bytes per row)."""
    groups: dict[str, dict[str, list[int]]] = {}
    for path in shards:
        try:
            table = pq.read_table(path, columns=INDEX_COLUMNS, filesystem=fs)
        except Exception:  # noqa: BLE001 - unreadable shards are reported by the token scan
            continue
        labels = groups.setdefault(path, {})
        for number, (label_ids, human) in enumerate(zip(*(table[c].to_pylist() for c in INDEX_COLUMNS), strict=True)):
            labels.setdefault(primary_label(label_ids, human), []).append(number)
    return groups


def choose_picks(groups: dict[str, dict[str, list[int]]], count: int, seed: int) -> list[dict]:
    """Up to `count` picks {shard_path, shard, row, label}: seeded, round-robin over shards,
    least-picked label first."""
    rng = np.random.default_rng(seed)
    pools = {shard: {label: [rows[i] for i in rng.permutation(len(rows))] for label, rows in sorted(labels.items())}
             for shard, labels in sorted(groups.items())}
    shard_order = [sorted(pools)[i] for i in rng.permutation(len(pools))]
    picked: list[dict] = []
    label_counts: Counter = Counter()
    while len(picked) < count and any(any(g.values()) for g in pools.values()):
        for shard in shard_order:
            if len(picked) >= count:
                break
            available = [label for label, members in pools[shard].items() if members]
            if not available:
                continue
            tie_break = rng.permutation(len(available))
            label = min(zip(available, tie_break, strict=True), key=lambda item: (label_counts[item[0]], item[1]))[0]
            picked.append({"shard_path": shard, "shard": shard_name(shard), "row": pools[shard][label].pop(),
                           "label": label})
            label_counts[label] += 1
    return picked


def read_picked_rows(fs, picks: list[dict]) -> list[dict]:
    """The full token rows of the picks (all columns), in pick order."""
    by_shard: dict[str, list[int]] = {}
    for pick in picks:
        by_shard.setdefault(pick["shard_path"], []).append(pick["row"])
    full = {}
    for path, numbers in by_shard.items():
        table = pq.read_table(path, filesystem=fs).take(numbers)
        for number, row in zip(numbers, table.to_pylist(), strict=True):
            full[(path, number)] = row
    return [{**full[(p["shard_path"], p["row"])], "shard": p["shard"], "shard_path": p["shard_path"], "row": p["row"]}
            for p in picks]

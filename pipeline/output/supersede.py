"""The supersede rule of an output folder, as plain functions (the folder applies them; see the
rule in `folder.py`'s docstring and the README's "Retrying recorded failures").

A shard's footer may declare `supersedes`: {shard path relative to the output: [ids]}, the old
rows (in failures/ or retryable/) that its own rows replace. A row is void when a committed shard
other than its own declares it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def relative_shard(path: str) -> str:
    """`<root>/failures/part-x.parquet` → `failures/part-x.parquet` (how declarations name shards)."""
    return "/".join(path.rsplit("/", 2)[-2:])


def declared_void(declarations: Mapping[str, Mapping[str, Iterable[str]]],
                  holdings: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """{shard: ids void in it}: `declarations` {declaring shard: its `supersedes`} applied to
    `holdings` {shard: the ids it holds}; a shard's declarations about itself do not count (a
    retry may rewrite a shard of the same name), nor those about rows no longer there."""
    void: dict[str, set[str]] = {}
    for declaring, targets in declarations.items():
        for target, ids in targets.items():
            if target != declaring and target in holdings:
                void.setdefault(target, set()).update(ids)
    return {shard: found for shard, ids in void.items() if (found := ids & set(holdings[shard]))}


def declarations_for(keys: Iterable[str], previous: Mapping[str, str]) -> dict[str, list[str]]:
    """A new shard's `supersedes`: for each of its keys (ids, or the work units they were read
    from) that `previous` {key: shard} maps, that shard's old row."""
    out: dict[str, list[str]] = {}
    for key in dict.fromkeys(keys):
        if key in previous:
            out.setdefault(previous[key], []).append(key)
    return out

"""Reading architecture from a state dict's keys."""

from __future__ import annotations


def count_indexed(state: dict, template: str) -> int:
    """How many consecutive indices 0, 1, ... have `template.format(i)` as a key
    (e.g. `"blocks.{}.norm1.weight"` → the number of blocks)."""
    count = 0
    while template.format(count) in state:
        count += 1
    return count

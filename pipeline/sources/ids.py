"""Input ids: validation, duplicates and the dedupe policy.

How ids are made is the id rule (`ID_RULE_VERSION`, in the run fingerprint: an output made with
another rule is refused): a file's id is its path relative to the source root of `listing.py`,
a tar input's `<shard id>/<key>` (`<shard id>/<key>.<ext>` for each audio member when a key holds
several), a Parquet row's its id column, else `<file id>#<row>`; manifests and AudioSet CSVs name
their own.

Duplicates are one rule for every source: the first place that holds an id keeps it. Ids listed
before the run (manifest rows, files) are refused in one line, or deduplicated with
`--dedupe first`. Ids inside containers (tar members, Parquet rows) are checked too: a later
copy becomes a `DuplicateId` failure row naming both places (under its own position, never the
taken id), or, with `--dedupe first`, is left out.

An id is any non-empty string of at most `MAX_ID_CHARS` characters without control characters
(NUL, newline, tab, the C0/C1 ranges: they are cut or rewritten by tools downstream). Ids are
never rewritten to make them valid: a bad id is the user's to fix, so a listing with bad ids is a
`SourceError` naming the first few.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import get_args

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, SourceError
from .base import DedupePolicy
from .work_list import WorkList

MAX_ID_CHARS = 1024
ID_RULE_VERSION = 2  # 2: one listing root for every spelling (a single file: its name); tar keys per audio member
DEDUPE_POLICIES: tuple[str, ...] = get_args(DedupePolicy)
DUPLICATE_ERROR = "DuplicateId"
SHOWN = 5  # bad rows or duplicate ids named in an error
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (category Cc), all of them
_CONTROL_RE2 = r"[\x00-\x1f\x7f-\x{9f}]"  # the same, in the spelling of Arrow's regex engine (RE2)


def id_problem(value: object) -> str | None:
    """Why `value` is not a usable id, or None."""
    if not isinstance(value, str):
        return f"id must be a string, got {type(value).__name__} {value!r}"
    if not value:
        return "empty id"
    if len(value) > MAX_ID_CHARS:
        return f"id of {len(value)} characters (at most {MAX_ID_CHARS})"
    bad = _CONTROL.search(value)
    if bad is not None:
        return f"id {value[:60]!r} contains the control character {bad.group()!r}"
    return None


def valid_ids(ids: pa.Array) -> pa.BooleanArray:
    """Where `id_problem` finds nothing wrong with an id of a string column (null: not an id), with
    Arrow kernels over the whole column."""
    length = pc.utf8_length(ids)
    return pc.fill_null(pc.and_(pc.and_(pc.greater(length, 0), pc.less_equal(length, MAX_ID_CHARS)),
                                pc.invert(pc.match_substring_regex(ids, _CONTROL_RE2))), False)


class BadIds:
    """The invalid ids a listing meets as it goes: how many, and the first few by entry and place."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.entries = 0
        self.count = 0
        self.shown: list[str] = []

    def see_all(self, ids: list[str], places: list[str]) -> None:
        """The next entries' ids and where each is (checked as a column: only an invalid id costs Python)."""
        first = self.entries
        self.entries += len(ids)
        for at in pc.indices_nonzero(pc.invert(valid_ids(pa.array(ids, pa.string())))).to_pylist():
            problem = id_problem(ids[at])
            if problem:
                self.count += 1
                if len(self.shown) < SHOWN:
                    self.shown.append(f"entry {first + at + 1} ({places[at][:80]}): {problem}")

    def raise_if_any(self) -> None:
        if self.count:
            raise SourceError(f"{self.where}: {self.count} invalid id(s) (ids are non-empty strings of at most "
                              f"{MAX_ID_CHARS} characters without control characters); fix them in the source: "
                              + "; ".join(self.shown))


def find_duplicate_ids(work: WorkList) -> dict[str, int]:
    """Ids listed more than once among single-input units → how many times, in first-seen order."""
    counts = pc.value_counts(work.single_keys())  # (Arrow's hash kernels keep first-seen order)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    return dict(zip(repeated.field("values").to_pylist(), repeated.field("counts").to_pylist(), strict=True))


def dedupe_units(work: WorkList, policy: str) -> WorkList:
    """Apply `--dedupe`: "refuse" raises a SourceError listing the first few duplicate ids,
    "first" keeps the first unit of each id (containers are kept as they are)."""
    if policy not in DEDUPE_POLICIES:
        raise ConfigError(f"unknown dedupe policy {policy!r}: use one of {', '.join(DEDUPE_POLICIES)}")
    duplicates = find_duplicate_ids(work)
    if not duplicates:
        return work
    if policy == "refuse":
        shown = ", ".join(f"{id!r} x{n}" for id, n in list(duplicates.items())[:SHOWN])
        more = f" and {len(duplicates) - SHOWN} more" if len(duplicates) > SHOWN else ""
        raise SourceError(f"{len(duplicates)} id(s) are listed more than once: {shown}{more}; make the ids unique "
                          "or rerun with --dedupe first to keep the first of each")
    return work.keep_first_of_each_key()


def later_copies(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(id, place) pairs in source order → {place of each later copy of an id: place of the first}."""
    first: dict[str, str] = {}
    later = {}
    for id, place in entries:
        if id in first:
            later[place] = first[id]
        else:
            first[id] = place
    return later


def duplicate_message(id: str, place: str, first_place: str) -> str:
    return (f"id {id[:200]!r} at {place} is already taken by {first_place}: the first place keeps it (make the ids "
            "unique, or rerun with --dedupe first to leave later copies out)")

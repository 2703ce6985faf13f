"""Uris of inputs inside containers: `<shard>.tar#<member>` and `<file>.parquet#row=<n>`.

A `#` alone does not make an archive member: local and object-store paths may contain one
(`take #2.wav`). Only the two shapes above, a `.tar` or `.parquet` container followed by `#`,
are member uris; `split_member_uri` is the one place that tells them apart.
"""

from __future__ import annotations

import re

_ROW_URI = re.compile(r"(?P<container>.+\.parquet)#row=(?P<row>\d+)", re.IGNORECASE)
_TAR_URI = re.compile(r"(?P<container>.+?\.tar)#(?P<member>.+)", re.IGNORECASE | re.DOTALL)


def member_uri(container_uri: str, member: str) -> str:
    return f"{container_uri}#{member}"


def row_uri(file_uri: str, row: int) -> str:
    return f"{file_uri}#row={row}"


def split_member_uri(uri: str) -> tuple[str, str] | None:
    """(container uri, member name or `row=<n>`) for a tar member or Parquet row uri; None for a
    uri that names a file of its own, even when its name contains `#`."""
    for pattern in (_ROW_URI, _TAR_URI):
        match = pattern.fullmatch(uri)
        if match:
            return match.group("container"), uri[match.end("container") + 1:]
    return None


def is_member_uri(uri: str) -> bool:
    return split_member_uri(uri) is not None

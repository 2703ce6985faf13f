"""What every source shares: the item record, the unit-of-reading contract, fsspec helpers.

A source lists *units* (cheap dicts: one file, one tar shard, one Parquet file) on the driver and
reads each unit into *items* inside Ray tasks. An item is a dict with the columns of `ITEM_FIELDS`;
a unit that cannot be read becomes one item carrying the error, so nothing is dropped.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterator

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64")

ITEM_FIELDS = ("id", "uri", "data", "labels", "human_labels", "start_s", "end_s", "error_stage", "error_type", "error_message")


def make_item(id: str, uri: str, data: bytes | None = None, **extra: Any) -> dict:
    item = {name: None for name in ITEM_FIELDS}
    item.update(id=id, uri=uri, data=data, **extra)
    return item


def failed_item(id: str, uri: str, stage: str, error: BaseException | str, error_type: str | None = None) -> dict:
    return make_item(
        id,
        uri,
        error_stage=stage,
        error_type=error_type or type(error).__name__,
        error_message=str(error) or repr(error),
    )


@dataclass
class Source:
    """Base class: subclasses implement `list_units` and `read_unit`."""

    url: str
    storage_options: dict = field(default_factory=dict)

    kind = "base"
    units_have_ids = True  # units carry their item id, so committed work is skipped before reading

    def list_units(self) -> list[dict]:
        raise NotImplementedError

    def read_unit(self, unit: dict) -> Iterator[dict]:
        raise NotImplementedError

    def filesystem(self, url: str | None = None):
        """storage_options are per protocol: {"s3": {"endpoint_url": ...}}."""
        from ..fsutil import url_to_fs

        return url_to_fs(url or self.url, self.storage_options)


def protocol_prefix(fs) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return "" if protocol in ("file", "local") else f"{protocol}://"


def relative_id(path: str, root: str) -> str:
    """A path relative to the source root, '/'-separated: the stable id of a file item."""
    rel = posixpath.relpath(path, root) if root else path
    return rel if not rel.startswith("../") else path


def fetch_bytes(fs, path: str) -> bytes:
    with fs.open(path, "rb") as handle:
        return handle.read()

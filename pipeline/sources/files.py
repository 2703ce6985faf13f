"""Audio files on any fsspec filesystem: a folder, a prefix, or a glob (`s3://b/p/**.flac`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ..records import SourceItem
from .base import AUDIO_EXTENSIONS, Source, WorkUnit, protocol_prefix, relative_id, single_unit
from .ids import check_ids

GLOB_CHARS = "*?["


def has_glob(url: str) -> bool:
    return any(ch in url for ch in GLOB_CHARS)


class FilesSource(Source):
    kind = "files"

    def _list_units(self) -> list[WorkUnit]:
        fs, path = self.filesystem()
        if has_glob(path):
            root = path[: min(path.find(ch) for ch in GLOB_CHARS if ch in path)].rsplit("/", 1)[0]
            paths = [p for p in fs.glob(path) if not fs.isdir(p)]
        else:
            root = path.rstrip("/")
            paths = [p for p in fs.find(root) if p.lower().endswith(AUDIO_EXTENSIONS)]
        prefix = protocol_prefix(fs)
        units = [single_unit(SourceItem(id=relative_id(p, root), uri=prefix + p)) for p in sorted(paths)]
        check_ids(units, f"file names under {self.url}")
        return units

    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        known = unit.item or SourceItem(id=unit.key, uri=unit.uri)
        try:
            data = self.fetch(unit.uri)
        except Exception as error:  # noqa: BLE001 - any read problem is recorded against this input
            yield self.read_failure(known.id, unit.uri, error)
            return
        yield dataclasses.replace(known, uri=unit.uri, data=data)

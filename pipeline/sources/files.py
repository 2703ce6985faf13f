"""Audio files on any fsspec filesystem: a folder, a prefix, a glob (`s3://b/p/**.flac`) or one file.
Ids are paths relative to the listing root (`listing.py`): a single file's id is its name."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ..records import SourceItem
from .base import AUDIO_EXTENSIONS, Source, WorkUnit, single_unit
from .ids import check_ids
from .listing import list_files


def is_audio(path: str) -> bool:
    return path.lower().endswith(AUDIO_EXTENSIONS)


class FilesSource(Source):
    kind = "files"

    def _list_units(self) -> list[WorkUnit]:
        listing = list_files(self.url, self.storage_options, keep=is_audio,
                             found=self.found_files())
        units = [single_unit(SourceItem(id=listing.id_of(p), uri=listing.uri_of(p))) for p in listing.paths]
        check_ids(units, f"file names under {self.url}")
        return units

    def read_unit(self, unit: WorkUnit) -> Iterator[SourceItem]:
        known = unit.item or SourceItem(id=unit.key, uri=unit.uri)
        if known.failure is not None:  # known unreadable at listing (e.g. a URI outside the rule)
            yield known
            return
        try:
            data = self.fetch(unit.uri)
        except Exception as error:  # noqa: BLE001 - any read problem is recorded against this input
            yield self.read_failure(known.id, unit.uri, error)
            return
        yield dataclasses.replace(known, uri=unit.uri, data=data)

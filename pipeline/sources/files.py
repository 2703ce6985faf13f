"""Audio files on any fsspec filesystem: a folder, a prefix, a glob (`s3://b/p/**.flac`) or one file.
Ids are paths relative to the listing root (`listing.py`): a single file's id is its name."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pyarrow as pa

from ..records import SourceItem
from .base import AUDIO_EXTENSIONS, Source, WorkUnit
from .ids import BadIds
from .listing import Listing, list_files
from .work_list import BATCH_UNITS, singles_table, table_units


def is_audio(path: str) -> bool:
    return path.lower().endswith(AUDIO_EXTENSIONS)


class FilesSource(Source):
    kind = "files"

    def iter_units(self) -> Iterator[WorkUnit]:
        return (unit for table in self.work_tables() for unit in table_units(table))

    def work_tables(self) -> Iterator[pa.Table]:
        """The files' units as columns, a batch at a time (no object per file is held)."""
        listing = list_files(self.url, self.storage_options, keep=is_audio, found=self.found_files())
        return self._tables(listing)

    def _tables(self, listing: Listing) -> Iterator[pa.Table]:
        bad_ids = BadIds(f"file names under {self.url}")
        for start in range(0, len(listing.paths), BATCH_UNITS):
            paths = listing.paths[start:start + BATCH_UNITS]
            keys, uris = listing.ids_of(paths), [listing.prefix + path for path in paths]
            bad_ids.see_all(keys, uris)
            yield singles_table(keys, uris)
        bad_ids.raise_if_any()

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

"""Hugging Face datasets in Parquet layout: `hf://datasets/<repo>` or local Parquet files.

Rows carry an `audio` struct {bytes, path} (the `Audio(decode=False)` layout); the bytes are
decoded later with soundfile, never with datasets' torchcodec path. Files are read one row group
at a time inside Ray tasks, so a large dataset streams. `labels`/`human_labels` are carried
through; the id is the row's `video_id`/`id` column when there is one, else `<file>#<row>`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterator

from .base import Source, failed_item, make_item, protocol_prefix, relative_id
from .files import has_glob
from .manifest import ID_COLUMNS, split_labels

HF_DATASETS_PREFIX = "hf://datasets/"


def is_hf_audio_parquet(schema) -> bool:
    """True for a Parquet schema with an HF `audio` struct column holding `bytes`."""
    import pyarrow as pa

    if "audio" not in schema.names:
        return False
    kind = schema.field("audio").type
    return pa.types.is_struct(kind) and "bytes" in [kind.field(i).name for i in range(kind.num_fields)]


@dataclass
class HFParquetSource(Source):
    split: str | None = None  # a folder under data/ (e.g. AudioSet's bal_train) or a file-name prefix

    kind = "hf_parquet"
    units_have_ids = False

    def list_units(self) -> list[dict]:
        fs, path = self.filesystem()
        if has_glob(path):
            files, root = fs.glob(path), posixpath.dirname(path.split("*")[0])
        elif path.endswith(".parquet"):
            files, root = [path], posixpath.dirname(path)
        else:
            root = path.rstrip("/")
            files = [p for p in fs.find(root) if p.endswith(".parquet")]
        if self.split:
            files = [f for f in files if f"/{self.split}/" in f or posixpath.basename(f).startswith(self.split)]
        if not files:
            raise ValueError(f"no Parquet files at {self.url}" + (f" for split {self.split!r}" if self.split else ""))
        prefix = protocol_prefix(fs)
        return [{"uri": prefix + f, "file_id": relative_id(f, root)} for f in sorted(files)]

    def read_unit(self, unit: dict) -> Iterator[dict]:
        import pyarrow.parquet as pq

        try:
            fs, path = self.filesystem(unit["uri"])
            parquet = pq.ParquetFile(fs.open(path, "rb"))
        except Exception as error:
            yield failed_item(unit["file_id"], unit["uri"], "read", error)
            return
        names = parquet.schema_arrow.names
        id_col = next((c for c in ID_COLUMNS if c in names), None)
        row = 0
        for group in range(parquet.num_row_groups):
            for record in parquet.read_row_group(group).to_pylist():
                item_id = str(record[id_col]) if id_col and record[id_col] is not None else f"{unit['file_id']}#{row}"
                uri = f"{unit['uri']}#row={row}"
                audio = record.get("audio") or {}
                data = audio.get("bytes")
                if not data:
                    yield failed_item(item_id, uri, "read", "row has no audio bytes", "MissingAudioBytes")
                else:
                    yield make_item(
                        item_id, uri, data,
                        labels=split_labels(record.get("labels")),
                        human_labels=split_labels(record.get("human_labels")),
                    )
                row += 1

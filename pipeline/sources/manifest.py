"""A manifest (CSV, JSONL or Parquet) listing audio URIs, with optional id, labels, start/end columns."""

from __future__ import annotations

import posixpath

from .base import protocol_prefix
from .files import FilesSource

URI_COLUMNS = ("uri", "path", "audio_path", "file")
ID_COLUMNS = ("id", "video_id", "ytid", "key")
START_COLUMNS = ("start_s", "start", "start_seconds")
END_COLUMNS = ("end_s", "end", "end_seconds")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def read_table(fs, path: str):
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        if path.endswith(".parquet"):
            return pq.read_table(handle)
        if path.endswith(".csv"):
            return pacsv.read_csv(handle)
        return pajson.read_json(handle)


def split_labels(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        return [p for p in parts if p]
    return [str(v) for v in value]


def _first(columns, names):
    return next((n for n in names if n in columns), None)


class ManifestSource(FilesSource):
    kind = "manifest"

    def list_units(self) -> list[dict]:
        fs, path = self.filesystem()
        table = read_table(fs, path)
        uri_col = _first(table.column_names, URI_COLUMNS)
        if uri_col is None:
            raise ValueError(f"manifest {self.url} has no uri column (one of {URI_COLUMNS}); columns: {table.column_names}")
        id_col = _first(table.column_names, ID_COLUMNS)
        start_col = _first(table.column_names, START_COLUMNS)
        end_col = _first(table.column_names, END_COLUMNS)
        base = posixpath.dirname(path)
        prefix = protocol_prefix(fs)
        units = []
        for row in table.to_pylist():
            uri = str(row[uri_col])
            if "://" not in uri and not uri.startswith("/"):
                uri = prefix + posixpath.join(base, uri)  # relative to the manifest's folder
            unit = {"id": str(row[id_col]) if id_col and row[id_col] is not None else row[uri_col], "uri": uri}
            if "labels" in row:
                unit["labels"] = split_labels(row["labels"])
            if "human_labels" in row:
                unit["human_labels"] = split_labels(row["human_labels"])
            if start_col and row[start_col] is not None:
                unit["start_s"] = float(row[start_col])
            if end_col and row[end_col] is not None:
                unit["end_s"] = float(row[end_col])
            units.append(unit)
        return units

"""The footers of an output's committed shards, kept in one file (`_keys_index.parquet`): how a
resume on an object store reads 7,000 shards' keys in one request instead of 7,000.

Each row is one shard: its path relative to the output, its size and ETag when it was indexed, and
its footer's keys (JSON text, as `OutputFolder.committed_keys` read them). An entry is used only
while the shard's listing shows the same size and ETag: S3 gives a rewritten object a new ETag (as
`drop_superseded` rewrites shards), so a shard written, rewritten or removed since is read from its
own footer, and the index is written anew. Filesystems whose listing gives no ETag (local folders)
keep no index; their footers are read from disk quickly. The file is a cache that nothing else
reads: missing or damaged, it is rebuilt.
"""

from __future__ import annotations

import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

INDEX_FILE = "_keys_index.parquet"
INDEX_SCHEMA = pa.schema([("shard", pa.string()), ("size", pa.int64()), ("etag", pa.string()),
                          ("footer", pa.string())])


def listing_etag(entry: dict) -> str | None:
    """The ETag an fsspec listing entry gives (s3fs: `ETag`, gcsfs: `etag`), None where there is none."""
    etag = entry.get("ETag") or entry.get("etag")
    return str(etag) if etag else None


def read_index(fs, path: str) -> dict[str, tuple[int, str, str]]:
    """{shard: (size, etag, footer JSON)} of the index at `path`; {} when there is none or it is damaged."""
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return {}
    try:
        table = pq.read_table(pa.BufferReader(raw))
        if not table.schema.equals(INDEX_SCHEMA):
            raise ValueError(f"columns {table.schema.names}")
    except (pa.ArrowException, ValueError) as error:
        log.warning("the key index %s is damaged (%s): each shard's footer is read instead", path, error)
        return {}
    columns = [table[name].to_pylist() for name in INDEX_SCHEMA.names]
    return {shard: (size, etag, footer) for shard, size, etag, footer in zip(*columns, strict=True)}


def index_bytes(rows: list[tuple[str, int, str, str]]) -> bytes:
    """The index file for `rows` (shard, size, etag, footer JSON)."""
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in INDEX_SCHEMA]
    table = pa.table(dict(zip(INDEX_SCHEMA.names, columns, strict=True)), schema=INDEX_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
